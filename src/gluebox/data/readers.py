"""Read rows from TSV, CSV and JSON Lines files, with one-line errors that name file and line.

GLUE TSV files start with a byte-order mark and contain raw ``"`` characters, so TSV is
split on tabs with no quote handling. CSV follows the usual quoting rules.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from gluebox.errors import GlueboxError

Row = dict[str, str]
"""One record: column name to raw text. ``__line__`` holds its line number in the file."""


def detect_format(path: str | Path) -> str:
    """The format of a data file, from its extension."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("tsv", "txt"):
        return "tsv"
    if suffix == "csv":
        return "csv"
    if suffix in ("jsonl", "json", "ndjson"):
        return "jsonl"
    raise GlueboxError(f"{path}: unknown data format '.{suffix}'; use a .csv, .tsv or .jsonl file")


def read_text(path: str | Path) -> str:
    """The whole file as text, BOM removed; non-UTF-8 bytes are an error naming the line."""
    file = Path(path)
    if not file.exists():
        raise GlueboxError(f"data file {path} does not exist")
    if not file.is_file():
        raise GlueboxError(f"data file {path} is not a file")
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise GlueboxError(
            f"{path}, line {line}: bytes that are not UTF-8 ({raw[error.start:error.start + 4]!r}); "
            "save the file as UTF-8"
        ) from None
    if not text.strip():
        raise GlueboxError(f"data file {path} is empty")
    return text


def read_rows(path: str | Path, fmt: str | None = None, header: list[str] | None = None) -> list[Row]:
    """All records of a file. With ``header`` given, the file has no header line."""
    fmt = fmt or detect_format(path)
    text = read_text(path)
    if fmt == "jsonl":
        return _read_jsonl(path, text)
    if fmt == "tsv":
        records = (
            (number, line.split("\t")) for number, line in enumerate(_lines(text), start=1) if line.strip()
        )
    else:
        records = _csv_records(path, text)
    rows: list[Row] = []
    columns = header
    for number, fields in records:
        if columns is None:
            columns = [name.strip() for name in fields]
            if len(set(columns)) != len(columns):
                raise GlueboxError(f"{path}, line {number}: the header repeats a column name: {columns}")
            continue
        if len(fields) != len(columns):
            raise GlueboxError(
                f"{path}, line {number}: expected {len(columns)} {'tab' if fmt == 'tsv' else 'comma'}-separated "
                f"fields, found {len(fields)}; fix or remove that row"
            )
        row = dict(zip(columns, fields))
        row["__line__"] = str(number)
        rows.append(row)
    if columns is None:
        raise GlueboxError(f"data file {path} is empty")
    if not rows:
        raise GlueboxError(f"data file {path} has a header but no rows")
    return rows


def _lines(text: str) -> list[str]:
    """Lines split on newline only: texts may hold other Unicode line separators."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


CSV_FIELD_LIMIT = 2**31 - 1
"""The longest CSV field read (characters): the csv module's default, 131,072, refused long documents
as malformed. The whole file is in memory anyway; the limit is the largest a C long takes everywhere."""


def _csv_records(path, text: str):
    csv.field_size_limit(CSV_FIELD_LIMIT)  # the csv module's one, process-wide setting
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                yield reader.line_num, fields
    except csv.Error as error:
        raise GlueboxError(f"{path}, line {reader.line_num}: malformed CSV ({error})") from None


class _NotANumber(ValueError):
    """A JSON number that is no number: NaN, Infinity, or one too large for a float."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotANumber(text)
    return value


def _no_constants(text: str):
    raise _NotANumber(text)


def _read_jsonl(path, text: str) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_float=_finite_float, parse_constant=_no_constants)
        except _NotANumber as error:
            raise GlueboxError(
                f"{path}, line {number}: {str(error)[:20]} is not a finite number (JSON has no NaN or Infinity); "
                "write it in quotes if it is text"
            ) from None
        except (ValueError, RecursionError) as error:
            reason = getattr(error, "msg", None) or type(error).__name__
            raise GlueboxError(f"{path}, line {number}: not valid JSON ({reason})") from None
        if not isinstance(record, dict):
            raise GlueboxError(f"{path}, line {number}: each line must be a JSON object with named fields")
        row = {}
        for key, value in record.items():
            if isinstance(value, (dict, list)):
                raise GlueboxError(f"{path}, line {number}: field '{key}' must be text or a number")
            row[str(key)] = "" if value is None else (str(value) if not isinstance(value, bool) else str(int(value)))
        row["__line__"] = str(number)
        rows.append(row)
    if not rows:
        raise GlueboxError(f"data file {path} is empty")
    return rows
