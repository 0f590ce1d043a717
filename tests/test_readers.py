"""The readers of data/readers.py and the custom-file paths of data/sources.py.

Every file is written by the test itself. The property-based tests feed random, often malformed
files to the readers and check the contract: a file either loads (with consistent columns) or is
refused with one GlueboxError line, never any other exception.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import train_args, write_tsv
from gluebox.cli import main
from gluebox.config import TrainConfig
from gluebox.data.readers import detect_format, read_rows, read_text
from gluebox.data.sources import load_split, resolve_task
from gluebox.errors import GlueboxError
from gluebox.tasks import GLUE_TASKS


def write_csv(path: Path, header: list[str], rows: list[list], bom: bool = False, crlf: bool = False) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(("\ufeff" if bom else "") + buffer.getvalue(), encoding="utf-8", newline="")
    return path


def write_jsonl(path: Path, records: list, bom: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


def fields(rows: list[dict]) -> list[dict]:
    """Rows without the reader's ``__line__`` bookkeeping."""
    return [{k: v for k, v in row.items() if k != "__line__"} for row in rows]


def custom_config(train: Path, validation: Path | None = None, **kwargs) -> TrainConfig:
    values = dict(task_name="custom", train_file=str(train), validation_file=str(validation or train))
    return TrainConfig(**(values | kwargs)).validate()


def one_line(error: GlueboxError) -> str:
    message = str(error)
    assert message and "\n" not in message, repr(message)
    return message


# Formats --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.tsv", "tsv"), ("a.TXT", "tsv"), ("a.csv", "csv"), ("a.CSV", "csv"), ("a.jsonl", "jsonl"),
     ("a.json", "jsonl"), ("a.ndjson", "jsonl")],
)
def test_detect_format_by_extension(name, fmt):
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["data.xlsx", "data", "data.parquet"])
def test_unknown_extension_is_a_one_line_error(tmp_path, name):
    path = tmp_path / name
    path.write_text("sentence1,label\na,b\n")
    with pytest.raises(GlueboxError, match="unknown data format"):
        read_rows(path)


def test_csv_quoted_fields_with_commas_quotes_and_newlines(tmp_path):
    rows = [
        ['Hello, world', 'He said "hi",\nthen left.', "pos"],
        ["plain", "multi\nline\ntext", "neg"],
        ["  padded  ", "", "pos"],
    ]
    path = write_csv(tmp_path / "d.csv", ["sentence1", "sentence2", "label"], rows)
    got = read_rows(path)
    assert fields(got) == [dict(zip(["sentence1", "sentence2", "label"], r)) for r in rows]
    # Line numbers are counted in the file, so the second record comes after the first one's newline.
    assert int(got[1]["__line__"]) > int(got[0]["__line__"]) >= 2


def test_csv_crlf_and_bom(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["sentence1", "label"], [["a b", "1"], ["c\r\nd", "0"]], bom=True, crlf=True)
    rows = read_rows(path)
    assert list(rows[0])[:2] == ["sentence1", "label"]  # no BOM glued to the first column name
    assert fields(rows) == [{"sentence1": "a b", "label": "1"}, {"sentence1": "c\r\nd", "label": "0"}]


def test_csv_blank_lines_are_skipped_and_malformed_quotes_are_one_line_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence1,label\n\na,1\n,\nb,0\n")
    assert [r["sentence1"] for r in read_rows(path)] == ["a", "b"]
    path.write_text('sentence1,label\n"a"b",1\n')
    with pytest.raises(GlueboxError, match="malformed CSV") as caught:
        read_rows(path)
    assert str(path) in one_line(caught.value)


def test_tsv_keeps_raw_quotes_and_splits_only_on_tabs(tmp_path):
    rows = [['"Quoted', 'end" here', "1"], ['a "b" c', '""', "0"], ["it's", "x,y,z", "1"]]
    path = write_tsv(tmp_path / "d.tsv", ["sentence1", "sentence2", "label"], rows, bom=True)
    assert fields(read_rows(path)) == [dict(zip(["sentence1", "sentence2", "label"], r)) for r in rows]


def test_tsv_crlf_blank_lines_and_line_numbers(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes(b"sentence1\tlabel\r\na\t1\r\n\r\nb\t0\r\n")
    rows = read_rows(path)
    assert fields(rows) == [{"sentence1": "a", "label": "1"}, {"sentence1": "b", "label": "0"}]
    assert [r["__line__"] for r in rows] == ["2", "4"]


def test_tsv_quote_does_not_swallow_a_tab(tmp_path):
    """GLUE files are not quoted: a quoted tab is still a separator, so the row has too many fields."""
    path = tmp_path / "d.tsv"
    path.write_text('sentence1\tlabel\n"a\tb"\t1\n')
    with pytest.raises(GlueboxError, match=r"line 2: expected 2 tab-separated fields, found 3"):
        read_rows(path)


def test_header_given_for_headerless_files(tmp_path):
    path = write_tsv(tmp_path / "d.tsv", None, [["gj04", "1", "", "A sentence."], ["gj04", "0", "*", "Bad sentence ."]])
    rows = read_rows(path, header=["source", "label", "original_label", "sentence"])
    assert [r["sentence"] for r in rows] == ["A sentence.", "Bad sentence ."]
    assert [r["__line__"] for r in rows] == ["1", "2"]


def test_jsonl_values_become_text(tmp_path):
    records = [
        {"sentence1": "a", "label": 1, "score": 2.5, "flag": True, "missing": None},
        {"sentence1": "b \"q\"", "label": 0, "score": -1, "flag": False, "missing": "x"},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", records, bom=True)
    assert fields(read_rows(path)) == [
        {"sentence1": "a", "label": "1", "score": "2.5", "flag": "1", "missing": ""},
        {"sentence1": 'b "q"', "label": "0", "score": "-1", "flag": "0", "missing": "x"},
    ]


@pytest.mark.parametrize(
    ("line", "phrase"),
    [("[1, 2]", "JSON object"), ('"text"', "JSON object"), ("{bad json", "not valid JSON"),
     ('{"sentence1": {"nested": 1}}', "text or a number"), ('{"sentence1": [1]}', "text or a number")],
)
def test_jsonl_bad_lines_are_one_line_errors_with_the_line_number(tmp_path, line, phrase):
    path = tmp_path / "d.jsonl"
    path.write_text('{"sentence1": "ok", "label": "x"}\n\n' + line + "\n")
    with pytest.raises(GlueboxError, match=phrase) as caught:
        read_rows(path)
    assert f"{path}, line 3" in one_line(caught.value)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_bom_only_and_whitespace_only_files_are_empty(tmp_path, suffix):
    for content in ("\ufeff", "\ufeff\n\n  \n", ""):
        path = tmp_path / f"d{suffix}"
        path.write_text(content, encoding="utf-8")
        with pytest.raises(GlueboxError, match="empty"):
            read_rows(path)


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
def test_header_without_rows_and_repeated_columns(tmp_path, suffix):
    sep = "\t" if suffix == ".tsv" else ","
    path = tmp_path / f"d{suffix}"
    path.write_text(sep.join(["sentence1", "label"]) + "\n")
    with pytest.raises(GlueboxError, match="header but no rows"):
        read_rows(path)
    path.write_text(sep.join(["label", "sentence1", "label "]) + "\na" + sep + "b" + sep + "c\n")
    with pytest.raises(GlueboxError, match="repeats a column name"):
        read_rows(path)


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes(b"\xef\xbb\xbfsentence1\tlabel\nfine\t1\ncaf\xe9\t0\n")
    with pytest.raises(GlueboxError) as caught:
        read_text(path)
    message = one_line(caught.value)
    assert f"{path}, line 3" in message and "UTF-8" in message


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(GlueboxError, match="does not exist"):
        read_rows(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(GlueboxError, match="not a file"):
        read_rows(tmp_path / "dir.csv")


# Custom files through sources.py ----------------------------------------------------------------


def test_custom_csv_with_named_columns_and_string_labels(tmp_path):
    header = ["id", "review", "summary", "stars", "verdict"]
    train_rows = [
        ["r1", "Great, really great.", "good", "5", "pos"],
        ["r2", 'Awful.\nJust "awful".', "bad", "1", "neg"],
        ["r3", "Fine, I guess", "ok", "3", "pos"],
        ["r4", "No.", "nope", "2", "neg"],
    ]
    val_rows = [["v9", "Lovely", "nice", "4", "pos"], ["v7", "Meh, no", "poor", "2", "neg"]]
    train = write_csv(tmp_path / "train.csv", header, train_rows)
    val = write_csv(tmp_path / "val.csv", header, val_rows)
    config = custom_config(train, val, text_column="review", text_pair_column="summary", label_column="verdict")
    task = resolve_task(config)
    assert task.labels == ("neg", "pos") and task.metrics == ("accuracy", "f1") and task.is_pair
    examples = load_split(config, task, "train")
    assert examples.text_a == [r[1] for r in train_rows]
    assert examples.text_b == [r[2] for r in train_rows]
    assert examples.labels == [task.labels.index(r[4]) for r in train_rows]
    assert examples.ids == [r[0] for r in train_rows]
    validation = load_split(config, task, "validation")
    assert validation.labels == [1, 0] and validation.ids == ["v9", "v7"]


def test_custom_single_sentence_with_text_pair_none(tmp_path):
    path = write_tsv(tmp_path / "d.tsv", ["text", "label"], [["one", "b"], ["two", "a"], ["three", "c"]])
    config = custom_config(path, text_column="text", text_pair_column="none")
    task = resolve_task(config)
    assert not task.is_pair and task.labels == ("a", "b", "c") and task.metrics == ("accuracy",)
    examples = load_split(config, task, "train")
    assert examples.text_b is None and examples.labels == [1, 0, 2] and examples.ids == ["0", "1", "2"]


def test_custom_jsonl(tmp_path):
    records = [{"idx": 4, "sentence1": "a", "sentence2": "b", "label": 1},
               {"idx": 8, "sentence1": "c", "sentence2": "d", "label": 0},
               {"idx": 9, "sentence1": "e", "sentence2": "f", "label": 2}]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    config = custom_config(path)
    task = resolve_task(config)
    assert task.labels == ("0", "1", "2")
    examples = load_split(config, task, "train")
    assert examples.text_a == ["a", "c", "e"] and examples.text_b == ["b", "d", "f"]
    assert examples.labels == [1, 0, 2] and examples.ids == ["4", "8", "9"]


@pytest.mark.parametrize(
    ("labels", "problem_type", "regression", "names"),
    [
        (["0.5", "3", "4.25", "1"], "auto", True, ()),
        (["0", "3", "1", "3"], "auto", False, ("0", "1", "3")),
        (["10", "9", "2", "10"], "auto", False, ("2", "9", "10")),  # numeric labels sort as numbers
        (["0", "3", "1", "3"], "regression", True, ()),
        (["0.5", "2.5", "0.5", "10"], "classification", False, ("0.5", "2.5", "10")),
        (["yes", "no", "maybe", "yes"], "auto", False, ("maybe", "no", "yes")),
    ],
)
def test_problem_type(tmp_path, labels, problem_type, regression, names):
    path = write_csv(tmp_path / "d.csv", ["sentence1", "label"], [[f"text {i}", v] for i, v in enumerate(labels)])
    config = custom_config(path, text_pair_column="none", problem_type=problem_type)
    task = resolve_task(config)
    assert task.is_regression is regression and task.labels == names
    examples = load_split(config, task, "train")
    if regression:
        assert examples.labels == [float(v) for v in labels]
        assert task.metrics == ("pearson", "spearmanr")
    else:
        assert examples.labels == [names.index(v) for v in labels]


def test_validation_label_unseen_in_training_is_refused(tmp_path):
    train = write_csv(tmp_path / "t.csv", ["sentence1", "label"], [["a", "pos"], ["b", "neg"]])
    val = write_csv(tmp_path / "v.csv", ["sentence1", "label"], [["c", "pos"], ["d", "neutral"]])
    config = custom_config(train, val, text_pair_column="none")
    task = resolve_task(config)
    with pytest.raises(GlueboxError, match=r"line 3: label 'neutral' is not one of") as caught:
        load_split(config, task, "validation")
    assert str(val) in one_line(caught.value)


def test_one_class_and_empty_label_are_refused(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["sentence1", "label"], [["a", "pos"], ["b", "pos"]])
    with pytest.raises(GlueboxError, match="two or more"):
        resolve_task(custom_config(path, text_pair_column="none"))
    path = write_csv(tmp_path / "d.csv", ["sentence1", "label"], [["a", "pos"], ["b", " "], ["c", "neg"]])
    with pytest.raises(GlueboxError, match=r"line 3: empty label"):
        resolve_task(custom_config(path, text_pair_column="none"))


def test_validation_file_without_train_file_is_refused(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["sentence1", "label"], [["a", "pos"], ["b", "neg"]])
    config = TrainConfig(task_name="rte", validation_file=str(path)).validate()
    with pytest.raises(GlueboxError, match="needs --train_file"):
        resolve_task(config)


# Short training runs on custom files ----------------------------------------------------------


def _reviews(count: int, start: int = 0) -> list[list[str]]:
    good = ["Loved it, truly.", 'A "great" film,\nwell acted.', "Wonderful and warm.", "Best of the year, easily."]
    bad = ["Hated it.", "Dull, slow, and\nlong.", 'Not "good" at all.', "A waste of time."]
    return [
        [f"r{start + i}", (good if i % 2 == 0 else bad)[i % 4], "pos" if i % 2 == 0 else "neg"]
        for i in range(count)
    ]


def test_cli_trains_on_custom_csv_with_string_labels(tmp_path, tiny_bert, capsys):
    header = ["id", "review", "sentiment"]
    train = write_csv(tmp_path / "train.csv", header, _reviews(8))
    val = write_csv(tmp_path / "val.csv", header, _reviews(5, start=100))
    run = tmp_path / "run"
    rc = main(train_args(
        tiny_bert, run, "--train_file", str(train), "--validation_file", str(val), "--task_name", "reviews",
        "--text_column", "review", "--text_pair_column", "none", "--label_column", "sentiment",
        "--max_seq_length", "32", "--epochs", "1", "--train_batch_size", "4", "--max_train_samples", "6",
    ))
    assert rc == 0, capsys.readouterr().err
    task = json.loads((run / "task.json").read_text())
    assert task["labels"] == ["neg", "pos"] and task["metrics"] == ["accuracy", "f1"] and task["text_b"] is None
    model_config = json.loads((run / "best_model" / "config.json").read_text())
    assert model_config["id2label"] == {"0": "neg", "1": "pos"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_examples"] == 6
    for key in ("validation/accuracy", "validation/f1"):
        assert 0.0 <= summary["final"][key] <= 1.0

    # Predictions come back as the file's own label names, against its id column.
    test = write_csv(tmp_path / "test.csv", ["id", "review"], [[r[0], r[1]] for r in _reviews(3, start=200)])
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(run), "--file", str(test), "--output", str(out)]) == 0
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["id"] for p in predictions] == ["r200", "r201", "r202"]
    assert {p["prediction"] for p in predictions} <= {"pos", "neg"}


def test_cli_float_scores_become_regression(tmp_path, tiny_bert, capsys):
    records = [{"a": f"sentence {i} about cats", "b": f"another {i} about dogs", "score": round(0.37 * i, 2)}
               for i in range(8)]
    train = write_jsonl(tmp_path / "train.jsonl", records)
    val = write_jsonl(tmp_path / "val.jsonl", records[:5])
    run = tmp_path / "run"
    rc = main(train_args(
        tiny_bert, run, "--train_file", str(train), "--validation_file", str(val), "--task_name", "sim",
        "--text_column", "a", "--text_pair_column", "b", "--label_column", "score", "--problem_type", "auto",
        "--max_seq_length", "32", "--epochs", "1", "--train_batch_size", "4",
    ))
    assert rc == 0, capsys.readouterr().err
    task = json.loads((run / "task.json").read_text())
    assert task["labels"] == [] and task["metrics"] == ["pearson", "spearmanr"]
    assert json.loads((run / "best_model" / "config.json").read_text())["problem_type"] == "regression"
    final = json.loads((run / "summary.json").read_text())["final"]
    assert math.isfinite(final["validation/loss"]) and "validation/pearson" in final


# Formerly known bugs --------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["label", "sentence1"])
def test_jsonl_record_missing_a_column_is_a_one_line_error(tmp_path, missing):
    records = [{"sentence1": "a", "label": "x"}, {"sentence1": "b", "label": "y"}, {"sentence1": "c", "label": "x"}]
    del records[2][missing]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    config = custom_config(path, text_pair_column="none")
    with pytest.raises(GlueboxError, match=f"line 3.*'{missing}'") as caught:
        task = resolve_task(config)
        load_split(config, task, "train")
    one_line(caught.value)


@pytest.mark.parametrize("value", ["1" * 5000, "[" * 100_000])
def test_jsonl_pathological_values_are_one_line_errors(tmp_path, value):
    path = tmp_path / "d.jsonl"
    path.write_text('{"sentence1": "a", "label": "x"}\n{"sentence1": "b", "label": ' + value + "\n")
    with pytest.raises(GlueboxError, match="line 2") as caught:
        read_rows(path)
    one_line(caught.value)


@pytest.mark.parametrize("literal", ["NaN", "-Infinity", "Infinity", "1e999", "-1e999"])
def test_jsonl_numbers_that_are_not_finite_are_one_line_errors(tmp_path, literal):
    """Python's json reads NaN and Infinity (not JSON) and turns 1e999 into inf; they would become the
    texts "nan" and "inf" without a word, so they are refused."""
    path = tmp_path / "d.jsonl"
    path.write_text('{"sentence1": "a", "label": 1.5}\n{"sentence1": "b", "label": ' + literal + "}\n")
    with pytest.raises(GlueboxError, match=f"line 2: {literal} is not a finite number") as caught:
        read_rows(path)
    assert "in quotes" in one_line(caught.value)


def test_jsonl_big_and_tiny_numbers_that_fit_become_text(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"sentence1": "a", "label": 12345678901234567890, "x": 1E-400, "y": 1e308}\n')
    assert fields(read_rows(path)) == [{"sentence1": "a", "label": "12345678901234567890", "x": "0.0", "y": "1e+308"}]


@pytest.mark.parametrize("case", ["csv-label", "csv-train-labels", "csv-header", "jsonl-key", "tsv-cr-label"])
def test_values_from_the_file_do_not_break_the_error_line(tmp_path, case):
    if case == "csv-label":
        train = write_csv(tmp_path / "t.csv", ["sentence1", "label"], [["a", "pos"], ["b", "neg"]])
        val = write_csv(tmp_path / "v.csv", ["sentence1", "label"], [["c", "pos\nitive"]])
        config = custom_config(train, val, text_pair_column="none")
        call = lambda: load_split(config, resolve_task(config), "validation")  # noqa: E731
    elif case == "csv-train-labels":
        train = write_csv(tmp_path / "t.csv", ["sentence1", "label"], [["a", "po\ns"], ["b", "neg"]])
        val = write_csv(tmp_path / "v.csv", ["sentence1", "label"], [["c", "other"]])
        config = custom_config(train, val, text_pair_column="none")
        call = lambda: load_split(config, resolve_task(config), "validation")  # noqa: E731
    elif case == "csv-header":
        path = write_csv(tmp_path / "t.csv", ["sentence\n1", "label"], [["a", "pos"], ["b", "neg"]])
        config = custom_config(path, text_pair_column="none")
        call = lambda: resolve_task(config)  # noqa: E731
    elif case == "jsonl-key":
        path = write_jsonl(tmp_path / "t.jsonl", [{"sentence1": "a", "bad\nkey": [1]}])
        call = lambda: read_rows(path)  # noqa: E731
    else:
        path = write_tsv(tmp_path / "t.tsv", ["sentence1", "label"], [["a", "pos"], ["b", "neg"]])
        val = write_tsv(tmp_path / "v.tsv", ["sentence1", "label"], [["c", "po\rs"]])
        config = custom_config(path, val, text_pair_column="none")
        call = lambda: load_split(config, resolve_task(config), "validation")  # noqa: E731
    with pytest.raises(GlueboxError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, repr(message)


# Property-based: random malformed files ------------------------------------------------------------
#
# Files are mostly well formed with a few defects each (a row of the wrong width, an empty text, an odd
# label, a renamed column, stray bytes, a BOM, CRLF line ends), so that both outcomes, loading and a
# refusal, are common. Values may hold newlines, quotes, tabs and BOMs (labels and column names too);
# JSON Lines records may lack a column or have extra ones, and hold pathological numbers (NaN, Infinity,
# 1e999, integers of hundreds or thousands of digits, deep nesting).

SPECIAL = [
    "", " ", "\t", "pos", "neg", "0", "1", "2", "1.5", "-0.25", "nan", "inf", "1e999", "3.0", "\n", "a\nb", "\r\n",
    "po\rs", "\ufeffpos", "\ufeff", "\ta\t", "'", "\"pos\"", "NaN", "Infinity", "-Infinity", "9" * 400,
    "entailment", "neutral", "contradiction", "not_entailment", "equivalent", '"', '""', '"a"b', "a,b",
    "sentence1", "sentence2", "label", "id", "index", "\ufeff", "\x00", "\u2028", "\x85", "é", "日本",
]
FIELD = st.one_of(st.sampled_from(SPECIAL), st.text(max_size=10))
LINE_FREE_FIELD = FIELD.map(lambda s: s.replace("\n", " ").replace("\r", " "))
SENTENCES = ["A man is singing.", 'He said "yes", twice.', "Why?", "x", "Prices rose 5%;\tthen fell.",
             "Multi\nline text", "  padded  ", "naïve café"]
LABELS = ["pos", "neg", "neutral", "0", "1", "2", "1.5", "0.25", "4.000", "-3", "nan", "", "yes"]
PROPERTY = settings(
    max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def mostly(draw, good, bad, one_in: int = 8):
    """A draw from ``good``, or from ``bad`` one time in ``one_in``."""
    return draw(bad) if draw(st.integers(0, one_in - 1)) == 0 else draw(good)


def _line_free(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")


@st.composite
def columns_and_config(draw):
    """The file's column names and the --text_column/--text_pair_column/--label_column that name them."""
    pair = draw(st.booleans())
    header = ["sentence1"] + (["sentence2"] if pair else []) + ["label"]
    if draw(st.booleans()):
        header.insert(draw(st.integers(0, len(header))), draw(st.sampled_from(["id", "idx", "index", "extra"])))
    if draw(st.integers(0, 5)) == 0:  # a defect: a column renamed, or named twice
        header[draw(st.integers(0, len(header) - 1))] = draw(st.sampled_from(
            ["label", "text", " sentence1 ", "", "sentence\n1", "\ufefflabel", "label\t", '"label"']))
    header = list(draw(st.permutations(header)))
    config = ["sentence1", "sentence2" if pair else "none", "label"]
    if draw(st.integers(0, 7)) == 0:  # a defect: the config names a column the file lacks
        config[draw(st.integers(0, 2))] = "missing"
    return header, tuple(config)


@st.composite
def cells(draw, header: list[str], line_free_labels: bool):
    """One row's values: texts where the header has texts, labels where it has the label."""
    labels_pool = st.sampled_from(LABELS)
    row = []
    for name in header:
        if name.strip().startswith("sentence"):
            row.append(mostly(draw, st.sampled_from(SENTENCES), FIELD))
        elif name.strip() == "label":
            value = mostly(draw, labels_pool, FIELD)
            row.append(_line_free(value) if line_free_labels else value)
        else:
            row.append(mostly(draw, st.integers(0, 99).map(str), FIELD))
    if draw(st.integers(0, 11)) == 0:  # a defect: too few or too many fields
        row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(FIELD, max_size=2))
    return row


def _mangle(draw, text: str) -> bytes:
    """Encode, then maybe add a BOM, CRLF line ends, or (rarely) random, possibly invalid UTF-8, bytes."""
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.integers(0, 7)) == 0:
        junk = draw(st.binary(min_size=1, max_size=4))
        at = draw(st.integers(0, len(data)))
        data = data[:at] + junk + data[at:]
    return data


@st.composite
def tsv_file(draw):
    header, config = draw(columns_and_config())
    rows = draw(st.lists(cells(header, line_free_labels=False), min_size=0, max_size=6))
    # TSV has no quoting: a newline inside a value splits the record, a tab adds a field.
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
    return _mangle(draw, "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))), config


@st.composite
def csv_file(draw):
    header, config = draw(columns_and_config())
    rows = draw(st.lists(cells(header, line_free_labels=False), min_size=0, max_size=6))
    buffer = io.StringIO()
    if draw(st.integers(0, 5)):
        csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows([header, *rows])
    else:  # no quoting at all: commas, quotes and newlines in values make a mess on purpose
        buffer.write("".join(",".join(r) + "\n" for r in [header, *rows]))
    return _mangle(draw, buffer.getvalue()), config


RAW_NUMBERS = ["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E-400", "-0", "0.0000",
               "12345678901234567890.5", "1" + "0" * 20, "9" * 400, "1" + "0" * 5000, "[" * 2000 + "]" * 2000]
"""JSON values written as they are: NaN and infinities (Python's json reads them), numbers that overflow
a float or Python's 4300-digit limit on ints, nesting deeper than the recursion limit allows."""


@st.composite
def jsonl_file(draw):
    header, config = draw(columns_and_config())
    keys = list(dict.fromkeys(header))
    json_value = st.one_of(st.integers(-10**6, 10**6), st.integers(-10**30, 10**30), st.floats(), st.booleans(),
                           st.none(), st.lists(st.integers(), max_size=2),
                           st.dictionaries(st.sampled_from("ab"), st.integers()))

    def record():
        values = dict(zip(header, draw(cells(header, line_free_labels=False)) + [""] * len(header)))
        out, raw = {}, {}
        for key in keys:
            if draw(st.integers(0, 11)) == 0:  # a defect: this record lacks the column
                continue
            out[key] = values[key]
            roll = draw(st.integers(0, 11))
            if roll == 0:
                out[key] = draw(json_value)
            elif roll == 1:  # a number JSON can spell but a float or an int cannot hold
                raw[f"@raw{len(raw)}@"] = draw(st.sampled_from(RAW_NUMBERS))
                out[key] = list(raw)[-1]
        if draw(st.integers(0, 7)) == 0:  # a column the others do not have
            out[draw(st.sampled_from(["extra", "label2", "sentence3", "\ufeffid"]))] = draw(FIELD)
        text = json.dumps(out, ensure_ascii=draw(st.booleans()), allow_nan=True)
        for placeholder, literal in raw.items():
            text = text.replace(json.dumps(placeholder), literal)
        return text

    lines = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 9)) == 0:  # a defect: not an object, or not JSON at all
            lines.append(draw(st.one_of(
                st.lists(LINE_FREE_FIELD, max_size=3).map(json.dumps),
                st.sampled_from(["", "{", "null", "42", '"text"', "{'a': 1}", "[]", "{} {}", "NaN", "1e999"]),
                LINE_FREE_FIELD,
            )))
        else:
            lines.append(record())
    return _mangle(draw, "\n".join(lines) + "\n"), config


def check_loaded(config: TrainConfig, task, split: str, rows: list[dict]) -> None:
    examples = load_split(config, task, split)
    assert len(examples.text_a) == len(examples.labels) == len(examples.ids) == len(rows) > 0
    assert [r[config.text_column] for r in rows] == examples.text_a
    assert all(text.strip() for text in examples.text_a)
    if config.text_pair_column is None:
        assert examples.text_b is None
    else:
        assert examples.text_b == [r[config.text_pair_column] for r in rows]
        assert all(t.strip() for t in examples.text_b)
    raw = [r[config.label_column].strip() for r in rows]
    if task.is_regression:
        assert examples.labels == [float(v) for v in raw] and all(math.isfinite(v) for v in examples.labels)
    else:
        assert len(task.labels) >= 2 and [task.labels[i] for i in examples.labels] == raw


LOADED: dict[str, int] = {}
"""How many random files of each format loaded fully (the tests check that some did)."""


def exercise_custom_file(base: Path, suffix: str, data: bytes, columns, problem_type: str) -> None:
    folder = Path(tempfile.mkdtemp(dir=base))
    path = folder / f"data{suffix}"
    path.write_bytes(data)
    try:
        rows = read_rows(path)
    except GlueboxError as error:
        one_line(error)
    else:
        assert rows and all("__line__" in r for r in rows)
    text, pair, label = columns
    config = custom_config(path, text_column=text, text_pair_column=pair, label_column=label,
                           problem_type=problem_type)
    try:
        task = resolve_task(config)
        rows = read_rows(path)
        for split in ("train", "validation"):
            check_loaded(config, task, split, rows)
    except GlueboxError as error:
        one_line(error)
    else:
        LOADED[suffix] = LOADED.get(suffix, 0) + 1


PROBLEM_TYPES = st.sampled_from(["auto", "auto", "classification", "regression"])


@PROPERTY
@given(file=tsv_file(), problem_type=PROBLEM_TYPES)
def test_random_tsv_files_load_or_fail_with_one_line(tmp_path_factory, file, problem_type):
    data, columns = file
    exercise_custom_file(tmp_path_factory.getbasetemp(), ".tsv", data, columns, problem_type)


@PROPERTY
@given(file=csv_file(), problem_type=PROBLEM_TYPES)
@example(file=(b'sentence1,label\n"a, b",pos\n"c\nd",neg\n', ("sentence1", "none", "label")), problem_type="auto")
def test_random_csv_files_load_or_fail_with_one_line(tmp_path_factory, file, problem_type):
    data, columns = file
    exercise_custom_file(tmp_path_factory.getbasetemp(), ".csv", data, columns, problem_type)


@PROPERTY
@given(file=jsonl_file(), problem_type=PROBLEM_TYPES)
@example(file=(b'{"sentence1": "a", "label": 1.5}\n{"sentence1": "b", "label": 2}\n', ("sentence1", "none", "label")),
         problem_type="auto")
@example(file=(b'{"sentence1": "a", "label": "x"}\n{"label": "y", "extra": 1}\n', ("sentence1", "none", "label")),
         problem_type="auto")
@example(file=(b'{"sentence1": "a\\nb\\t\\"c\\"", "label": "p\\nq"}\n{"sentence1": "\\ufeffd", "label": "r"}\n',
               ("sentence1", "none", "label")), problem_type="classification")
@example(file=(b'{"sentence1": "a", "label": ' + b"9" * 400 + b'}\n{"sentence1": "b", "label": 2.5}\n',
               ("sentence1", "none", "label")), problem_type="regression")
@example(file=(b'{"sentence1": "a", "label": ' + b"1" * 5000 + b'}\n', ("sentence1", "none", "label")),
         problem_type="auto")
@example(file=(b'{"sentence1": Infinity, "label": 1}\n{"sentence1": "b", "label": NaN}\n',
               ("sentence1", "none", "label")), problem_type="classification")
def test_random_jsonl_files_load_or_fail_with_one_line(tmp_path_factory, file, problem_type):
    data, columns = file
    exercise_custom_file(tmp_path_factory.getbasetemp(), ".jsonl", data, columns, problem_type)


def test_random_files_did_load_sometimes():
    """Guards the generators: a property that only ever sees refusals proves little."""
    if set(LOADED) != {".tsv", ".csv", ".jsonl"}:
        pytest.skip("run together with the property tests above")
    assert all(count >= 5 for count in LOADED.values()), LOADED


# GLUE folders: the task's own file names and column layouts, with random rows.
MNLI_BASE = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
             "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
GLUE_HEADERS = {
    ("cola", "train"): None,
    ("cola", "validation"): None,
    ("cola", "test"): ["index", "sentence"],
    ("sst2", "train"): ["sentence", "label"],
    ("mrpc", "train"): ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    ("mrpc", "test"): ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    ("qqp", "train"): ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    ("qqp", "test"): ["id", "question1", "question2"],
    ("stsb", "train"): ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
                        "sentence2", "score"],
    ("mnli", "train"): MNLI_BASE + ["label1", "gold_label"],
    ("mnli", "validation_matched"): MNLI_BASE + ["label1", "label2", "label3", "label4", "label5", "gold_label"],
    ("mnli", "test_mismatched"): MNLI_BASE,
    ("qnli", "train"): ["index", "question", "sentence", "label"],
    ("rte", "validation"): ["index", "sentence1", "sentence2", "label"],
    ("wnli", "train"): ["index", "sentence1", "sentence2", "label"],
    ("ax", "test"): ["index", "sentence1", "sentence2"],
}
COLA_COLUMNS = ["source", "label", "original_label", "sentence"]
GLUE_LOADED: list[str] = []


@st.composite
def glue_folder(draw):
    name, split = draw(st.sampled_from(sorted(GLUE_HEADERS)))
    task = GLUE_TASKS[name]
    header = GLUE_HEADERS[(name, split)]
    columns = list(COLA_COLUMNS if header is None else header)
    layout = task.test_tsv if split.startswith("test") else task.tsv
    texts = {layout.text_a, layout.text_b}
    good_labels = list(task.labels) + list(task.label_aliases) if task.labels else ["0.5", "4", "5.000", "3.2"]
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        row = []
        for column in columns:
            if column in texts:
                row.append(_line_free(mostly(draw, st.sampled_from(SENTENCES), FIELD)))
            elif column == layout.label:
                row.append(_line_free(mostly(draw, st.sampled_from(good_labels), FIELD)))
            else:
                row.append(_line_free(mostly(draw, st.integers(0, 9999).map(str), FIELD)))
        if draw(st.integers(0, 11)) == 0:  # a defect: too few or too many fields
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(LINE_FREE_FIELD, max_size=2))
        rows.append(row)
    if header is not None and draw(st.integers(0, 7)) == 0:  # a defect: a column lost or renamed
        header = list(header)
        at = draw(st.integers(0, len(header) - 1))
        if draw(st.booleans()):
            del header[at]
        else:
            header[at] = _line_free(draw(FIELD))
    lines = (["\t".join(header)] if header is not None else []) + ["\t".join(r) for r in rows]
    nested = draw(st.booleans())  # data_dir at glue_data/ or at the task's own folder
    return name, split, _mangle(draw, "\n".join(lines) + "\n"), nested


@PROPERTY
@given(folder=glue_folder())
@example(folder=("mrpc", "train", b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\t\"a\t\"b\n",
                 True))
def test_random_glue_folders_load_or_fail_with_one_line(tmp_path_factory, folder):
    name, split, data, nested = folder
    task = GLUE_TASKS[name]
    root = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    task_folder = root / task.glue_folder if nested else root
    task_folder.mkdir(exist_ok=True)
    (task_folder / task.split_files[split]).write_bytes(data)
    if split != "train":
        (task_folder / "train.tsv").write_text("")  # present, as in GLUE's folders (and never read here)
    try:
        examples = load_split(TrainConfig(task_name=name, data_dir=str(root)), task, split)
    except GlueboxError as error:
        one_line(error)
        return
    GLUE_LOADED.append(name)
    assert len(examples) > 0 and len(examples.ids) == len(examples)
    assert all(t.strip() for t in examples.text_a)
    assert (examples.text_b is None) == (task.text_b is None)
    if split.startswith("test"):
        assert examples.labels is None
    elif task.is_regression:
        assert all(isinstance(v, float) and math.isfinite(v) for v in examples.labels)
    else:
        assert all(isinstance(v, int) and 0 <= v < task.num_labels for v in examples.labels)


def test_random_glue_folders_did_load_sometimes():
    if not GLUE_LOADED:
        pytest.skip("run together with the property test above")
    assert len(GLUE_LOADED) >= 20 and len(set(GLUE_LOADED)) >= 5, GLUE_LOADED
