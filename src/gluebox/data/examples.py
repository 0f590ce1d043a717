"""The in-memory form of one data split, whatever file or hub dataset it came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Examples:
    """Parallel columns of one split.

    ``labels`` holds class ids (classification) or floats (regression), or is ``None``
    for unlabelled test data. ``ids`` are what predictions are written against: the GLUE
    ``index`` column where there is one, else the row number.
    """

    text_a: list[str]
    text_b: list[str] | None
    labels: list[int] | list[float] | None
    ids: list[str]
    source: str
    """Where the split came from (a path or a hub dataset), for messages."""

    def __len__(self) -> int:
        return len(self.text_a)

    def head(self, n: int | None) -> "Examples":
        """The first ``n`` examples (all of them when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return Examples(
            self.text_a[:n],
            None if self.text_b is None else self.text_b[:n],
            None if self.labels is None else self.labels[:n],
            self.ids[:n],
            self.source,
        )
