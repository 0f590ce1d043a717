"""`gluebox glue`: the whole GLUE suite end to end on fixture data in each task's real layout, with a tiny model.

The fixtures are the ones tests/test_glue_tasks.py writes (GLUE's ``glue_data/<TASK>/`` files, AX's
``diagnostic/diagnostic.tsv``). What a submission must look like (file names, labels, ids) is
written out here from the leaderboard's rules and the fixture rows, never taken from gluebox.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import json
import re
import signal
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import start_gluebox, wait_until_paused
from gluebox.cli import main
from gluebox.tasks import GLUE_TASKS
from test_glue_tasks import build_task, write_task

# The leaderboard's files, in its order: (file, task, test split of the fixture).
FILES = [("CoLA.tsv", "cola", "test"), ("SST-2.tsv", "sst2", "test"), ("MRPC.tsv", "mrpc", "test"),
         ("STS-B.tsv", "stsb", "test"), ("QQP.tsv", "qqp", "test"), ("MNLI-m.tsv", "mnli", "test_matched"),
         ("MNLI-mm.tsv", "mnli", "test_mismatched"), ("QNLI.tsv", "qnli", "test"), ("RTE.tsv", "rte", "test"),
         ("WNLI.tsv", "wnli", "test"), ("AX.tsv", "ax", "test")]
VOCABULARY = {"cola": {"0", "1"}, "sst2": {"0", "1"}, "mrpc": {"0", "1"}, "qqp": {"0", "1"}, "wnli": {"0", "1"},
              "mnli": {"entailment", "neutral", "contradiction"}, "ax": {"entailment", "neutral", "contradiction"},
              "qnli": {"entailment", "not_entailment"}, "rte": {"entailment", "not_entailment"}}
OFFICIAL_ROWS = {"CoLA.tsv": 1063, "SST-2.tsv": 1821, "MRPC.tsv": 1725, "STS-B.tsv": 1379, "QQP.tsv": 390965,
                 "MNLI-m.tsv": 9796, "MNLI-mm.tsv": 9847, "QNLI.tsv": 5463, "RTE.tsv": 3000, "WNLI.tsv": 146,
                 "AX.tsv": 1104}
# The metrics each task's GLUE score averages (the leaderboard's rule).
SCORE_METRICS = {"cola": ["validation/matthews_correlation"], "sst2": ["validation/accuracy"],
                 "mrpc": ["validation/accuracy", "validation/f1"], "qqp": ["validation/accuracy", "validation/f1"],
                 "stsb": ["validation/pearson", "validation/spearmanr"],
                 "mnli": ["validation_matched/accuracy", "validation_mismatched/accuracy"],
                 "qnli": ["validation/accuracy"], "rte": ["validation/accuracy"], "wnli": ["validation/accuracy"]}
NINE = list(SCORE_METRICS)
SETTINGS = ("--epochs", "1", "--train_batch_size", "4", "--eval_batch_size", "8", "--max_seq_length", "32",
            "--warmup_steps", "0", "--learning_rate", "1e-3")


@pytest.fixture(scope="module")
def glue_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("glue_data")
    for name in GLUE_TASKS:
        write_task(root, name)
    return root


def glue_args(model: str, data: Path, suite: Path, *extra: str) -> list[str]:
    return ["glue", "--model_name_or_path", model, "--data_dir", str(data), "--output_dir", str(suite),
            "--wandb_mode", "disabled", "--no-progress_bar", *SETTINGS, *extra]


@pytest.fixture(scope="module")
def suite(tiny_bert, glue_data, tmp_path_factory):
    """The whole suite (nine tasks and AX), uninterrupted; with what it printed."""
    path = tmp_path_factory.mktemp("suite") / "glue"
    capture = tmp_path_factory.mktemp("out") / "out.txt"
    import contextlib

    with open(capture, "w") as out, contextlib.redirect_stdout(out):
        assert main(glue_args(tiny_bert, glue_data, path)) == 0
    return path, capture.read_text()


def read_zip(path: Path) -> dict[str, list[list[str]]]:
    with zipfile.ZipFile(path) as archive:
        return {name: [line.split("\t") for line in archive.read(name).decode().splitlines()]
                for name in archive.namelist()}


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def hand_score(suite_path: Path, tasks=NINE) -> float:
    """The GLUE score from each run's summary.json, computed here: mean over tasks of the mean of its metrics."""
    scores = []
    for task in tasks:
        best = json.loads((suite_path / "runs" / task / "summary.json").read_text())["best"]
        scores.append(sum(best[m] for m in SCORE_METRICS[task]) / len(SCORE_METRICS[task]))
    return sum(scores) / len(scores)


# The whole suite --------------------------------------------------------------------------------


def test_the_whole_suite_runs_every_task_and_writes_a_valid_submission(suite, glue_data, capsys):
    path, printed = suite
    # The plan came first: every task with its example counts, the estimate and the memory plan.
    plan = printed.split("glue: [1/9]")[0]
    for task in NINE:
        assert f"  {task} " in plan
    assert "5 + 4" in plan and "4 + 3, AX 5" in plan and "total: about" in plan and "peak" in plan
    assert "glue: [9/9] wnli: starting (8 done, 1 left" in printed

    for task in NINE:
        run = path / "runs" / task
        assert status(run)["status"] == "complete" and (run / "summary.json").is_file()
        assert json.loads((run / "task.json").read_text())["name"] == task

    # The zip, read back file by file.
    files = read_zip(path / "submission.zip")
    with zipfile.ZipFile(path / "submission.zip") as archive:
        assert archive.namelist() == [name for name, _, _ in FILES]
    for name, task, split in FILES:
        rows = files[name]
        assert rows[0] == ["index", "prediction"], name
        assert [r[0] for r in rows[1:]] == build_task(task)[split].ids, name
        assert all(len(r) == 2 for r in rows), name
        if task == "stsb":
            assert all(0 <= float(r[1]) <= 5 and len(r[1].split(".")[1]) == 3 for r in rows[1:])
        else:
            assert {r[1] for r in rows[1:]} <= VOCABULARY[task], name
        assert (path / "predictions" / name).read_text() == "".join("\t".join(r) + "\n" for r in rows)

    # The same predictions as `gluebox predict` makes from each run (AX from the MNLI run).
    for name, run, extra in (("RTE.tsv", "rte", []), ("AX.tsv", "mnli", ["--task_name", "ax"]),
                             ("MNLI-mm.tsv", "mnli", ["--split", "test_mismatched"])):
        out = path.parent / f"predict-{name}"
        assert main(["predict", str(path / "runs" / run), "--output", str(out), *extra]) == 0
        assert [line.split("\t") for line in out.read_text().splitlines()] == files[name]
    out = path.parent / "predict-stsb.tsv"
    assert main(["predict", str(path / "runs" / "stsb"), "--output", str(out)]) == 0
    scores = [float(line.split("\t")[1]) for line in out.read_text().splitlines()[1:]]
    assert [r[1] for r in files["STS-B.tsv"][1:]] == [f"{min(5.0, max(0.0, s)):.3f}" for s in scores]

    # Results: each task's metrics and the GLUE score, computed by hand from the runs' summaries.
    with open(path / "results.csv", newline="") as file:
        rows = {r["task"]: r for r in csv.DictReader(file)}
    expected = hand_score(path)
    assert float(rows["GLUE"]["score"]) == pytest.approx(expected, abs=1e-12)
    assert rows["GLUE"]["status"] == "9 of 9 tasks"
    for task in NINE:
        best = json.loads((path / "runs" / task / "summary.json").read_text())["best"]
        for metric in SCORE_METRICS[task]:
            assert float(rows[task][metric]) == best[metric]
        assert rows[task]["status"] == "complete"
    table = (path / "results.md").read_text()
    assert f"**GLUE score (validation): {100 * expected:.1f}**" in table
    assert table.count("| complete |") == 9
    assert (path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    capsys.readouterr()
    assert main(["glue", "--check", str(path / "submission.zip"), "--data_dir", str(glue_data)]) == 0
    assert "valid: 11 files" in capsys.readouterr().out


def test_glue_score_against_a_hand_computation():
    from gluebox.suite.report import TaskResult, glue_score

    metrics = {"cola": {"validation/matthews_correlation": 0.5}, "sst2": {"validation/accuracy": 0.9},
               "mrpc": {"validation/accuracy": 0.8, "validation/f1": 0.86},
               "qqp": {"validation/accuracy": 0.88, "validation/f1": 0.84},
               "stsb": {"validation/pearson": 0.87, "validation/spearmanr": 0.85},
               "mnli": {"validation_matched/accuracy": 0.80, "validation_mismatched/accuracy": 0.82},
               "qnli": {"validation/accuracy": 0.9}, "rte": {"validation/accuracy": 0.6},
               "wnli": {"validation/accuracy": 0.5}}
    results = [TaskResult(task, "complete", values) for task, values in metrics.items()]
    by_hand = (0.5 + 0.9 + (0.8 + 0.86) / 2 + (0.88 + 0.84) / 2 + (0.87 + 0.85) / 2 + (0.80 + 0.82) / 2
               + 0.9 + 0.6 + 0.5) / 9
    score, count = glue_score(results)
    assert count == 9 and score == pytest.approx(by_hand, abs=1e-12)
    # A task that did not complete has no score; the others' mean is reported with its count.
    results[0].status = "failed"
    results[1] = TaskResult("sst2", "not run")
    score, count = glue_score(results)
    assert count == 7 and score == pytest.approx((by_hand * 9 - 0.5 - 0.9) / 7, abs=1e-12)


# --check --------------------------------------------------------------------------------------


def rewrite(source: Path, target: Path, change) -> Path:
    """A copy of a zip with ``change(files)`` applied to its {name: text} mapping (in order)."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    files = change(files)
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files:
            archive.writestr(name, data)
    return target


def _edit(name: str, edit):
    def change(files):
        lines = files[name].decode().splitlines()
        files[name] = edit(lines)
        return [(n, d if isinstance(d, bytes) else ("\n".join(d) + "\n").encode()) for n, d in files.items()]
    return change


def _files(edit):
    return lambda files: edit(list(files.items()))


MISTAKES = {
    "missing file": (_files(lambda f: [x for x in f if x[0] != "RTE.tsv"]),
                     ["RTE.tsv: missing (the leaderboard rejects a zip without it)"]),
    "misnamed file": (_files(lambda f: [("SST2.tsv" if n == "SST-2.tsv" else n, d) for n, d in f]),
                      ["SST2.tsv: not a GLUE submission file (did you mean SST-2.tsv?)",
                       "SST-2.tsv: missing (the leaderboard rejects a zip without it)"]),
    "in a folder": (_files(lambda f: [("submission/" + n if n == "MRPC.tsv" else n, d) for n, d in f]),
                    ["submission/MRPC.tsv: in a folder; the leaderboard wants MRPC.tsv at the zip's top level"]),
    "twice": (_files(lambda f: f + [("WNLI.tsv", dict(f)["WNLI.tsv"])]), ["WNLI.tsv: in the zip twice"]),
    "header": (_edit("CoLA.tsv", lambda lines: ["id\tlabel", *lines[1:]]),
               ["CoLA.tsv: header is 'id\\tlabel', expected 'index\\tprediction'"]),
    "rows": (_edit("QQP.tsv", lambda lines: lines[:-1]), ["QQP.tsv: 3 rows, the test file has 4"]),
    "order": (_edit("QNLI.tsv", lambda lines: [lines[0], lines[2], lines[1], *lines[3:]]),
              ["QNLI.tsv: 2 row(s) out of the test file's index order (first: line 2 has index '41', expected '40')"]),
    "label names for 0/1": (_edit("MRPC.tsv", lambda lines: [lines[0], *(r.split("\t")[0] + "\tequivalent" for r in lines[1:])]),
                            ["MRPC.tsv: 4 prediction(s) not 0, 1 (first: line 2, 'equivalent')"]),
    "ids for names": (_edit("RTE.tsv", lambda lines: [lines[0], lines[1].split("\t")[0] + "\t1", *lines[2:]]),
                      ["RTE.tsv: 1 prediction(s) not entailment, not_entailment (first: line 2, '1')"]),
    "mnli vocabulary": (_edit("MNLI-m.tsv", lambda lines: [*lines[:-1], lines[-1].split("\t")[0] + "\tnot_entailment"]),
                        ["MNLI-m.tsv: 1 prediction(s) not entailment, neutral, contradiction (first: line 5, 'not_entailment')"]),
    "sts-b range": (_edit("STS-B.tsv", lambda lines: [lines[0], "30\t5.500", "31\thigh", *lines[3:]]),
                    ["STS-B.tsv: 2 prediction(s) not a number from 0 to 5 (first: line 2, '5.500')"]),
    "fields": (_edit("AX.tsv", lambda lines: [lines[0], lines[1].replace("\t", " "), *lines[2:]]),
               ["AX.tsv: 1 row(s) without exactly 2 tab-separated fields (first: line 2, 1 field(s))"]),
    "encoding": (_edit("WNLI.tsv", lambda lines: b"index\tprediction\n40\t\xff\n"),
                 ["WNLI.tsv: not UTF-8 text"]),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_check_names_each_kind_of_mistake(suite, glue_data, tmp_path, capsys, mistake):
    change, expected = MISTAKES[mistake]
    bad = rewrite(suite[0] / "submission.zip", tmp_path / "bad.zip", change)
    capsys.readouterr()
    assert main(["glue", "--check", str(bad), "--data_dir", str(glue_data)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{bad}: {line}" for line in expected]
    assert captured.err.strip() == f"gluebox: {bad} has {len(expected)} problem(s); the leaderboard would reject it"


def test_check_without_data_uses_the_official_test_sizes_and_a_non_zip_is_one_line(suite, tmp_path, capsys):
    capsys.readouterr()
    assert main(["glue", "--check", str(suite[0] / "submission.zip")]) == 1
    out = capsys.readouterr().out
    for name, rows in OFFICIAL_ROWS.items():
        assert f"{name}: {4 if name not in ('MNLI-mm.tsv', 'AX.tsv') else (3 if name == 'MNLI-mm.tsv' else 5)} rows, " \
               f"the test file has {rows}" in out
    not_zip = tmp_path / "submission.zip"
    not_zip.write_text("index\tprediction\n")
    assert main(["glue", "--check", str(not_zip)]) == 2
    assert capsys.readouterr().err.strip().startswith(f"gluebox: error: --check {not_zip}: not a zip file")


# Stop, resume, failures ----------------------------------------------------------------------------


def test_a_suite_stopped_in_the_third_task_resumes_to_the_same_results(suite, tiny_bert, glue_data, tmp_path, capsys):
    """SIGINT while mrpc (the third task) holds after its first step: cola and sst2 stay complete, mrpc is
    interrupted with a checkpoint; `--resume` skips the first two, resumes mrpc, runs the rest, and every
    run is identical to the uninterrupted suite's."""
    reference = suite[0]
    path = tmp_path / "glue"
    pauses = tmp_path / "pauses"
    process = start_gluebox(glue_args(tiny_bert, glue_data, path), pause_at=(1,), pause_dir=pauses)
    try:
        for number, task in enumerate(["cola", "sst2", "mrpc"]):
            marker = wait_until_paused(process, pauses, 1)
            assert (path / "runs" / task).is_dir() and not (path / "runs" / NINE[number + 1]).exists()
            if task != "mrpc":
                marker.unlink()  # let this task go on
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=300) == 130
    finally:
        if process.poll() is None:
            process.kill()
    err = process.stderr.read().decode().strip().splitlines()
    assert err[-1].startswith("gluebox: interrupted: suite ") and f"gluebox glue --resume {path}`" in err[-1]
    assert [status(path / "runs" / t)["status"] for t in ("cola", "sst2", "mrpc")] == ["complete", "complete", "interrupted"]
    assert (path / "runs" / "mrpc" / "checkpoints" / "last.ckpt").is_file()
    assert not (path / "runs" / "qqp").exists() and not (path / "submission.zip").exists()
    assert "| interrupted" in (path / "results.md").read_text()
    before = {t: (path / "runs" / t / "summary.json").read_bytes() for t in ("cola", "sst2")}

    capsys.readouterr()
    assert main(["glue", "--resume", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cola complete in" in out and "(already complete: skipped)" in out
    for task, state in (("cola", "complete"), ("sst2", "complete"), ("mrpc", "resume"), ("qqp", "to run")):
        assert re.search(rf"^  {task} +{state} ", out, re.M), task
    for task in ("cola", "sst2"):
        assert (path / "runs" / task / "summary.json").read_bytes() == before[task]
        assert "resumes" not in status(path / "runs" / task)
    assert status(path / "runs" / "mrpc")["resumes"] == 1
    for task in NINE:
        assert main(["compare", str(path / "runs" / task), str(reference / "runs" / task)]) == 0, task
    assert read_zip(path / "submission.zip") == read_zip(reference / "submission.zip")
    def results(folder):  # but for the time each task took
        with open(folder / "results.csv", newline="") as file:
            return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(file)]

    assert results(path) == results(reference)


def test_a_failed_task_is_reported_and_the_others_go_on(tiny_bert, glue_data, tmp_path, monkeypatch, capsys):
    import gluebox.recipe.train as recipe

    real_train = recipe.train

    def train(config, *args, **kwargs):
        if config.task_name == "rte":
            raise RuntimeError("boom in rte")
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(recipe, "train", train)
    path = tmp_path / "glue"
    assert main(glue_args(tiny_bert, glue_data, path, "--tasks", "rte,wnli")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"gluebox: error: 1 task(s) did not complete: rte (failed: RuntimeError: boom in rte); "
                       f"fix and continue with `gluebox glue --resume {path}`")
    assert any("placeholders" in line and "RTE.tsv" in line and "CoLA.tsv" in line for line in err)
    assert status(path / "runs" / "wnli")["status"] == "complete"
    assert "| RTE | failed: RuntimeError: boom in rte |" in (path / "results.md").read_text()
    progress = json.loads((path / "progress.json").read_text())
    assert progress["rte"]["status"] == "failed" and "Traceback" in progress["rte"]["traceback"]
    files = read_zip(path / "submission.zip")
    assert files["RTE.tsv"] == [["index", "prediction"]] + [[i, "entailment"] for i in build_task("rte")["test"].ids]
    assert len(files["QQP.tsv"]) == 1 + 4 and len(files) == 11  # placeholders follow the test files there are

    monkeypatch.setattr(recipe, "train", real_train)
    assert main(["glue", "--resume", str(path)]) == 0
    assert status(path / "runs" / "rte")["status"] == "complete"
    assert "resumes" not in status(path / "runs" / "wnli")
    assert {r[1] for r in read_zip(path / "submission.zip")["RTE.tsv"][1:]} <= VOCABULARY["rte"]


# Bad input: one line, exit 2, nothing written --------------------------------------------------------


def _overrides(tmp_path: Path, data) -> str:
    path = tmp_path / "overrides.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


BAD = {
    "unknown task": (lambda tmp: ["--tasks", "mrpc,mprc"], "--tasks: unknown task(s) mprc; choose from cola"),
    "ax alone": (lambda tmp: ["--tasks", "ax"], "ax has no training data; it is predicted with the mnli run, so add mnli"),
    "override of an unknown flag": (lambda tmp: ["--overrides", _overrides(tmp, {"mrpc": {"learning_rat": 1e-4}})],
                                    "overrides file {tmp}/overrides.yaml: mrpc: unknown key 'learning_rat'"),
    "override of an unknown task": (lambda tmp: ["--overrides", _overrides(tmp, {"mrcp": {"epochs": 2}})],
                                    "overrides file {tmp}/overrides.yaml: unknown task 'mrcp'"),
    "override of a shared flag": (lambda tmp: ["--overrides", _overrides(tmp, {"rte": {"model_name_or_path": "x"}})],
                                  "rte: model_name_or_path cannot be set per task"),
    "override with a bad value": (lambda tmp: ["--overrides", _overrides(tmp, {"rte": {"epochs": 0}})],
                                  "rte: --epochs must be at least 1, got 0"),
    "shared flag the suite sets": (lambda tmp: ["--config", _overrides(tmp, {"task_name": "rte"})],
                                   "glue: task_name cannot be set for a suite"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(tiny_bert, glue_data, tmp_path, capsys, case):
    make, message = BAD[case]
    path = tmp_path / "glue"
    assert main(glue_args(tiny_bert, glue_data, path, *make(tmp_path))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gluebox: error: ") and message.format(tmp=tmp_path) in err[0], err
    assert not path.exists()


def test_a_glue_data_folder_missing_a_task(tiny_bert, tmp_path, capsys):
    root = tmp_path / "glue_data"
    write_task(root, "mrpc")
    write_task(root, "mnli")
    (root / "MNLI" / "dev_mismatched.tsv").unlink()
    path = tmp_path / "glue"
    assert main(glue_args(tiny_bert, root, path, "--tasks", "mrpc,rte,mnli")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gluebox: error: --data_dir {root} is missing mnli (MNLI/ has no "
                   "dev_mismatched.tsv); rte (no RTE/ folder); ax (no diagnostic/ folder); add them, or leave those tasks out with --tasks"]
    assert not path.exists()


def test_a_folder_that_is_not_a_suite_is_never_used(tiny_bert, glue_data, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(glue_args(tiny_bert, glue_data, other, "--tasks", "rte")) == 2
    assert capsys.readouterr().err.strip() == (f"gluebox: error: --output_dir {other} already exists and is not a "
                                               "gluebox glue suite (it holds notes.txt); choose another --output_dir")
    assert main(["glue", "--resume", str(other)]) == 2
    assert capsys.readouterr().err.strip() == (f"gluebox: error: cannot resume {other}: it is not a gluebox glue "
                                               "suite (no valid suite.json)")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_an_existing_suite_is_continued_only_with_resume_and_its_own_settings(suite, tiny_bert, glue_data, capsys):
    path = suite[0]
    before = (path / "suite.json").read_bytes()
    assert main(glue_args(tiny_bert, glue_data, path)) == 2
    assert f"suite {path} already exists; continue it with `gluebox glue --resume {path}`" in capsys.readouterr().err
    assert main(["glue", "--resume", str(path), "--learning_rate", "1e-4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "drop --learning_rate" in err[0]
    assert main(["glue", "--resume", str(path), "--tasks", "rte"]) == 2
    assert "drop --tasks" in capsys.readouterr().err
    assert (path / "suite.json").read_bytes() == before


# The plan ---------------------------------------------------------------------------------------------


def test_the_estimate_matches_the_measured_distilbert_epoch_and_warns_of_days():
    """benchmarks/results-bf16.json: a DistilBERT-shaped model, 1 epoch of MRPC (115 steps, 199,148 padded
    training tokens) and its validation (31,616 padded tokens) took 207.6 and 211.1 s in two runs on 2 CPUs
    whose time probe, run between them, multiplied float32 matrices at 338 GFLOP/s."""
    from gluebox.suite.plan import SuitePlan, TaskPlan, estimate_seconds

    parameters, embeddings = 66_955_010, 30522 * 768 + 512 * 768 + 2 * 768
    seconds = estimate_seconds(parameters - embeddings, parameters, 6, 338.0, 1, 115, 199_148, 31_616, 0)
    assert 0.85 < seconds / 207.6 < 1.15
    # MNLI's 392,702 training examples (about 40 tokens each), 3 epochs, on a CPU half as fast: days.
    mnli = estimate_seconds(parameters - embeddings, parameters, 6, 169.0, 3, 3 * 12272, 40 * 392_702, 40 * 19_647,
                            40 * 20_747)
    assert mnli > 86400
    plan = SuitePlan([TaskPlan("mnli", 392_702, {}, {}, 3, 32, 36816, 40.0, 128, mnli, 3_500_000_000, "whole batches")],
                     169.0, 2)
    assert f"WARNING: the suite would take about {mnli / 86400:.1f} days" in plan.describe()


def test_the_estimate_matches_a_measured_epoch_of_many_short_steps():
    """all-MiniLM-L6-v2 (22,713,986 parameters, 11,918,592 of them embeddings) on SST-2: an epoch of
    2,105 steps over 941,001 padded tokens took 694 s on 2 CPUs whose matrix multiply ran at
    230 GFLOP/s. Useful work alone accounts for 57% of it; the fixed work per step makes up
    the rest (before it was counted, `gluebox train` estimated 6 min 48 s for this epoch)."""
    from gluebox.training.eta import training_seconds

    parameters, embeddings = 22_713_986, 11_918_592
    seconds = training_seconds(parameters - embeddings, parameters, 6, 230.0, 2105, 941_001)
    assert 0.85 < seconds / 694 < 1.15
    useful_only = training_seconds(parameters - embeddings, parameters, 6, 230.0, 0, 941_001)
    assert useful_only / 694 < 0.6


# Real data --------------------------------------------------------------------------------------------


def test_mrpc_rte_and_sst2_from_shared(shared_glue, tiny_bert, tmp_path, capsys):
    path = tmp_path / "glue"
    args = ["glue", "--model_name_or_path", tiny_bert, "--data_dir", str(shared_glue), "--output_dir", str(path),
            "--tasks", "mrpc,rte,sst2", "--max_train_samples", "64", "--epochs", "1", "--max_seq_length", "64",
            "--eval_batch_size", "128", "--wandb_mode", "disabled", "--no-progress_bar"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "8 file(s) of submission.zip are placeholders" in err and "CoLA.tsv" in err and "AX.tsv" in err
    files = read_zip(path / "submission.zip")
    for name, rows in OFFICIAL_ROWS.items():
        assert [r[0] for r in files[name][1:]] == [str(i) for i in range(rows)], name
    for name, task in (("MRPC.tsv", "mrpc"), ("RTE.tsv", "rte"), ("SST-2.tsv", "sst2")):
        assert {r[1] for r in files[name][1:]} <= VOCABULARY[task]
    with open(path / "results.csv", newline="") as file:
        rows = {r["task"]: r for r in csv.DictReader(file)}
    assert rows["GLUE"]["status"] == "3 of 9 tasks"
    assert float(rows["GLUE"]["score"]) == pytest.approx(hand_score(path, ["mrpc", "rte", "sst2"]), abs=1e-12)
    assert {t for t, r in rows.items() if r["status"] == "not run"} == set(NINE) - {"mrpc", "rte", "sst2"}
    for task, dev in (("mrpc", 408), ("rte", 277), ("sst2", 872)):
        assert json.loads((path / "runs" / task / "summary.json").read_text())["train_examples"] == 64
        assert json.loads((path / "runs" / task / "metrics.jsonl").read_text().splitlines()[0])["validation/examples"] == dev
    assert main(["glue", "--check", str(path / "submission.zip"), "--data_dir", str(shared_glue)]) == 0


# On a Ray cluster ------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'gluebox[sweep]')")
def test_tasks_run_in_parallel_as_ray_tasks(tiny_bert, glue_data, tmp_path, monkeypatch, capsys):
    """--address: each task a Ray task with its own CPU (here on a 2-CPU Ray instance this test starts)."""
    import ray

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        path = tmp_path / "glue"
        assert main(glue_args(tiny_bert, glue_data, path, "--tasks", "rte,wnli", "--address", "auto",
                              "--cpus_per_task", "1")) == 0
    finally:
        ray.shutdown()
    assert "in parallel on the Ray cluster at auto (1 CPU(s), 0 GPU(s) per task)" in capsys.readouterr().out
    for task in ("rte", "wnli"):
        run = path / "runs" / task
        assert status(run)["status"] == "complete"
        assert json.loads((run / "environment.json").read_text())["torch_threads"] == 1
        assert status(run)["pid"] != os.getpid()  # trained in a Ray worker
    files = read_zip(path / "submission.zip")
    assert [r[0] for r in files["RTE.tsv"][1:]] == build_task("rte")["test"].ids
    assert {r[1] for r in files["WNLI.tsv"][1:]} <= VOCABULARY["wnli"]


def test_the_example_overrides_file_loads():
    from conftest import REPO
    from gluebox.suite.spec import load_overrides

    overrides = load_overrides(str(REPO / "docs" / "glue-overrides.yaml"))
    assert overrides["rte"] == {"epochs": 10, "learning_rate": 3e-5} and set(overrides) <= set(NINE)


def test_time_budget_is_shared_by_planned_cost_and_overrides_reach_each_task(tiny_bert, glue_data, tmp_path, capsys,
                                                                              monkeypatch):
    """`gluebox glue --time_budget 1h`: RTE keeps the 10 minutes its override gives it; MRPC and STS-B share the
    other 50 by their planned cost, as the plan shows and their runs get. The trainer controls reach a task
    through --overrides. (A fake clock: the runs never depend on the machine's speed.)"""
    from gluebox.training.budget import FAKE_CLOCK_VARIABLE

    monkeypatch.setenv(FAKE_CLOCK_VARIABLE, "token:0.001,validation:1")
    overrides = _overrides(tmp_path, {"rte": {"time_budget": "10m", "eval_every_n_steps": 2, "lr_scheduler": "cosine",
                                              "metric_for_best": "validation/loss", "early_stopping_patience": 1,
                                              "max_steps": 5}})
    path = tmp_path / "suite"
    assert main(glue_args(tiny_bert, glue_data, path, "--tasks", "mrpc,rte,stsb", "--time_budget", "1h",
                          "--overrides", overrides)) == 0
    out = capsys.readouterr().out
    plan = json.loads((path / "suite.json").read_text())["configs"]
    budgets = {task: plan[task]["time_budget"] for task in ("mrpc", "rte", "stsb")}
    assert budgets["rte"] == 600 and budgets["mrpc"] + budgets["stsb"] == pytest.approx(3000)
    header = next(line for line in out.splitlines() if line.strip().startswith("task "))
    assert "time budget" in header
    for task, seconds in budgets.items():
        row = next(line for line in out.splitlines() if line.strip().startswith(f"{task} "))
        from gluebox.training.eta import duration

        assert duration(seconds) in row
        summary = json.loads((path / "runs" / task / "summary.json").read_text())
        assert summary["time_budget"]["budget_seconds"] == pytest.approx(seconds)
    rte = [json.loads(line) for line in (path / "runs" / "rte" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rte][:2] == [2, 4] and rte[-1]["step"] <= 5
