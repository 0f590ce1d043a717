"""``gluebox compare``: are two runs identical, metric for metric and prediction for prediction?

Every metric of every epoch is compared at full precision (the exact floats written to
metrics.jsonl), then the prediction fingerprints. Timing and memory figures (``perf/``)
are not results and are ignored.
"""

from __future__ import annotations

from gluebox.errors import GlueboxError
from gluebox.runs.directory import SUMMARY, open_run

IGNORED_PREFIXES = ("perf/",)


def _results(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith(IGNORED_PREFIXES)}


def first_difference(records_a: list[dict], records_b: list[dict]) -> str | None:
    """A sentence naming the first epoch and metric where the runs differ, or None."""
    for a, b in zip(records_a, records_b):
        a, b = _results(a), _results(b)
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return f"epoch {a.get('epoch', b.get('epoch'))}, {key}: {a.get(key)!r} vs {b.get(key)!r}"
    if len(records_a) != len(records_b):
        return f"epoch count: {len(records_a)} vs {len(records_b)}"
    return None


def compare(path_a: str, path_b: str) -> bool:
    run_a, run_b = open_run(path_a), open_run(path_b)
    records_a, records_b = run_a.metrics(), run_b.metrics()
    if not records_a or not records_b:
        empty = path_a if not records_a else path_b
        raise GlueboxError(f"{empty} has no finished epochs to compare")
    difference = first_difference(records_a, records_b)
    summary_a, summary_b = run_a.read_json(SUMMARY), run_b.read_json(SUMMARY)
    if difference is None and summary_a and summary_b and summary_a["fingerprint"] != summary_b["fingerprint"]:
        difference = f"fingerprint: {summary_a['fingerprint']} vs {summary_b['fingerprint']}"
    if difference is not None:
        print(f"different: first difference at {difference}")
        return False
    keys = [k for k in _results(records_a[0]) if k not in ("epoch", "step")]
    note = "" if summary_a and summary_b else " (at least one run is unfinished: no summary.json)"
    print(f"identical: {len(records_a)} epoch(s), {len(keys)} values per epoch, same prediction fingerprints{note}")
    return not note
