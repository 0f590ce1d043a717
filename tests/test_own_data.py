"""Your own data, end to end: train on a CSV, TSV or JSON Lines file with the real CLI, then `evaluate`,
`predict`, and load ``best_model/`` in plain transformers.

Every run is a tiny BERT on a few dozen rows for one epoch. What each round trip checks:

- the run's task is its data's (``task.json``: name, columns, problem type, labels in their own form,
  files and row counts), never MRPC's;
- `gluebox evaluate RUN` gives the best epoch's validation numbers of ``summary.json`` bit for bit;
- `gluebox predict` writes the training data's own labels (strings, integers) or floats, reading a
  file with the run's columns and no label column; the accuracy of those predictions against the
  file's labels is the accuracy `evaluate` reports (a label mapped wrongly would change it);
- ``best_model/`` in plain transformers predicts what `gluebox predict` wrote;
- the model card names the files, their rows, the task type and the labels.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import signal
from pathlib import Path

import pytest

from conftest import make_tiny_model, start_gluebox, train_args, wait_until_paused
from fixtures import WORDS
from gluebox.cli import main

QUICK = ("--max_seq_length", "32", "--epochs", "1", "--train_batch_size", "8", "--eval_batch_size", "8",
         "--learning_rate", "1e-3", "--warmup_steps", "0")


def sentence(rng: random.Random, *extra: str) -> str:
    return " ".join([*(rng.choice(WORDS) for _ in range(rng.randint(3, 12))), *extra]).capitalize() + "."


def write_table(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file, delimiter="\t" if path.suffix == ".tsv" else ","))


def train(run: Path, model: str, *flags: str, capsys=None) -> str:
    """`gluebox train` with the real CLI; its standard output."""
    rc = main(train_args(model, run, *QUICK, *flags))
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    assert rc == 0, err
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    return out


def evaluate(run: Path, tmp_path: Path, *flags: str) -> dict:
    output = tmp_path / f"evaluate-{len(list(tmp_path.glob('evaluate-*')))}.json"
    assert main(["evaluate", str(run), "--output", str(output), *flags]) == 0
    return json.loads(output.read_text())


def predict(run: Path, output: Path, *flags: str) -> list:
    """`gluebox predict`'s values, in row order (read back from CSV, TSV or JSON Lines)."""
    assert main(["predict", str(run), "--output", str(output), *flags]) == 0
    if output.suffix == ".jsonl":
        return [json.loads(line)["prediction"] for line in output.read_text().splitlines()]
    return [row["prediction"] for row in read_table(output)]


def assert_evaluate_is_the_best_epoch(run: Path, tmp_path: Path) -> dict:
    """`gluebox evaluate RUN` (the best model, the run's validation split) gives summary.json's best
    epoch's validation numbers bit for bit: every metric, the loss, the fingerprint, the count."""
    summary = json.loads((run / "summary.json").read_text())
    scored = evaluate(run, tmp_path)["validation"]
    best = {key.split("/", 1)[1]: value for key, value in summary["best"].items() if key.startswith("validation/")}
    assert scored == best
    return scored


def plain_transformers(run: Path, text_a: list[str], text_b: list[str] | None) -> list:
    """``best_model/`` loaded without gluebox: each example alone (no padding); the label name as
    ``config.id2label`` has it, or the score; with the margin between the two highest logits."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "best_model")
    model = AutoModelForSequenceClassification.from_pretrained(run / "best_model").eval()
    out = []
    with torch.no_grad():
        for i, text in enumerate(text_a):
            pair = (text, text_b[i]) if text_b is not None else (text,)
            logits = model(**tokenizer(*pair, truncation=True, max_length=32, return_tensors="pt")).logits[0]
            if model.config.problem_type == "regression":
                out.append((logits.item(), None))
            else:
                top = logits.topk(2).values
                out.append((model.config.id2label[int(logits.argmax())], float(top[0] - top[1])))
    return out


def assert_plain_transformers_agree(run: Path, predictions: list, text_a: list[str], text_b: list[str] | None):
    plain = plain_transformers(run, text_a, text_b)
    if plain[0][1] is None:  # regression: gluebox writes the score rounded to 6 decimals
        assert predictions == pytest.approx([score for score, _ in plain], abs=2e-6)
        return
    # Classes: the same label wherever the model is not on the fence (padding moves logits by ~1e-7).
    decided = [(str(p), label) for p, (label, margin) in zip(predictions, plain) if margin > 1e-5]
    assert len(decided) >= len(predictions) // 2
    assert all(p == label for p, label in decided), decided


def card(run: Path) -> tuple[dict, str]:
    import yaml

    text = (run / "best_model" / "README.md").read_text(encoding="utf-8")
    _, meta, body = text.split("---\n", 2)
    return yaml.safe_load(meta), body


# String labels in CSV, single texts -------------------------------------------------------------------


def reviews(rng: random.Random, count: int) -> list[list[str]]:
    """Rows of id, review, sentiment: 'pos' for even rows (a word of praise in the text), 'neg' for odd."""
    return [[f"r{i}", sentence(rng, "great" if i % 2 == 0 else "dull"), "pos" if i % 2 == 0 else "neg"]
            for i in range(count)]


@pytest.fixture(scope="module")
def review_files(tmp_path_factory):
    rng = random.Random(1)
    folder = tmp_path_factory.mktemp("reviews")
    header = ["id", "review", "sentiment"]
    write_table(folder / "reviews.csv", header, reviews(rng, 40))
    write_table(folder / "dev.csv", header, reviews(rng, 21))  # 11 pos, 10 neg: a swapped mapping shows
    write_table(folder / "unlabelled.csv", ["id", "review"], [row[:2] for row in reviews(rng, 9)])
    return folder


def test_string_labels_in_csv_round_trip(review_files, tiny_bert, tmp_path, capsys):
    """No --task_name: the task is named after the training file and has the file's labels, not MRPC's."""
    run = tmp_path / "run"
    train(run, tiny_bert, "--train_file", str(review_files / "reviews.csv"), "--validation_file",
          str(review_files / "dev.csv"), "--test_file", str(review_files / "unlabelled.csv"),
          "--text_column", "review", "--text_pair_column", "none", "--label_column", "sentiment", capsys=capsys)
    task = json.loads((run / "task.json").read_text())
    assert task == {
        "name": "reviews", "glue": False, "problem_type": "classification", "text_a": "review", "text_b": None,
        "label_column": "sentiment", "labels": ["neg", "pos"], "metrics": ["accuracy", "f1"], "main_metric": "accuracy",
        "validation_splits": ["validation"],
        "data": {"train": {"file": "reviews.csv", "rows": 40}, "validation": {"file": "dev.csv", "rows": 21}},
    }
    assert json.loads((run / "summary.json").read_text())["task"] == "reviews"
    scored = assert_evaluate_is_the_best_epoch(run, tmp_path)

    # Predictions of the labelled file, written as its own labels; their accuracy is evaluate's.
    dev = read_table(review_files / "dev.csv")
    predicted = predict(run, tmp_path / "dev-predictions.csv", "--file", str(review_files / "dev.csv"))
    assert set(predicted) <= {"pos", "neg"}
    assert sum(p == row["sentiment"] for p, row in zip(predicted, dev)) / len(dev) == pytest.approx(scored["accuracy"])
    assert [row["id"] for row in read_table(tmp_path / "dev-predictions.csv")] == [row["id"] for row in dev]
    assert_plain_transformers_agree(run, predicted, [row["review"] for row in dev], None)

    # A file without the label column, and the run's own --test_file.
    unlabelled = read_table(review_files / "unlabelled.csv")
    from_file = predict(run, tmp_path / "p.jsonl", "--file", str(review_files / "unlabelled.csv"))
    assert from_file == predict(run, tmp_path / "test.jsonl") and set(from_file) <= {"pos", "neg"}
    assert_plain_transformers_agree(run, from_file, [row["review"] for row in unlabelled], None)

    meta, body = card(run)
    assert meta["model-index"][0]["results"][0]["dataset"] == {"name": "reviews", "type": "reviews", "split": "validation"}
    assert "glue" not in meta["tags"] and "datasets" not in meta
    assert "fine-tuned on `reviews`" in body and "mrpc" not in body.lower()
    assert "classification into 2 classes: `neg`, `pos`; input: `review` (single texts); label column `sentiment`" in body
    assert "Trained on the 40 rows of the user's own file `reviews.csv`; validated on the 21 rows of `dev.csv`." in body


def test_an_older_task_json_is_still_read(review_files, tiny_bert, tmp_path, capsys):
    """A run directory of an older gluebox (task.json without the new fields): evaluate and predict read it
    as its own data's task."""
    run = tmp_path / "run"
    train(run, tiny_bert, "--train_file", str(review_files / "reviews.csv"), "--validation_file",
          str(review_files / "dev.csv"), "--task_name", "reviews", "--text_column", "review", "--text_pair_column",
          "none", "--label_column", "sentiment", "--max_train_samples", "24", "--max_eval_samples", "15", capsys=capsys)
    task = json.loads((run / "task.json").read_text())
    old = {key: task[key] for key in ("name", "text_a", "text_b", "labels", "metrics", "main_metric")}
    (run / "task.json").write_text(json.dumps(old))
    assert assert_evaluate_is_the_best_epoch(run, tmp_path)["examples"] == 15  # the run's --max_eval_samples
    assert set(predict(run, tmp_path / "p.csv", "--file", str(review_files / "dev.csv"))) <= {"pos", "neg"}
    _, body = card(run)
    assert "Trained on the first 24 of the 40 rows of the user's own file `reviews.csv`; validated on the first 15 " \
           "of the 21 rows of `dev.csv`." in body


# Integer labels in TSV, text pairs ---------------------------------------------------------------------


def pairs(rng: random.Random, count: int) -> list[list]:
    """Rows of first, second, label: 0, 1 or 2 (how many words the texts share, roughly)."""
    rows = []
    for i in range(count):
        first = sentence(rng)
        second = [sentence(rng), first.replace(" the ", " a "), first][i % 3]
        rows.append([first, second, i % 3])
    return rows


def test_integer_labels_in_tsv_round_trip(tiny_bert, tmp_path, capsys):
    rng = random.Random(2)
    train_file = write_table(tmp_path / "pairs.tsv", ["first", "second", "label"], pairs(rng, 42), delimiter="\t")
    dev_file = write_table(tmp_path / "pairs_dev.tsv", ["first", "second", "label"], pairs(rng, 20), delimiter="\t")
    run = tmp_path / "run"
    train(run, tiny_bert, "--train_file", str(train_file), "--validation_file", str(dev_file), "--task_name", "overlap",
          "--text_column", "first", "--text_pair_column", "second", capsys=capsys)
    task = json.loads((run / "task.json").read_text())
    assert task["name"] == "overlap" and not task["glue"] and task["labels"] == [0, 1, 2]
    assert (task["text_a"], task["text_b"], task["metrics"]) == ("first", "second", ["accuracy"])
    scored = assert_evaluate_is_the_best_epoch(run, tmp_path)

    dev = read_table(dev_file)
    predicted = predict(run, tmp_path / "p.jsonl", "--file", str(dev_file))
    assert all(isinstance(p, int) and p in (0, 1, 2) for p in predicted)  # integers stay integers
    assert sum(p == int(row["label"]) for p, row in zip(predicted, dev)) / len(dev) == pytest.approx(scored["accuracy"])
    assert predict(run, tmp_path / "p.tsv", "--file", str(dev_file)) == [str(p) for p in predicted]
    assert_plain_transformers_agree(run, predicted, [r["first"] for r in dev], [r["second"] for r in dev])
    _, body = card(run)
    assert "classification into 3 classes: `0`, `1`, `2`; input: `first` and `second` (a pair)" in body


# Regression in JSON Lines, text pairs ------------------------------------------------------------------


def similarity(rng: random.Random, count: int) -> list[dict]:
    return [{"a": sentence(rng), "b": sentence(rng), "score": round(rng.uniform(0, 5), 2)} for _ in range(count)]


@pytest.fixture(scope="module")
def similarity_files(tmp_path_factory):
    rng = random.Random(3)
    folder = tmp_path_factory.mktemp("similarity")
    write_jsonl(folder / "sim.jsonl", similarity(rng, 40))
    write_jsonl(folder / "sim_dev.jsonl", similarity(rng, 16))
    write_jsonl(folder / "sim_new.jsonl", [{"a": r["a"], "b": r["b"]} for r in similarity(rng, 7)])  # no scores
    return folder


def check_regression_round_trip(run: Path, files: Path, tmp_path: Path) -> None:
    task = json.loads((run / "task.json").read_text())
    assert task["problem_type"] == "regression" and task["labels"] == [] and task["metrics"] == ["pearson", "spearmanr"]
    assert_evaluate_is_the_best_epoch(run, tmp_path)
    for name in ("sim_dev.jsonl", "sim_new.jsonl"):
        records = [json.loads(line) for line in (files / name).read_text().splitlines()]
        predicted = predict(run, tmp_path / f"{name}.jsonl", "--file", str(files / name))
        assert all(isinstance(p, float) for p in predicted) and len(set(predicted)) > 1
        assert_plain_transformers_agree(run, predicted, [r["a"] for r in records], [r["b"] for r in records])
    _, body = card(run)
    assert "Sequence regression (one score); input: `a` and `b` (a pair); score column `score`" in body


def test_regression_in_jsonl_round_trip(similarity_files, tiny_bert, tmp_path, capsys):
    run = tmp_path / "run"
    train(run, tiny_bert, "--train_file", str(similarity_files / "sim.jsonl"), "--validation_file",
          str(similarity_files / "sim_dev.jsonl"), "--text_column", "a", "--text_pair_column", "b",
          "--label_column", "score", capsys=capsys)
    assert json.loads((run / "task.json").read_text())["name"] == "sim"
    check_regression_round_trip(run, similarity_files, tmp_path)


# A checkpoint whose head does not fit ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_class_model(tmp_path_factory) -> Path:
    """A tiny BERT saved with a 2-class classification head (as a model fine-tuned on MRPC would be)."""
    from transformers import AutoModelForSequenceClassification

    folder = make_tiny_model(tmp_path_factory.mktemp("two-class"), seed=5)
    AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    return folder


def test_a_classification_checkpoint_gets_a_new_head_for_regression(two_class_model, similarity_files, tmp_path,
                                                                    capsys):
    run = tmp_path / "run"
    out = train(run, str(two_class_model), "--train_file", str(similarity_files / "sim.jsonl"), "--validation_file",
                str(similarity_files / "sim_dev.jsonl"), "--text_column", "a", "--text_pair_column", "b",
                "--label_column", "score", capsys=capsys)
    assert (f"note: {two_class_model} has a classification head for classification into 2 classes and this task is "
            "regression (1 output): it gets a new head (the rest of the model is loaded)") in out.splitlines()
    check_regression_round_trip(run, similarity_files, tmp_path)


def test_a_two_class_checkpoint_gets_a_new_head_for_three_classes(two_class_model, tmp_path, capsys):
    rng = random.Random(4)
    train_file = write_table(tmp_path / "pairs.tsv", ["sentence1", "sentence2", "label"], pairs(rng, 30), delimiter="\t")
    run = tmp_path / "run"
    out = train(run, str(two_class_model), "--train_file", str(train_file), "--validation_file", str(train_file),
                capsys=capsys)
    assert "classification into 2 classes and this task is classification into 3 classes: it gets a new head" in out
    assert_evaluate_is_the_best_epoch(run, tmp_path)


def test_weights_that_do_not_fit_their_config_are_refused_in_one_line(two_class_model, similarity_files, tmp_path,
                                                                      capsys):
    """Only the head may be replaced: a folder whose other weights do not fit its config.json is refused,
    naming the weight (never "not a loadable model folder")."""
    broken = tmp_path / "broken"
    shutil.copytree(two_class_model, broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(config | {"intermediate_size": 48}))
    rc = main(train_args(str(broken), tmp_path / "run", *QUICK, "--train_file", str(similarity_files / "sim.jsonl"),
                         "--validation_file", str(similarity_files / "sim_dev.jsonl"), "--text_column", "a",
                         "--text_pair_column", "b", "--label_column", "score"))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "the saved weight bert.encoder.layer.0.intermediate.dense.bias has shape (64,) where its config.json gives (48,)" in err
    assert "not a loadable" not in err and not (tmp_path / "run").exists()


# A GLUE task's name with your own files ----------------------------------------------------------------


def test_a_glue_task_name_with_your_files_is_that_glue_task(tiny_bert, tmp_path, capsys):
    """--task_name rte with your own files: RTE's labels and metrics, the hub's label ids accepted, predictions
    in RTE's label names (GLUE's format), the card says GLUE RTE on the user's files."""
    rng = random.Random(6)
    rows = [[sentence(rng), sentence(rng), ["entailment", "not_entailment", "0", "1"][i % 4]] for i in range(32)]
    data = write_table(tmp_path / "nli.csv", ["premise", "hypothesis", "label"], rows)
    run = tmp_path / "run"
    train(run, tiny_bert, "--task_name", "rte", "--train_file", str(data), "--validation_file", str(data),
          "--text_column", "premise", "--text_pair_column", "hypothesis", capsys=capsys)
    task = json.loads((run / "task.json").read_text())
    assert task["name"] == "rte" and task["glue"] and task["labels"] == ["entailment", "not_entailment"]
    assert task["data"] == {"train": {"file": "nli.csv", "rows": 32}, "validation": {"file": "nli.csv", "rows": 32}}
    assert_evaluate_is_the_best_epoch(run, tmp_path)
    assert set(predict(run, tmp_path / "p.csv", "--file", str(data))) <= {"entailment", "not_entailment"}
    meta, body = card(run)
    assert "fine-tuned on GLUE RTE (the user's own files)" in body and "datasets" not in meta


def test_the_default_task_from_the_environment_does_not_name_your_data(monkeypatch, tmp_path):
    """The Docker image sets GLUEBOX_TASK=mrpc: it replaces the default GLUE task, and leaves your data's
    task named after its file; a GLUE --task_name given with the files is kept."""
    from gluebox.config import resolve

    monkeypatch.setenv("GLUEBOX_TASK", "sst2")
    assert resolve({}).task_name == "sst2"
    config = resolve({"train_file": str(tmp_path / "my reviews.csv")})
    assert config.task_name is None and config.resolved_task_name == "my reviews"
    from gluebox.recipe.train import default_run_name

    monkeypatch.setenv("GLUEBOX_RUNS_DIR", str(tmp_path))
    parent, stem = default_run_name(config)
    assert parent == tmp_path and stem.startswith("my-reviews-distilbert-base-uncased-")
    assert resolve({"train_file": "a.csv", "task_name": "rte"}).task_name == "rte"


# --resume reads task.json --------------------------------------------------------------------------------


def test_resume_of_your_own_data_checks_them_against_task_json(review_files, tiny_bert, tmp_path, capsys):
    """An interrupted run on your own files resumes identically; with rows added to its file meanwhile it
    is refused in one line that says what changed."""
    data = tmp_path / "reviews.csv"
    shutil.copy(review_files / "reviews.csv", data)
    flags = ("--train_file", str(data), "--validation_file", str(review_files / "dev.csv"), "--text_column", "review",
             "--text_pair_column", "none", "--label_column", "sentiment", "--train_batch_size", "4")
    reference = tmp_path / "reference"
    train(reference, tiny_bert, *flags, capsys=capsys)

    run = tmp_path / "run"
    process = start_gluebox(train_args(tiny_bert, run, *QUICK, *flags), (3,), tmp_path / "pauses")
    wait_until_paused(process, tmp_path / "pauses", 3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM, process.stderr.read().decode()

    original = data.read_text()
    data.write_text(original + "r99,An extra review.,pos\n")
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"cannot resume {run}: its data no longer give the task it started with (data: " in err, err
    assert "'rows': 41" in err and "'rows': 40" in err

    data.write_text(original)
    assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert main(["compare", str(run), str(reference)]) == 0, capsys.readouterr().out


# The label column and long CSV fields ---------------------------------------------------------------------


def test_an_id_column_as_labels_is_refused_in_one_line(tiny_bert, tmp_path, capsys):
    rng = random.Random(7)
    data = write_table(tmp_path / "d.csv", ["id", "text", "label"],
                       [[f"row-{i}", sentence(rng), i % 2] for i in range(30)])
    rc = main(train_args(tiny_bert, tmp_path / "run", *QUICK, "--train_file", str(data), "--validation_file",
                         str(data), "--text_column", "text", "--text_pair_column", "none", "--label_column", "id"))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert (f"{data}: label column 'id' has 30 different labels (30 of them on one row only; first rows: 'row-0', "
            "'row-1', 'row-2'); name the label column with --label_column") in err
    assert "--max_classes 30 to train that many classes" in err and not (tmp_path / "run").exists()


def test_many_classes_need_max_classes(tmp_path):
    from gluebox.config import TrainConfig
    from gluebox.data.sources import resolve_task
    from gluebox.errors import GlueboxError

    rows = [[f"text {i}", f"class {i // 2}"] for i in range(2 * 250)]  # 250 classes of two rows each
    data = write_table(tmp_path / "d.csv", ["text", "label"], rows)

    def config(**flags) -> TrainConfig:
        return TrainConfig(train_file=str(data), validation_file=str(data), text_column="text",
                           text_pair_column="none", **flags).validate()

    with pytest.raises(GlueboxError, match=r"has 250 different labels \(more than 200; .* --max_classes 250"):
        resolve_task(config())
    assert len(resolve_task(config(max_classes=250)).labels) == 250
    with pytest.raises(GlueboxError, match=r"more than --max_classes 100"):
        resolve_task(config(max_classes=100))
    few = write_table(tmp_path / "few.csv", ["text", "label"], [[f"t {i}", f"c{i}"] for i in range(21)])
    with pytest.raises(GlueboxError, match="21 of them on one row only"):
        resolve_task(TrainConfig(train_file=str(few), text_column="text", text_pair_column="none"))
    assert len(resolve_task(TrainConfig(train_file=str(few), text_column="text", text_pair_column="none",
                                        max_classes=21)).labels) == 21
    with pytest.raises(GlueboxError, match="--max_classes must be at least 1"):
        config(max_classes=0)


def test_csv_fields_longer_than_the_csv_modules_default_limit_are_read(tmp_path):
    from gluebox.config import TrainConfig
    from gluebox.data.sources import load_split, resolve_task

    long = "word " * 60_000  # 300,000 characters; the csv module refuses fields over 131,072 by default
    data = write_table(tmp_path / "long.csv", ["text", "label"], [[long, "a"], ["short", "b"]])
    config = TrainConfig(train_file=str(data), validation_file=str(data), text_column="text", text_pair_column="none")
    examples = load_split(config, resolve_task(config), "train")
    assert examples.text_a == [long, "short"] and examples.labels == [0, 1]


def test_compare_tells_runs_on_other_data_apart_by_task_json_not_by_paths(tmp_path):
    """Moved data files are the same data (their paths are no setting of the results); other rows are another task."""
    import yaml

    from gluebox.commands.compare import why_not_comparable
    from gluebox.runs.directory import RunDirectory

    task = {"name": "reviews", "glue": False, "problem_type": "classification", "text_a": "review", "text_b": None,
            "label_column": "sentiment", "labels": ["neg", "pos"], "metrics": ["accuracy", "f1"],
            "main_metric": "accuracy", "validation_splits": ["validation"],
            "data": {"train": {"file": "reviews.csv", "rows": 40}, "validation": {"file": "dev.csv", "rows": 21}}}
    runs = []
    for name, folder, rows in (("a", "/home/a", 40), ("b", "/mnt/b", 40), ("c", "/home/a", 41)):
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump({"train_file": f"{folder}/reviews.csv", "task_name": None}))
        saved = json.loads(json.dumps(task))
        saved["data"]["train"]["rows"] = rows
        (run / "task.json").write_text(json.dumps(saved))
        runs.append(RunDirectory(run))
    assert why_not_comparable(runs[0], runs[1]) == []
    (reason,) = why_not_comparable(runs[0], runs[2])
    assert reason.startswith("other tasks (data {") and "'rows': 40" in reason and "'rows': 41" in reason
