"""``gluebox compare``: are two runs identical, metric for metric and prediction for prediction?

Every metric of every epoch is compared at full precision (the exact floats written to
metrics.jsonl), then the prediction fingerprints. Timing and memory figures (``perf/``)
are not results and are ignored.

When the runs differ, it says why they could differ at all: whether they were comparable bit for
bit (same settings, reproducibility mode, torch, CPU or instruction set, threads, processes, device,
from ``config.yaml`` and ``environment.json``; a resume that went on despite such a change, with
``--accept_changes``, is named), then compares them the way runs from different
machines can be compared: every metric within a tolerance, and how many validation examples the
two final models predict differently (``validation_predictions.npz``).
"""

from __future__ import annotations

import math

from gluebox.errors import GlueboxError
from gluebox.runs.directory import ENVIRONMENT, SUMMARY, TASK, RunDirectory, open_run

IGNORED_PREFIXES = ("perf/",)
TOLERANCE = 1e-4
"""Default absolute tolerance on metrics (and losses) of runs that differ."""

CAPABILITY_NAMES = {"AVX512": "AVX-512", "AVX512_VNNI": "AVX-512 VNNI", "AVX512_BF16": "AVX-512 BF16",
                    "AMX": "AMX", "AVX2": "AVX2", "DEFAULT": "no vector extensions"}

NOT_RESULTS = {"output_dir", "checkpoint_dir", "checkpoint_every_minutes", "checkpoint_every_n_steps", "overwrite",
               "accept_changes", "wandb_mode", "wandb_project", "wandb_run_name", "log_model", "progress_bar",
               "data_dir", "train_file", "validation_file", "test_file"}
"""Settings that cannot change a run's numbers (``data_dir`` and data files may move; the data are the same
or the metrics say so; your own files' names and row counts are in ``task.json``, compared as the task)."""


POSITION = ("epoch", "step", "epochs_trained")
"""Where in training a record was taken (compared, but not counted as values)."""


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


def _capability(environment: dict) -> str | None:
    value = environment.get("torch_cpu_capability")
    return CAPABILITY_NAMES.get(value, value) if value else None


def identity(config: dict, environment: dict) -> dict[str, object]:
    """What a run's numbers depend on besides its settings, as ``compare`` names it."""
    packages = environment.get("packages") or {}
    variables = environment.get("variables") or {}
    math_libraries = environment.get("math_libraries") or {}
    mode = config.get("reproducibility", "fast")
    return {
        "mode": mode,
        "torch": packages.get("torch"),
        "transformers": packages.get("transformers"),
        "device": environment.get("gpu") or environment.get("device"),
        "instruction set": _capability(environment),
        "threads": environment.get("torch_threads"),
        "processes": environment.get("processes", 1),
        "MKL": math_libraries.get("mkl"),
        "oneDNN": math_libraries.get("onednn"),
        "MKL_CBWR": variables.get("MKL_CBWR"),
        "ONEDNN_MAX_CPU_ISA": variables.get("ONEDNN_MAX_CPU_ISA"),
        "AdamW": environment.get("adamw"),
        # The portable mode's promise: neither of these matters when both runs are portable.
        "CPU vendor": environment.get("cpu_vendor"),
        "CPU": environment.get("cpu_model"),
    }


PORTABLE_IGNORES = ("CPU vendor", "CPU")


def accepted_changes(run: RunDirectory) -> str | None:
    """'RUN was resumed despite changes (...)' when a ``--resume --accept_changes`` went on despite them."""
    resumes = (run.read_json(ENVIRONMENT) or {}).get("resumes") or []
    accepted = [change for resume in resumes for change in resume.get("accepted_changes") or []]
    return f"{run.path} was resumed despite changes ({'; '.join(accepted)})" if accepted else None


def why_not_comparable(run_a: RunDirectory, run_b: RunDirectory) -> list[str]:
    """The reasons two runs may differ in their last bits: different settings or environments, or a
    resume that went on despite a change (``--accept_changes``)."""
    config_a, config_b = run_a.read_config(), run_b.read_config()
    reasons = [note for note in (accepted_changes(run_a), accepted_changes(run_b)) if note]
    settings = sorted(k for k in set(config_a) | set(config_b)
                      if k not in NOT_RESULTS | {"reproducibility", "num_threads"} and config_a.get(k) != config_b.get(k))
    if settings:
        shown = ", ".join(f"{k} {config_a.get(k)!r} against {config_b.get(k)!r}" for k in settings[:3])
        reasons.append(f"other settings ({shown}{', ...' if len(settings) > 3 else ''})")
    task = _task_difference(run_a, run_b)
    if task:
        reasons.append(task)
    id_a = identity(config_a, run_a.read_json(ENVIRONMENT) or {})
    id_b = identity(config_b, run_b.read_json(ENVIRONMENT) or {})
    both_portable = id_a["mode"] == id_b["mode"] == "portable"
    for key in id_a:
        if both_portable and key in PORTABLE_IGNORES:
            continue
        a, b = id_a[key], id_b[key]
        if a == b:
            continue
        if key == "mode":
            reasons.append(f"{a} against {b} mode")
        elif key in ("threads", "processes"):
            reasons.append(f"{a} against {b} {key}")
        elif key == "instruction set":
            reasons.append(f"{a} against {b}")
        else:
            reasons.append(f"{key} {a} against {b}")
    return reasons


def _task_difference(run_a: RunDirectory, run_b: RunDirectory) -> str | None:
    """``other tasks (KEY A against B)`` when the runs' ``task.json`` differ in what both record, else None."""
    from gluebox.tasks import Task

    saved_a, saved_b = run_a.read_json(TASK), run_b.read_json(TASK)
    if not isinstance(saved_a, dict) or not isinstance(saved_b, dict):
        return None
    task_a, task_b = Task.from_dict(saved_a).to_dict(), Task.from_dict(saved_b).to_dict()
    key = next((k for k in task_a if k in saved_a and k in saved_b and task_a[k] != task_b.get(k)), None)
    return None if key is None else f"other tasks ({key} {task_a[key]!r} against {task_b.get(key)!r})"


def _short(number: float) -> str:
    """1e-4 as ``1e-4``, 3.2e-08 as ``3e-8``, 0 as ``0``."""
    return "0" if number == 0 else f"{number:.0e}".replace("e-0", "e-").replace("e+0", "e+")


def _numbers(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in _results(record).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in POSITION
            and not k.endswith("/examples")}


def metrics_within(records_a: list[dict], records_b: list[dict], tolerance: float) -> tuple[bool, str, float]:
    """Whether every metric and loss of every epoch agrees within ``tolerance``; the worst one; its difference."""
    worst, worst_key = 0.0, ""
    for a, b in zip(records_a, records_b):
        numbers_a, numbers_b = _numbers(a), _numbers(b)
        for key in numbers_a.keys() & numbers_b.keys():
            difference = abs(numbers_a[key] - numbers_b[key])
            if math.isnan(difference):
                difference = 0.0 if math.isnan(numbers_a[key]) and math.isnan(numbers_b[key]) else math.inf
            if difference > worst or not worst_key:
                worst, worst_key = difference, f"epoch {a.get('epoch')} {key}"
    return worst <= tolerance and len(records_a) == len(records_b), worst_key, worst


def differing_predictions(run_a: RunDirectory, run_b: RunDirectory) -> str:
    """'predictions differ on N of M examples' per validation split, from the runs' saved predictions."""
    import numpy as np

    predictions_a, predictions_b = run_a.read_predictions(), run_b.read_predictions()
    if predictions_a is None or predictions_b is None:
        missing = run_a.path if predictions_a is None else run_b.path
        return f"no saved predictions in {missing} to count differences (a run from an older gluebox)"
    parts = []
    for split in [s for s in predictions_a if s in predictions_b]:
        a, b = predictions_a[split], predictions_b[split]
        if a.shape != b.shape:
            parts.append(f"{split}: {len(a)} against {len(b)} examples")
            continue
        differ = int(np.count_nonzero(a != b)) if a.dtype.kind in "iu" else int(np.count_nonzero(~np.isclose(a, b, rtol=0, atol=1e-4)))
        where = f" ({split})" if len(predictions_a) > 1 else ""
        parts.append(f"predictions differ on {differ} of {len(a)} examples{where}")
    return "; ".join(parts) or "no validation split in common"


def compare(path_a: str, path_b: str, tolerance: float = TOLERANCE) -> bool:
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
        print(explain(run_a, run_b, records_a, records_b, tolerance))
        return False
    keys = [k for k in _results(records_a[0]) if k not in POSITION]
    note = "" if summary_a and summary_b else " (at least one run is unfinished: no summary.json)"
    print(f"identical: {counted(records_a)}, {len(keys)} values per {'epoch' if at_epoch_ends(records_a) else 'validation'}, "
          f"same prediction fingerprints{note}")
    for change in (accepted_changes(run_a), accepted_changes(run_b)):
        if change:
            print(f"note: {change}")
    return not note


def at_epoch_ends(records: list[dict]) -> bool:
    """Whether every record is an epoch's end (not an ``--eval_every_n_steps`` or ``--max_steps`` validation)."""
    return all(record.get("epochs_trained", record.get("epoch")) == record.get("epoch") for record in records)


def counted(records: list[dict]) -> str:
    """``2 epoch(s)``, or ``5 validation(s) over 1.5 epoch(s)`` when validations fall within epochs."""
    if at_epoch_ends(records):
        return f"{len(records)} epoch(s)"
    return f"{len(records)} validation(s) over {records[-1].get('epochs_trained', records[-1]['epoch']):g} epoch(s)"


def explain(run_a: RunDirectory, run_b: RunDirectory, records_a: list[dict], records_b: list[dict],
            tolerance: float) -> str:
    """One line: were the runs comparable bit for bit, do the metrics agree within ``tolerance``,
    on how many examples do the predictions differ."""
    reasons = why_not_comparable(run_a, run_b)
    if reasons:
        head = f"not comparable bit for bit: {', '.join(reasons)}"
    else:
        head = ("comparable bit for bit (same settings, mode, torch, CPU, instruction set, threads, device), "
                "yet different")
    within, worst_key, worst = metrics_within(records_a, records_b, tolerance)
    if len(records_a) != len(records_b):
        agreement = f"{counted(records_a)} against {counted(records_b)}"
    elif within:
        agreement = f"metrics agree within {_short(tolerance)} (largest difference {_short(worst)}: {worst_key})"
    else:
        agreement = f"metrics differ by more than {_short(tolerance)} ({worst_key}: {worst:.3g})"
    return f"{head}; {agreement}; {differing_predictions(run_a, run_b)}"
