"""Small, fixed GLUE-format data sets written by the tests themselves."""

from __future__ import annotations

import random
from pathlib import Path

from conftest import write_tsv

WORDS = (
    "the a company said shares rose fell market report quarter profit loss government minister "
    "court ruled police officials city year percent billion million new old first last week "
    "announced expected higher lower trading stock price analysts investors sales deal"
).split()


def _sentence(rng: random.Random, length: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + " ."


def write_mrpc(folder: Path, train_rows: int = 48, dev_rows: int = 16, seed: int = 0) -> Path:
    """An MRPC-layout folder (BOM, raw quotes) whose label depends on word overlap, so it is learnable."""
    rng = random.Random(seed)
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]

    def rows(count: int) -> list[list[str]]:
        out = []
        for i in range(count):
            first = _sentence(rng, rng.randint(4, 30))
            if rng.random() < 0.6:
                second, label = first.replace(" the ", ' " the " '), "1"
            else:
                second, label = _sentence(rng, rng.randint(4, 30)), "0"
            out.append([label, str(1000 + i), str(2000 + i), first, second])
        return out

    write_tsv(folder / "train.tsv", header, rows(train_rows), bom=True)
    write_tsv(folder / "dev.tsv", header, rows(dev_rows), bom=True)
    test = [[str(i), str(3000 + i), str(4000 + i), _sentence(rng, 8), _sentence(rng, 9)] for i in range(10)]
    write_tsv(folder / "test.tsv", ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"], test)
    return folder
