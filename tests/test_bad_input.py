"""Bad input to `gluebox train`: one line on stderr that says what is wrong, exit code 2, no traceback,
and nothing left behind that looks like a run (no run directory at all, and never a summary.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import train_args, write_tsv
from gluebox.cli import build_parser, main
from gluebox.commands.train import resolve_train_config
from gluebox.config import TrainConfig

RTE_HEADER = ["index", "sentence1", "sentence2", "label"]
RTE_LABELS = ("entailment", "not_entailment")


def rte_rows(count: int) -> list[list[str]]:
    return [[str(i), f"Sentence number {i} is short.", f"Another sentence {i}.", RTE_LABELS[i % 2]]
            for i in range(count)]


def write_rte(folder: Path, train: list[list[str]] | None = None, dev: list[list[str]] | None = None) -> Path:
    write_tsv(folder / "train.tsv", RTE_HEADER, rte_rows(6) if train is None else train)
    write_tsv(folder / "dev.tsv", RTE_HEADER, rte_rows(4) if dev is None else dev)
    return folder


def write_stsb(folder: Path, scores: list[str]) -> Path:
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
              "score"]
    rows = [[str(i), "main-news", "MSRvid", "2012test", f"{i:04d}", "none", "none", f"A man sings {i}.",
             f"A man plays {i}.", score] for i, score in enumerate(scores)]
    write_tsv(folder / "train.tsv", header, rows)
    write_tsv(folder / "dev.tsv", header, rows)
    return folder


@pytest.fixture
def rte(tmp_path) -> Path:
    return write_rte(tmp_path / "RTE")


def quick(*extra: str) -> list[str]:
    return ["--max_seq_length", "32", "--epochs", "1", "--train_batch_size", "4", *extra]


def assert_refused(capsys, args: list[str], phrase: str, output: Path | None) -> str:
    """Run the CLI; check the one-line error contract and that no run directory was left behind."""
    rc = main(args)
    captured = capsys.readouterr()
    err = captured.err
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("gluebox: error: "), lines[0]
    assert phrase in lines[0], lines[0]
    if output is not None:
        assert not (output / "summary.json").exists()
        assert not output.exists(), f"{output} was created: {sorted(p.name for p in output.iterdir())}"
    return lines[0]


def refuse(capsys, tmp_path, model: str, phrase: str, *extra: str) -> str:
    output = tmp_path / "run"
    return assert_refused(capsys, train_args(model, output, *extra), phrase, output)


# Task and data ----------------------------------------------------------------------------------


def test_unknown_task(capsys, tmp_path, tiny_bert, rte):
    line = refuse(capsys, tmp_path, tiny_bert, "unknown task 'nosuchtask'", "--task_name", "nosuchtask",
                  "--data_dir", str(rte), *quick())
    assert "rte" in line  # it lists the tasks there are


def test_task_without_training_data(capsys, tmp_path, tiny_bert):
    folder = tmp_path / "diagnostic"
    write_tsv(folder / "diagnostic.tsv", ["index", "sentence1", "sentence2"], [["0", "A b.", "C d."]])
    line = refuse(capsys, tmp_path, tiny_bert, "task 'ax' has no training data", "--task_name", "ax",
                  "--data_dir", str(folder), *quick())
    assert "gluebox predict" in line


def test_missing_data_files(capsys, tmp_path, tiny_bert, rte):
    (rte / "dev.tsv").unlink()
    line = refuse(capsys, tmp_path, tiny_bert, "no dev.tsv", "--task_name", "rte", "--data_dir", str(rte), *quick())
    assert "train.tsv" in line  # it says what the folder does hold
    refuse(capsys, tmp_path, tiny_bert, "is not a folder", "--task_name", "rte", "--data_dir",
           str(tmp_path / "nowhere"), *quick())
    missing = tmp_path / "nope.csv"
    refuse(capsys, tmp_path, tiny_bert, f"data file {missing} does not exist", "--train_file", str(missing),
           "--task_name", "mine", *quick())


@pytest.mark.parametrize("content", ["", "\n\n", "\ufeff"])
def test_empty_data_file(capsys, tmp_path, tiny_bert, rte, content):
    (rte / "train.tsv").write_text(content, encoding="utf-8")
    refuse(capsys, tmp_path, tiny_bert, f"data file {rte / 'train.tsv'} is empty", "--task_name", "rte",
           "--data_dir", str(rte), *quick())


def test_header_but_no_rows(capsys, tmp_path, tiny_bert):
    train = tmp_path / "train.csv"
    train.write_text("sentence1,label\n")
    refuse(capsys, tmp_path, tiny_bert, "has a header but no rows", "--train_file", str(train), "--task_name", "mine",
           "--text_pair_column", "none", *quick())


def test_tsv_row_with_wrong_number_of_fields(capsys, tmp_path, tiny_bert):
    rows = rte_rows(6)
    rows[2] = rows[2][:3]  # the label lost: file line 4 (header is line 1)
    folder = write_rte(tmp_path / "RTE", dev=rows)
    refuse(capsys, tmp_path, tiny_bert, f"{folder / 'dev.tsv'}, line 4: expected 4 tab-separated fields, found 3",
           "--task_name", "rte", "--data_dir", str(folder), *quick())


def test_csv_row_with_wrong_number_of_fields(capsys, tmp_path, tiny_bert):
    train = tmp_path / "train.csv"
    train.write_text('sentence1,label\n"Fine, really",pos\nToo,many,fields\nok,neg\n')
    refuse(capsys, tmp_path, tiny_bert, f"{train}, line 3: expected 2 comma-separated fields, found 3",
           "--train_file", str(train), "--task_name", "mine", "--text_pair_column", "none", *quick())


def test_jsonl_line_that_is_not_an_object(capsys, tmp_path, tiny_bert):
    train = tmp_path / "train.jsonl"
    train.write_text('{"sentence1": "a", "label": "pos"}\n["b", "neg"]\n')
    refuse(capsys, tmp_path, tiny_bert, f"{train}, line 2: each line must be a JSON object",
           "--train_file", str(train), "--task_name", "mine", "--text_pair_column", "none", *quick())


def test_jsonl_record_with_a_field_missing(capsys, tmp_path, tiny_bert):
    train = tmp_path / "train.jsonl"
    train.write_text('{"sentence1": "a", "label": "pos"}\n{"sentence1": "b"}\n{"sentence1": "c", "label": "neg"}\n')
    refuse(capsys, tmp_path, tiny_bert, "line 2", "--train_file", str(train), "--task_name", "mine",
           "--text_pair_column", "none", *quick())


def test_empty_text(capsys, tmp_path, tiny_bert):
    rows = rte_rows(6)
    rows[4][2] = "   "
    folder = write_rte(tmp_path / "RTE", train=rows)
    refuse(capsys, tmp_path, tiny_bert, f"{folder / 'train.tsv'}, line 6: empty text in column 'sentence2'",
           "--task_name", "rte", "--data_dir", str(folder), *quick())


def test_missing_column(capsys, tmp_path, tiny_bert):
    train = tmp_path / "train.csv"
    train.write_text("text,sentiment\nGood film,pos\nBad film,neg\n")
    line = refuse(capsys, tmp_path, tiny_bert, "no column 'label'", "--train_file", str(train), "--task_name", "mine",
                  "--text_column", "text", "--text_pair_column", "none", *quick())
    assert "sentiment" in line and "--label_column" in line
    # A GLUE file whose header lost a column.
    folder = tmp_path / "RTE"
    write_tsv(folder / "train.tsv", ["index", "sentence1", "hypothesis", "label"], rte_rows(4))
    write_tsv(folder / "dev.tsv", RTE_HEADER, rte_rows(4))
    refuse(capsys, tmp_path, tiny_bert, "no column 'sentence2'", "--task_name", "rte", "--data_dir", str(folder),
           *quick())


def test_label_outside_the_task_labels(capsys, tmp_path, tiny_bert):
    rows = rte_rows(4)
    rows[1][3] = "maybe"
    folder = write_rte(tmp_path / "RTE", dev=rows)
    line = refuse(capsys, tmp_path, tiny_bert, f"{folder / 'dev.tsv'}, line 3: label 'maybe' is not one of rte's labels",
                  "--task_name", "rte", "--data_dir", str(folder), *quick())
    assert "entailment, not_entailment" in line


@pytest.mark.parametrize("score", ["high", "", "nan", "inf"])
def test_non_numeric_stsb_score(capsys, tmp_path, tiny_bert, score):
    folder = write_stsb(tmp_path / "STS-B", ["4.0", "1.5", score, "0.0"])
    refuse(capsys, tmp_path, tiny_bert, f"line 4: score '{score}' is not a number",
           "--task_name", "stsb", "--data_dir", str(folder), *quick())


def test_bytes_that_are_not_utf8(capsys, tmp_path, tiny_bert, rte):
    path = rte / "train.tsv"
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"short", b"sh\xf6rt")  # Latin-1 'ö' on line 3
    path.write_bytes(b"\n".join(lines))
    line = refuse(capsys, tmp_path, tiny_bert, f"{path}, line 3", "--task_name", "rte", "--data_dir", str(rte),
                  *quick())
    assert "UTF-8" in line


# Models ----------------------------------------------------------------------------------------


def test_data_problems_come_before_a_model_that_does_not_load(capsys, tmp_path, rte, monkeypatch):
    """The data is checked (cheaply) before anything looks at the model, so with both wrong the first
    error is about the data; a bad row too is reported before the model is loaded."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model in (str(tmp_path / "no-such-model"), "nobody/not-a-model"):
        refuse(capsys, tmp_path, model, "--data_dir /nope is not a folder", "--task_name", "rte",
               "--data_dir", "/nope", *quick())
        refuse(capsys, tmp_path, model, f"data file {tmp_path / 'nope.csv'} does not exist",
               "--train_file", str(tmp_path / "nope.csv"), "--task_name", "mine", *quick())
    (rte / "dev.tsv").unlink()
    refuse(capsys, tmp_path, "nobody/not-a-model", "no dev.tsv", "--task_name", "rte", "--data_dir", str(rte), *quick())
    write_rte(rte, train=[["0", "A sentence.", " ", "entailment"], *rte_rows(3)])
    refuse(capsys, tmp_path, "nobody/not-a-model", "line 2: empty text", "--task_name", "rte", "--data_dir", str(rte),
           *quick())


def test_model_folder_without_weights(capsys, tmp_path, tiny_bert, rte):
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    shutil.copy(Path(tiny_bert) / "config.json", only_config)
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_bert, no_weights, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    empty = tmp_path / "empty"
    empty.mkdir()
    for model in (only_config, no_weights, empty):
        line = refuse(capsys, tmp_path, str(model), f"{model} is not a loadable", "--task_name", "rte",
                      "--data_dir", str(rte), *quick())
        assert "weights" in line


@pytest.fixture(scope="module")
def small_vocab_model(tmp_path_factory, tiny_bert) -> str:
    from transformers import AutoModel, AutoTokenizer, BertConfig

    path = tmp_path_factory.mktemp("small-vocab")
    config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(path)  # 30522 tokens
    return str(path)


def test_model_and_tokenizer_mismatch(capsys, tmp_path, small_vocab_model, rte):
    line = refuse(capsys, tmp_path, small_vocab_model, "embedding table has 1000", "--task_name", "rte",
                  "--data_dir", str(rte), *quick())
    assert "30522 tokens" in line


def test_uncached_hub_model_while_offline(capsys, tmp_path, rte, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = refuse(capsys, tmp_path, "nobody/not-a-model", "gluebox cache", "--task_name", "rte",
                  "--data_dir", str(rte), *quick())
    assert "nobody/not-a-model" in line and "offline" in line


def test_max_seq_length_beyond_the_model(capsys, tmp_path, tiny_bert, rte):
    line = refuse(capsys, tmp_path, tiny_bert, "--max_seq_length 512 is more than", "--task_name", "rte",
                  "--data_dir", str(rte), *quick("--max_seq_length", "512"))
    assert "(128)" in line


# Flags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["train", "--learning_rte", "3e-5"], "unrecognized arguments: --learning_rte 3e-5; did you mean --learning_rate?"),
        (["train", "--eopchs=2"], "did you mean --epochs?"),
        (["evaluate", "RUN", "--splt", "test"], "did you mean --split? (see `gluebox evaluate --help`)"),
        (["predict", "RUN", "--output", "p.tsv", "--outptu", "q.tsv"], "did you mean --output?"),
        (["cache", "--no_dta"], "did you mean --no_data?"),
        (["plot", "RUN", "--tilte", "x"], "did you mean --title?"),
        (["compare", "A", "B", "--debgu"], "did you mean --debug?"),
        (["sweep", "FILE", "--adress", "auto"], "did you mean --address?"),
    ],
)
def test_mistyped_flag_suggests_the_closest(capsys, args, phrase):
    assert_refused(capsys, args, phrase, None)


def test_unknown_flag_without_a_close_one_gets_no_suggestion(capsys):
    line = assert_refused(capsys, ["train", "--zzzz"], "unrecognized arguments: --zzzz", None)
    assert "did you mean" not in line


@pytest.mark.parametrize(
    ("flags", "phrase"),
    [
        (["--learning_rate", "0"], "--learning_rate must be a positive number, got 0"),
        (["--learning_rate", "-1"], "--learning_rate must be a positive number, got -1"),
        (["--lr", "nan"], "--learning_rate must be a positive number"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--train_batch_size", "0"], "--train_batch_size must be at least 1, got 0"),
        (["--epochs", "two"], "invalid int value: 'two'"),
        (["--no_such_flag", "1"], "unrecognized arguments: --no_such_flag"),
        (["--padding", "sideways"], "invalid choice: 'sideways'"),
        (["--checkpoint_every_n_steps", "0"], "--checkpoint_every_n_steps must be at least 1, got 0"),
        (["--checkpoint_every_minutes", "-1"], "--checkpoint_every_minutes must be 0 or more, got -1"),
        (["--checkpoint_every_minutes", "inf"], "--checkpoint_every_minutes must be 0 or more"),
        (["--lr_scheduler", "polynomial"], "invalid choice: 'polynomial'"),
        (["--warmup_ratio", "1.5"], "--warmup_ratio must be between 0 and 1, got 1.5"),
        (["--warmup_steps", "-1"], "--warmup_steps must be 0 or more, got -1"),
        (["--warmup_steps", "10", "--warmup_ratio", "0.1"],
         "--warmup_steps 10 and --warmup_ratio 0.1 both set the warmup; give one of them"),
        (["--lr_scheduler", "constant", "--warmup_steps", "5"], "--lr_scheduler constant has no warmup"),
        (["--max_steps", "0"], "--max_steps must be at least 1, got 0"),
        (["--eval_every_n_steps", "-3"], "--eval_every_n_steps must be at least 1, got -3"),
        (["--early_stopping_patience", "0"], "--early_stopping_patience must be at least 1, got 0"),
        (["--early_stopping_patience", "2", "--early_stopping_min_delta", "-0.1"],
         "--early_stopping_min_delta must be 0 or more, got -0.1"),
        (["--early_stopping_min_delta", "0.1"], "--early_stopping_min_delta only applies to early stopping"),
        (["--metric_for_best", "matthews_correlation"],
         "--metric_for_best matthews_correlation: the rte task reports no such metric; choose one of "
         "validation/accuracy, validation/loss"),
        (["--metric_for_best", "test/accuracy"], "--metric_for_best test/accuracy: the rte task reports no such metric"),
        (["--time_budget", "0"], "--time_budget must be a positive duration like 90s, 30m or 2h, got 0 s"),
        (["--time_budget=-5m"], "cannot read duration '-5m'; write it like 90s, 30m or 2h"),
        (["--time_budget", "5 fortnights"], "cannot read duration '5 fortnights'; write it like 90s, 30m or 2h"),
    ],
)
def test_bad_flag_values(capsys, tmp_path, tiny_bert, rte, flags, phrase):
    refuse(capsys, tmp_path, tiny_bert, phrase, "--task_name", "rte", "--data_dir", str(rte), *quick(), *flags)


def test_unwritable_output_directory(capsys, tmp_path, tiny_bert, rte):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    output = blocker / "child" / "run"
    args = train_args(tiny_bert, output, "--task_name", "rte", "--data_dir", str(rte), *quick())
    line = assert_refused(capsys, args, "is not a folder", None)
    assert str(blocker) in line
    assert blocker.read_text() == "not a folder"


def test_existing_run_directory_is_not_overwritten(capsys, tmp_path, tiny_bert, rte):
    output = tmp_path / "run"
    args = train_args(tiny_bert, output, "--task_name", "rte", "--data_dir", str(rte), *quick())
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    (output / "notes.txt").write_text("mine")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in output.rglob("*") if p.is_file()}
    assert output / "summary.json" in before

    rc = main(args + ["--seed", "7"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.splitlines() == [err.strip()] and "already exists" in err and "--overwrite" in err
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in output.rglob("*") if p.is_file()}
    assert after == before

    # --overwrite replaces only what gluebox wrote: with the user's notes there, it deletes nothing.
    assert main(args + ["--seed", "7", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and "--overwrite would delete notes.txt" in err
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in output.rglob("*") if p.is_file()} == before

    # With the notes moved out, the old run is replaced (so the checks above are what kept it).
    (output / "notes.txt").rename(tmp_path / "notes.txt")
    assert main(args + ["--seed", "7", "--overwrite"]) == 0
    assert json.loads((output / "summary.json").read_text())["seed"] == 7


def test_debug_shows_the_traceback(capsys, tmp_path, tiny_bert, rte, monkeypatch):
    monkeypatch.delenv("GLUEBOX_DEBUG", raising=False)
    output = tmp_path / "run"
    args = train_args(tiny_bert, output, "--task_name", "rte", "--data_dir", str(rte), *quick("--epochs", "0"))
    for argv in (["--debug", *args], [*args, "--debug"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and "GlueboxError" in err
        assert err.splitlines()[-1] == "gluebox: error: --epochs must be at least 1, got 0"
    assert not output.exists()


# YAML configs -------------------------------------------------------------------------------------


def test_malformed_yaml_config(capsys, tmp_path, tiny_bert, rte):
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 1\nlearning_rate: [1e-4\n")
    line = refuse(capsys, tmp_path, tiny_bert, f"config file {config} is not valid YAML", "--config", str(config),
                  "--task_name", "rte", "--data_dir", str(rte), *quick())
    assert "line" in line


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("epochs: 1\nlearning_rat: 0.001\n", "unknown key 'learning_rat'"),
        ("epochs: one\n", "'epochs' must be int"),
        ("- epochs\n- 1\n", "must be a mapping"),
    ],
)
def test_bad_yaml_config_content(capsys, tmp_path, tiny_bert, rte, text, phrase):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    refuse(capsys, tmp_path, tiny_bert, phrase, "--config", str(config), "--task_name", "rte",
           "--data_dir", str(rte), *quick())


def test_missing_yaml_config(capsys, tmp_path, tiny_bert, rte):
    refuse(capsys, tmp_path, tiny_bert, "does not exist", "--config", str(tmp_path / "none.yaml"),
           "--task_name", "rte", "--data_dir", str(rte))


def test_yaml_sets_flags_and_the_command_line_wins(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "task_name: rte\n"
        "epochs: 7\n"
        "lr: 3e-4\n"  # an alias; YAML reads 3e-4 as text, gluebox as a float
        "train_batch_size: 16\n"
        "group_by_length: false\n"
        "text_pair_column: null\n"
        "max_train_samples: 100\n"
    )
    parser = build_parser()
    resolved = resolve_train_config(parser.parse_args(["train", "--config", str(config)]))
    assert isinstance(resolved, TrainConfig)
    assert (resolved.task_name, resolved.epochs, resolved.learning_rate) == ("rte", 7, 3e-4)
    assert resolved.train_batch_size == 16 and resolved.group_by_length is False
    assert resolved.text_pair_column is None and resolved.max_train_samples == 100
    assert resolved.seed == TrainConfig().seed  # untouched fields keep their defaults

    resolved = resolve_train_config(parser.parse_args(
        ["train", "--config", str(config), "--epochs", "2", "--learning_rate", "5e-5", "--group_by_length",
         "--task_name", "mrpc"]
    ))
    assert (resolved.task_name, resolved.epochs, resolved.learning_rate) == ("mrpc", 2, 5e-5)
    assert resolved.group_by_length is True
    assert resolved.train_batch_size == 16  # still from the file

    resolved = resolve_train_config(parser.parse_args(["train", "--epochs", "4"]))
    assert resolved.epochs == 4 and resolved.learning_rate == TrainConfig().learning_rate


def test_yaml_config_drives_a_refusal_like_a_flag(capsys, tmp_path, tiny_bert, rte):
    """A bad value from the YAML file is checked like the same flag on the command line."""
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 0\n")
    refuse(capsys, tmp_path, tiny_bert, "--epochs must be at least 1, got 0", "--config", str(config),
           "--task_name", "rte", "--data_dir", str(rte))
    # ... and the command line overrides it into a valid run.
    output = tmp_path / "ok"
    rc = main(train_args(tiny_bert, output, "--config", str(config), "--task_name", "rte", "--data_dir", str(rte),
                         *quick()))
    assert rc == 0, capsys.readouterr().err
    assert (output / "summary.json").exists()



# Memory, run directories and checkpoints ----------------------------------------------------------


def test_run_that_cannot_fit_in_memory_is_refused_before_reading_data(capsys, tmp_path, tiny_bert, rte):
    (rte / "train.tsv").write_text("")  # not read: the memory check comes first
    line = refuse(capsys, tmp_path, tiny_bert, "not enough memory", "--task_name", "rte", "--data_dir", str(rte),
                  *quick("--memory_budget", "500MB"))
    assert "0.50 GB is available (--memory_budget)" in line
    assert "--max_seq_length" in line and "smaller model" in line


def test_overwrite_never_removes_what_gluebox_did_not_write(capsys, tmp_path, tiny_bert, rte):
    """--overwrite replaces a run directory, not a folder of the user's own, nor a file."""
    mine = tmp_path / "my-documents"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    line = assert_refused(capsys, train_args(tiny_bert, mine, "--task_name", "rte", "--data_dir", str(rte),
                                             *quick(), "--overwrite"), "not a gluebox run", None)
    assert "--output_dir" in line and (mine / "thesis.tex").read_text() == "years of work"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert_refused(capsys, train_args(tiny_bert, a_file, "--task_name", "rte", "--data_dir", str(rte), *quick(),
                                      "--overwrite"), "not a gluebox run", None)
    assert a_file.read_text() == "keep me"


def test_existing_run_directory_points_to_resume(capsys, tmp_path, tiny_bert, rte):
    output = tmp_path / "run"
    output.mkdir()  # a run of a gluebox from before the marker: its status, config and task
    (output / "status.json").write_text('{"status": "interrupted"}')
    (output / "config.yaml").write_text("task_name: rte\n")
    (output / "task.json").write_text("{}")
    line = assert_refused(capsys, train_args(tiny_bert, output, "--task_name", "rte", "--data_dir", str(rte),
                                             *quick()), "already exists", None)
    assert f"--resume {output}" in line and "--overwrite" in line


def test_checkpoint_dir_of_another_run_is_not_overwritten(capsys, tmp_path, tiny_bert, rte):
    shared = tmp_path / "ckpts"
    shared.mkdir()
    (shared / "last.ckpt").write_bytes(b"another run's checkpoint")
    line = refuse(capsys, tmp_path, tiny_bert, "already holds last.ckpt", "--task_name", "rte", "--data_dir",
                  str(rte), *quick(), "--checkpoint_dir", str(shared))
    assert "--checkpoint_dir" in line
    assert (shared / "last.ckpt").read_bytes() == b"another run's checkpoint"
