"""Every GLUE task: columns, labels and metrics on small fixtures written in each task's real file layout.

The fixtures follow the ``glue_data/<TASK>/`` folders that GLUE's ``download_glue_data.py`` writes:
CoLA's header-less train/dev files, MRPC's BOM and raw quotes, QQP's ``id`` column, STS-B's
scores, MNLI's two validation and two test files, and the test-only diagnostic set (``ax``).
Expected texts, label ids and ids are derived from the rows the tests write, never from gluebox.
"""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from conftest import train_args, write_tsv
from gluebox.cli import main
from gluebox.config import TrainConfig
from gluebox.data.sources import load_split
from gluebox.training.metrics import task_metrics
from gluebox.tasks import GLUE_TASKS

# Label ids as the hub dataset nyu-mll/glue numbers them (and as GLUE's leaderboard expects).
HUB_LABELS = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
    "ax": ("entailment", "neutral", "contradiction"),
}
# How each task's TSV files spell labels, mapped to the hub's label ids.
RAW_LABEL_IDS = {
    "cola": {"0": 0, "1": 1},
    "sst2": {"0": 0, "1": 1},
    "mrpc": {"0": 0, "1": 1},
    "qqp": {"0": 0, "1": 1},
    "mnli": {"entailment": 0, "neutral": 1, "contradiction": 2},
    "qnli": {"entailment": 0, "not_entailment": 1},
    "rte": {"entailment": 0, "not_entailment": 1},
    "wnli": {"0": 0, "1": 1},
}
EXPECTED_METRICS = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "stsb": ("pearson", "spearmanr"),
    "mnli": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
    "ax": ("accuracy",),
}
FOLDERS = {
    "cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B",
    "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "ax": "diagnostic",
}

SENTENCES = [
    "The sailors rode the breeze clear of the rocks.",
    'He said "no" and walked out of the room.',
    "Prices rose 5% in May; analysts weren't surprised.",
    "A man is playing a guitar on a \"quiet\" street.",
    "Nobody knows why the bridge was closed, or for how long.",
    "The company reported a profit of $3.2 billion.",
    "Is it true that 'cats' sleep sixteen hours a day?",
    "She gave him the book that he had wanted for years.",
    "Two dogs are running through a field of snow.",
    "What is the capital of Australia?",
    "The committee approved the plan - with changes.",
    "Rain is expected later in the week.",
]


def sentence(rng: random.Random) -> str:
    return rng.choice(SENTENCES)


@dataclass
class Split:
    """What one split file should load as."""

    file: str
    header: list[str] | None
    rows: list[list[str]] = field(default_factory=list)
    bom: bool = False
    text_a: list[str] = field(default_factory=list)
    text_b: list[str] | None = None
    labels: list | None = None
    """Expected label ids (classification) or scores (regression); None for test splits."""
    ids: list[str] = field(default_factory=list)
    """The id column of the file where it has one (``index``, or ``id`` for QQP), else row numbers."""

    def add(self, row: list[str], a: str, b: str | None, label, row_id: str) -> None:
        self.rows.append(row)
        self.text_a.append(a)
        if b is not None:
            if self.text_b is None:
                self.text_b = []
            self.text_b.append(b)
        if label is not None:
            if self.labels is None:
                self.labels = []
            self.labels.append(label)
        self.ids.append(row_id)


def _binary_cycle(i: int) -> str:
    return "1" if i % 3 != 1 else "0"


def build_task(name: str, seed: int = 0) -> dict[str, Split]:
    """The splits of one task in GLUE's file layout, with what each should load as."""
    rng = random.Random(f"{name}-{seed}")
    sizes = {"train": 6, "validation": 5, "test": 4}
    splits: dict[str, Split] = {}

    def label_names(i: int) -> str:
        names = list(RAW_LABEL_IDS[name])
        return names[i % len(names)]

    if name == "cola":
        for split in ("train", "validation"):
            s = splits[split] = Split("train.tsv" if split == "train" else "dev.tsv", None)
            for i in range(sizes[split]):
                raw = _binary_cycle(i)
                text = sentence(rng)
                s.add([f"gj0{i % 4}", raw, "" if raw == "1" else "*", text], text, None, RAW_LABEL_IDS[name][raw], str(i))
        s = splits["test"] = Split("test.tsv", ["index", "sentence"])
        for i in range(sizes["test"]):
            text = sentence(rng)
            s.add([str(10 + 3 * i), text], text, None, None, str(10 + 3 * i))
    elif name == "sst2":
        for split in ("train", "validation"):
            s = splits[split] = Split("train.tsv" if split == "train" else "dev.tsv", ["sentence", "label"])
            for i in range(sizes[split]):
                raw, text = _binary_cycle(i), sentence(rng).lower() + " "
                s.add([text, raw], text, None, RAW_LABEL_IDS[name][raw], str(i))
        s = splits["test"] = Split("test.tsv", ["index", "sentence"])
        for i in range(sizes["test"]):
            text = sentence(rng)
            s.add([str(7 - i), text], text, None, None, str(7 - i))
    elif name == "mrpc":
        header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
        for split in ("train", "validation"):
            s = splits[split] = Split("train.tsv" if split == "train" else "dev.tsv", header, bom=True)
            for i in range(sizes[split]):
                raw, a, b = _binary_cycle(i), sentence(rng), sentence(rng)
                if i == 0:  # as in MRPC: a field that starts with a quote, which TSV must not parse
                    a, b = '"It is over," he said.', '"Unquoted end of text'
                s.add([raw, str(1000 + i), str(2000 + i), a, b], a, b, RAW_LABEL_IDS[name][raw], str(i))
        s = splits["test"] = Split("test.tsv", ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"])
        for i in range(sizes["test"]):
            a, b = sentence(rng), sentence(rng)
            s.add([str(20 + i), str(3000 + i), str(4000 + i), a, b], a, b, None, str(20 + i))
    elif name == "qqp":
        header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
        for split in ("train", "validation"):
            s = splits[split] = Split("train.tsv" if split == "train" else "dev.tsv", header)
            for i in range(sizes[split]):
                raw, a, b = _binary_cycle(i), sentence(rng), sentence(rng)
                pair_id = str(201359 + 17 * i)
                s.add([pair_id, str(2 * i + 1), str(2 * i + 2), a, b, raw], a, b, RAW_LABEL_IDS[name][raw], pair_id)
        s = splits["test"] = Split("test.tsv", ["id", "question1", "question2"])
        for i in range(sizes["test"]):
            a, b = sentence(rng), sentence(rng)
            s.add([str(50 + i), a, b], a, b, None, str(50 + i))
    elif name == "stsb":
        header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
        scores = ["5.000", "0.000", "3.800", "2.5", "4.750", "1.200"]
        for split in ("train", "validation"):
            s = splits[split] = Split("train.tsv" if split == "train" else "dev.tsv", header + ["score"])
            for i in range(sizes[split]):
                a, b = sentence(rng), sentence(rng)
                score = scores[(i + (split == "validation")) % len(scores)]
                row = [str(i), "main-news", "MSRvid", "2012test", f"{i:04d}", "none", "none", a, b, score]
                s.add(row, a, b, float(score), str(i))
        s = splits["test"] = Split("test.tsv", header)
        for i in range(sizes["test"]):
            a, b = sentence(rng), sentence(rng)
            s.add([str(30 + i), "main-forums", "answers-forums", "2015", f"{i:04d}", "none", "none", a, b],
                  a, b, None, str(30 + i))
    elif name == "mnli":
        parses = ["( ( The cat ) sat )", "( A ( b c ) )", "(ROOT (S (NP (DT The))))", "(ROOT (NP (NN x)))"]
        base = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
        files = {
            "train": ("train.tsv", base + ["label1", "gold_label"], 6),
            "validation_matched": ("dev_matched.tsv", base + [f"label{k}" for k in range(1, 6)] + ["gold_label"], 5),
            "validation_mismatched": ("dev_mismatched.tsv", base + [f"label{k}" for k in range(1, 6)] + ["gold_label"], 4),
        }
        for split, (file, header, count) in files.items():
            s = splits[split] = Split(file, header)
            for i in range(count):
                gold = label_names(i + len(split))
                a, b = sentence(rng), sentence(rng)
                annotator_labels = [label_names(i + k) for k in range(len(header) - len(base) - 1)]
                row = [str(i), str(31193 + i), f"{31193 + i}n", "government", *parses, a, b, *annotator_labels, gold]
                s.add(row, a, b, RAW_LABEL_IDS[name][gold], str(i))
        for split, file, count in (("test_matched", "test_matched.tsv", 4), ("test_mismatched", "test_mismatched.tsv", 3)):
            s = splits[split] = Split(file, base)
            for i in range(count):
                a, b = sentence(rng), sentence(rng)
                row_id = str(100 * (split == "test_mismatched") + 2 * i + 1)
                s.add([row_id, str(i), f"{i}c", "fiction", *parses, a, b], a, b, None, row_id)
    elif name in ("qnli", "rte", "wnli"):
        columns = ["question", "sentence"] if name == "qnli" else ["sentence1", "sentence2"]
        for split in ("train", "validation"):
            s = splits[split] = Split("train.tsv" if split == "train" else "dev.tsv", ["index", *columns, "label"])
            for i in range(sizes[split]):
                raw, a, b = label_names(i), sentence(rng), sentence(rng)
                s.add([str(i), a, b, raw], a, b, RAW_LABEL_IDS[name][raw], str(i))
        s = splits["test"] = Split("test.tsv", ["index", *columns])
        for i in range(sizes["test"]):
            a, b = sentence(rng), sentence(rng)
            s.add([str(40 + i), a, b], a, b, None, str(40 + i))
    elif name == "ax":
        s = splits["test"] = Split("diagnostic.tsv", ["index", "sentence1", "sentence2"])
        for i in range(5):
            a, b = sentence(rng), sentence(rng)
            s.add([str(i + 60), a, b], a, b, None, str(i + 60))
    else:  # pragma: no cover
        raise AssertionError(name)
    return splits


def write_task(root: Path, name: str, seed: int = 0) -> tuple[Path, dict[str, Split]]:
    """Write ``root/<GLUE folder>/*.tsv`` for one task; return the folder and the expected splits."""
    folder = root / FOLDERS[name]
    splits = build_task(name, seed)
    for split in splits.values():
        write_tsv(folder / split.file, split.header, split.rows, bom=split.bom)
    return folder, splits


@pytest.fixture(scope="module")
def glue_root(tmp_path_factory) -> tuple[Path, dict[str, dict[str, Split]]]:
    root = tmp_path_factory.mktemp("glue_data")
    return root, {name: write_task(root, name)[1] for name in GLUE_TASKS}


def _split_params():
    return [(name, split) for name in GLUE_TASKS for split in build_task(name)]


# Task definitions ----------------------------------------------------------------------------


def test_every_glue_task_has_a_fixture_and_the_hub_label_order():
    assert set(GLUE_TASKS) == set(FOLDERS)
    for name, task in GLUE_TASKS.items():
        assert task.metrics == EXPECTED_METRICS[name], name
        if name == "stsb":
            assert task.is_regression and task.num_labels == 1
            continue
        hub = HUB_LABELS[name]
        assert task.num_labels == len(hub)
        # Each label (or its hub alias) has the hub's id.
        for hub_id, hub_name in enumerate(hub):
            label = task.label_aliases.get(hub_name, hub_name)
            assert task.labels.index(label) == hub_id, (name, hub_name)
    assert GLUE_TASKS["mnli"].validation_splits == ("validation_matched", "validation_mismatched")
    assert GLUE_TASKS["mnli"].test_splits == ("test_matched", "test_mismatched")
    assert GLUE_TASKS["ax"].validation_splits == ()


@pytest.mark.parametrize(("name", "split"), _split_params())
def test_load_split_reads_texts_and_labels(glue_root, name, split):
    root, expected_by_task = glue_root
    expected = expected_by_task[name][split]
    task = GLUE_TASKS[name]
    # data_dir may point at glue_data/ (the task folder is found) or at the task folder itself.
    for data_dir in (root, root / FOLDERS[name]):
        examples = load_split(TrainConfig(task_name=name, data_dir=str(data_dir)), task, split)
        assert examples.text_a == expected.text_a
        assert examples.text_b == expected.text_b
        assert len(examples) == len(expected.rows)
        if split.startswith("test"):
            assert examples.labels is None
        else:
            assert expected.labels is not None
            assert examples.labels == expected.labels
            if task.is_regression:
                assert all(isinstance(v, float) for v in examples.labels)
            else:
                assert all(isinstance(v, int) for v in examples.labels)
        assert Path(examples.source).name == expected.file


@pytest.mark.parametrize(
    ("name", "split"),
    list(_split_params()),
)
def test_load_split_ids_come_from_the_index_column(glue_root, name, split):
    root, expected_by_task = glue_root
    expected = expected_by_task[name][split]
    examples = load_split(TrainConfig(task_name=name, data_dir=str(root)), GLUE_TASKS[name], split)
    assert examples.ids == expected.ids


def test_mrpc_bom_and_raw_quotes_survive(glue_root):
    root, expected_by_task = glue_root
    raw = (root / "MRPC" / "train.tsv").read_bytes()
    assert raw.startswith("\ufeff".encode()) and b'"' in raw
    examples = load_split(TrainConfig(task_name="mrpc", data_dir=str(root)), GLUE_TASKS["mrpc"], "train")
    assert examples.text_a[0] == '"It is over," he said.' and examples.text_b[0] == '"Unquoted end of text'
    assert not examples.text_a[0].startswith("\ufeff")
    assert examples.text_a == expected_by_task["mrpc"]["train"].text_a


def test_test_split_file_given_with_file_argument(glue_root):
    """`gluebox evaluate/predict --file` reads a file in the task's own layout."""
    root, expected_by_task = glue_root
    expected = expected_by_task["rte"]["validation"]
    path = root / "RTE" / "dev.tsv"
    examples = load_split(TrainConfig(task_name="rte"), GLUE_TASKS["rte"], "validation", file=str(path))
    assert examples.text_a == expected.text_a and examples.labels == expected.labels


# Metrics -------------------------------------------------------------------------------------


def _reference(name: str, preds, targets) -> dict[str, float]:
    if name == "stsb":
        return {"pearson": pearsonr(preds, targets)[0], "spearmanr": spearmanr(preds, targets)[0]}
    out = {}
    for metric in EXPECTED_METRICS[name]:
        if metric == "accuracy":
            out[metric] = accuracy_score(targets, preds)
        elif metric == "f1":
            out[metric] = f1_score(targets, preds)
        elif metric == "matthews_correlation":
            out[metric] = matthews_corrcoef(targets, preds)
    return out


def _compute(name: str, preds, targets, chunks: int = 3) -> dict[str, float]:
    """Feed the task's metrics in several batches, as validation does."""
    metrics = task_metrics(GLUE_TASKS[name])
    dtype = torch.float32 if name == "stsb" else torch.int64
    p, t = torch.tensor(preds, dtype=dtype), torch.tensor(targets, dtype=dtype)
    for pc, tc in zip(p.chunk(chunks), t.chunk(chunks)):
        metrics.update(pc, tc)
    return {k: float(v) for k, v in metrics.compute().items()}


@pytest.mark.parametrize("name", list(GLUE_TASKS))
@pytest.mark.parametrize("seed", range(5))
def test_task_metrics_match_sklearn_and_scipy(name, seed):
    rng = random.Random(seed)
    n = rng.randint(20, 60)
    if name == "stsb":
        targets = [round(rng.uniform(0, 5), 3) for _ in range(n)]
        preds = [t + rng.gauss(0, 1.5) for t in targets]
    else:
        k = GLUE_TASKS[name].num_labels
        targets = [rng.randrange(k) for _ in range(n)]
        # Mostly right, sometimes wrong, so the metrics are far from their extremes.
        preds = [t if rng.random() < 0.6 else rng.randrange(k) for t in targets]
    got = _compute(name, preds, targets)
    want = _reference(name, preds, targets)
    assert set(got) == set(EXPECTED_METRICS[name])
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-5), (name, key)


@pytest.mark.parametrize("name", ["mrpc", "qqp", "sst2", "mnli"])
def test_accuracy_and_f1_of_constant_predictions_match_sklearn(name):
    targets = [0, 1, 1, 0, 1, 0, 0]
    for constant in (0, 1):
        preds = [constant] * len(targets)
        got, want = _compute(name, preds, targets), _reference(name, preds, targets)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-6), (name, key, constant)


@pytest.mark.parametrize(
    ("preds", "targets"),
    [
        ([0, 0, 0, 0, 0], [0, 1, 1, 0, 1]),  # a model that always says "unacceptable"
        ([1, 1, 1, 1, 1], [0, 1, 1, 0, 1]),
        ([1, 1, 0], [0, 0, 0]),
        ([1, 1, 1], [1, 1, 1]),
    ],
)
def test_cola_matthews_of_degenerate_predictions_is_zero_as_in_glue(preds, targets):
    assert matthews_corrcoef(targets, preds) == 0.0
    assert _compute("cola", preds, targets, chunks=1)["matthews_correlation"] == pytest.approx(0.0, abs=1e-6)


# Real (tiny) training runs through the CLI ------------------------------------------------------


def _train(tmp_path: Path, model: str, name: str, capsys, *extra: str) -> Path:
    folder, _ = write_task(tmp_path / "glue_data", name)
    run = tmp_path / f"run-{name}"
    rc = main(train_args(model, run, "--task_name", name, "--data_dir", str(folder), "--max_seq_length", "32",
                         "--epochs", "1", "--train_batch_size", "4", "--warmup_steps", "0", *extra))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert (run / "summary.json").exists()
    return run


def _read_submission(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_stsb_trains_as_regression_and_predicts_scores(tmp_path, tiny_bert, capsys):
    run = _train(tmp_path, tiny_bert, "stsb", capsys)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["main_metric"] == "validation/pearson"
    for key in ("validation/pearson", "validation/spearmanr"):
        assert isinstance(summary["final"][key], float) and -1.0 <= summary["final"][key] <= 1.0
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(run / "best_model")  # transformers 5 derives num_labels from id2label
    assert model_config.num_labels == 1
    assert model_config.problem_type == "regression"
    assert json.loads((run / "best_model" / "config.json").read_text())["problem_type"] == "regression"

    expected = build_task("stsb")
    # Test split: GLUE submission format, ids from the index column, float scores.
    out = tmp_path / "STS-B.tsv"
    assert main(["predict", str(run), "--output", str(out)]) == 0
    rows = _read_submission(out)
    assert rows[0] == ["index", "prediction"]
    assert [r[0] for r in rows[1:]] == expected["test"].ids
    scores = [float(r[1]) for r in rows[1:]]
    assert all(math.isfinite(s) for s in scores) and len(set(scores)) > 1

    # The recorded Pearson/Spearman are those of the saved model's scores on the dev file, computed here
    # with transformers and scipy (the tiny model's scores differ only in the 5th decimal, so `predict`'s
    # 6-decimal output is too coarse for this).
    dev_out = tmp_path / "dev.tsv"
    assert main(["predict", str(run), "--split", "validation", "--output", str(dev_out)]) == 0
    assert len(_read_submission(dev_out)) == 1 + len(expected["validation"].rows)
    dev_scores = _hf_outputs(run, expected["validation"]).squeeze(-1).tolist()
    gold = expected["validation"].labels
    assert summary["final"]["validation/pearson"] == pytest.approx(pearsonr(dev_scores, gold)[0], abs=1e-3)
    assert summary["final"]["validation/spearmanr"] == pytest.approx(spearmanr(dev_scores, gold)[0], abs=1e-3)


def _hf_outputs(run: Path, split: Split) -> torch.Tensor:
    """Logits of the run's best model on a split, straight from transformers (no gluebox code)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "best_model")
    model = AutoModelForSequenceClassification.from_pretrained(run / "best_model").eval()
    batch = tokenizer(split.text_a, split.text_b, truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_mnli_validates_on_matched_and_mismatched(tmp_path, tiny_bert, capsys):
    run = _train(tmp_path, tiny_bert, "mnli", capsys)
    expected = build_task("mnli")
    records = _records(run)
    assert len(records) == 1
    for split in ("validation_matched", "validation_mismatched"):
        assert 0.0 <= records[0][f"{split}/accuracy"] <= 1.0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["main_metric"] == "validation_matched/accuracy"

    # `gluebox evaluate RUN` scores both validation files, every row of each.
    scores = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--output", str(scores)]) == 0
    out = capsys.readouterr().out
    assert "validation_matched:" in out and "validation_mismatched:" in out
    results = json.loads(scores.read_text())
    assert set(results) == {"validation_matched", "validation_mismatched"}
    for split, result in results.items():
        assert result["examples"] == len(expected[split].rows)
        assert result["accuracy"] == pytest.approx(records[0][f"{split}/accuracy"], abs=1e-6)

    # Each recorded accuracy is that of the label names `predict` writes for that dev file.
    for split in ("validation_matched", "validation_mismatched"):
        path = tmp_path / f"{split}.tsv"
        assert main(["predict", str(run), "--split", split, "--output", str(path)]) == 0
        predicted = [r[1] for r in _read_submission(path)[1:]]
        gold = [HUB_LABELS["mnli"][i] for i in expected[split].labels]
        assert len(predicted) == len(gold)
        assert records[0][f"{split}/accuracy"] == pytest.approx(accuracy_score(gold, predicted), abs=1e-6)

    # Test files: GLUE submission format with label names, one row per test row, ids from the index column.
    for split in ("test_matched", "test_mismatched"):
        path = tmp_path / f"MNLI-{split}.tsv"
        args = ["predict", str(run), "--output", str(path)] + ([] if split == "test_matched" else ["--split", split])
        assert main(args) == 0
        rows = _read_submission(path)
        assert rows[0] == ["index", "prediction"]
        assert [r[0] for r in rows[1:]] == expected[split].ids
        assert {r[1] for r in rows[1:]} <= set(HUB_LABELS["mnli"])

    # The diagnostic set is predicted with the MNLI run.
    ax_folder, ax = write_task(tmp_path / "glue_data", "ax")
    path = tmp_path / "AX.tsv"
    assert main(["predict", str(run), "--task_name", "ax", "--data_dir", str(ax_folder), "--output", str(path)]) == 0
    rows = _read_submission(path)
    assert [r[0] for r in rows[1:]] == ax["test"].ids
    assert {r[1] for r in rows[1:]} <= set(HUB_LABELS["mnli"])


def test_cola_reports_matthews_correlation(tmp_path, tiny_bert, capsys):
    run = _train(tmp_path, tiny_bert, "cola", capsys)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["main_metric"] == "validation/matthews_correlation"
    value = summary["final"]["validation/matthews_correlation"]
    assert isinstance(value, float) and -1.0 <= value <= 1.0
    task = json.loads((run / "task.json").read_text())
    assert task["labels"] == ["0", "1"] and task["metrics"] == ["matthews_correlation"]

    expected = build_task("cola")
    path = tmp_path / "CoLA.tsv"
    assert main(["predict", str(run), "--output", str(path)]) == 0
    rows = _read_submission(path)
    assert rows[0] == ["index", "prediction"]
    assert [r[0] for r in rows[1:]] == expected["test"].ids
    assert {r[1] for r in rows[1:]} <= {"0", "1"}

    # The recorded value is the Matthews correlation of the dev predictions, computed with the task's
    # metric (GLUE's sklearn definition, degenerate cases included).
    dev = tmp_path / "dev.csv"
    assert main(["predict", str(run), "--split", "validation", "--output", str(dev)]) == 0
    with dev.open(newline="") as file:
        predicted = [int(r["prediction"]) for r in csv.DictReader(file)]
    gold = expected["validation"].labels
    assert value == pytest.approx(_compute("cola", predicted, gold, chunks=1)["matthews_correlation"], abs=1e-6)
    if len(set(predicted)) == 2 and len(set(gold)) == 2:
        assert value == pytest.approx(matthews_corrcoef(gold, predicted), abs=1e-6)
