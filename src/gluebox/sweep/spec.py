"""The sweep file, and the trial configurations it defines.

A sweep file is YAML::

    base:                       # a train config: the keys of `gluebox train --config` (or a path to one)
      task_name: mrpc
      model_name_or_path: distilbert-base-uncased
      epochs: 3
    space:                      # one distribution per hyperparameter
      learning_rate: {loguniform: [1.0e-5, 1.0e-4]}
      warmup_steps: {choice: [0, 50, 100]}
      weight_decay: {uniform: [0.0, 0.1]}
    trials: 8                   # and the other SweepConfig fields below

The space may name any ``gluebox train`` flag (a TrainConfig field) but those marked
``fixed_by_sweep`` in :mod:`gluebox.config`: a new flag is one field there, and searchable with no
change here. ``choice`` takes values of any type, checked as a YAML value is and against the flag's
``choices``; ``uniform`` and ``loguniform`` need a float field.

The trials' configurations are drawn here, by gluebox, from ``random.Random(seed)`` in the
order of the trials and of the space's keys, before Ray starts: the same file and seed give
the same trials on any machine and with any Ray version. Ray Tune then runs exactly that list.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gluebox.config import TrainConfig, check_choice, coerce_value, config_fields, config_values, names_where, read_yaml_mapping
from gluebox.errors import GlueboxError

DISTRIBUTIONS = ("choice", "uniform", "loguniform")
SCHEDULERS = ("fifo", "asha")
PATH_FIELDS = ("data_dir", "train_file", "validation_file", "test_file", "model_name_or_path")
"""Train config fields that may name local paths; made absolute, since trials run elsewhere."""
FIXED_BY_SWEEP = names_where("fixed_by_sweep")
"""Flags the sweep sets for each trial (marked ``fixed_by_sweep`` in :mod:`gluebox.config`)."""
SIGNIFICANT_DIGITS = 4
"""Sampled floats are rounded to this many significant digits, so that configs read well."""


@dataclass
class Param:
    """One hyperparameter and the distribution its values are drawn from."""

    name: str
    """A ``gluebox train`` flag (a TrainConfig field)."""
    kind: str
    """``choice`` (one of ``values``), ``uniform`` or ``loguniform`` (between ``values[0]`` and ``values[1]``)."""
    values: list[Any]

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return self.values[rng.randrange(len(self.values))]
        low, high = self.values
        if self.kind == "uniform":
            value = rng.uniform(low, high)
        else:
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")

    def to_dict(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.values)}


@dataclass
class SweepConfig:
    """A sweep: what every trial shares, what varies, and how Ray Tune runs the trials."""

    base: dict[str, Any] = field(default_factory=dict)
    """Train config values shared by every trial (the keys of a `gluebox train --config` file)."""
    space: list[Param] = field(default_factory=list)
    """The hyperparameters that vary, each with its distribution."""
    trials: int = 8
    """Number of trials (configurations drawn from the space)."""
    max_concurrent: int = 2
    """Trials running at the same time (also bounded by the CPUs Ray has and cpus_per_trial)."""
    metric: str | None = None
    """What ranks the trials, e.g. validation/accuracy. Default: the task's main metric on its first validation split."""
    mode: str | None = None
    """max or min. Default: min for a loss, else max."""
    scheduler: str = "fifo"
    """fifo: every trial runs all its epochs. asha: ASHA stops trials that trail the others at epoch milestones."""
    grace_period: int = 1
    """ASHA: epochs every trial runs before it may be stopped."""
    reduction_factor: int = 2
    """ASHA: at each milestone, only the best 1/reduction_factor of trials continue."""
    seed: int = 0
    """Seed of the sampling of the trials' configurations (each trial trains with the base config's seed)."""
    cpus_per_trial: float = 1
    """CPUs Ray reserves for each trial; its torch threads too, unless the base config sets num_threads."""
    gpus_per_trial: float = 0
    """GPUs Ray reserves for each trial."""
    output_dir: str | None = None
    """The sweep's folder. Default: $GLUEBOX_RUNS_DIR (or ./runs) / sweep-<file name>-<time>."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        for name in ("trials", "max_concurrent", "grace_period"):
            if getattr(self, name) < 1:
                raise GlueboxError(f"sweep: {name} must be at least 1, got {getattr(self, name)}")
        if self.reduction_factor < 2:
            raise GlueboxError(f"sweep: reduction_factor must be at least 2, got {self.reduction_factor}")
        if self.scheduler not in SCHEDULERS:
            raise GlueboxError(f"sweep: scheduler must be one of {', '.join(SCHEDULERS)}, got '{self.scheduler}'")
        if self.mode not in (None, "max", "min"):
            raise GlueboxError(f"sweep: mode must be max or min, got '{self.mode}'")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise GlueboxError("sweep: cpus_per_trial must be positive and gpus_per_trial 0 or more")
        fixed = sorted(set(self.base) & set(FIXED_BY_SWEEP) - {"devices", "num_nodes", "strategy"})
        if fixed:
            raise GlueboxError(f"sweep: base sets {', '.join(fixed)}; the sweep chooses each trial's directory itself")
        if self.base.get("devices", 1) != 1 or self.base.get("num_nodes", 1) != 1 or self.base.get("strategy", "auto") != "auto":
            raise GlueboxError("sweep: each trial runs as one process; drop devices, num_nodes and strategy from base")
        names = [p.name for p in self.space]
        if not names:
            raise GlueboxError("sweep: space is empty; give at least one hyperparameter to vary")
        clash = sorted(set(names) & set(FIXED_BY_SWEEP))
        if clash:
            raise GlueboxError(f"sweep: {', '.join(clash)} cannot be searched over")

    def trial_params(self) -> list[dict[str, Any]]:
        """Each trial's sampled values: the same list for the same space and seed."""
        rng = random.Random(self.seed)
        return [{p.name: p.sample(rng) for p in self.space} for _ in range(self.trials)]

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["space"] = {p.name: p.to_dict() for p in self.space}
        return values


def trial_name(index: int) -> str:
    return f"trial-{index:03d}"


def parse_space(data: Any, source: str) -> list[Param]:
    """``{name: {kind: values}}`` into Params, each checked against its TrainConfig field."""
    if not isinstance(data, dict):
        raise GlueboxError(f"{source}: space must be a mapping of flag names to distributions")
    fields = {f.name: f for f in config_fields()}
    params = []
    for name, spec in data.items():
        if name not in fields:
            raise GlueboxError(f"{source}: space: unknown flag '{name}' (see `gluebox train --help`)")
        if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
            raise GlueboxError(
                f"{source}: space: {name} must be one of {{choice: [...]}}, {{uniform: [low, high]}}, "
                "{loguniform: [low, high]}"
            )
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise GlueboxError(f"{source}: space: {name}: {kind} needs a non-empty list")
        kind_of_field = str(fields[name].type)
        if kind == "choice":
            values = [coerce_value(fields[name], v, f"{source}: space") for v in values]
            for value in values:
                check_choice(fields[name], value, f"{source}: space: ")
        else:
            if not kind_of_field.startswith("float"):
                raise GlueboxError(f"{source}: space: {name} takes {kind_of_field.split(' ')[0]} values; use choice")
            if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise GlueboxError(f"{source}: space: {name}: {kind} needs [low, high]")
            values = [float(v) for v in values]
            if not values[0] < values[1] or (kind == "loguniform" and values[0] <= 0):
                raise GlueboxError(f"{source}: space: {name}: {kind} needs 0 < low < high" if kind == "loguniform"
                                   else f"{source}: space: {name}: uniform needs low < high")
        params.append(Param(name, kind, values))
    return params


def absolute_paths(values: dict[str, Any], relative_to: Path) -> dict[str, Any]:
    """Path-like values that exist relative to ``relative_to`` become absolute (trials run in other folders)."""
    out = dict(values)
    for name in PATH_FIELDS:
        value = out.get(name)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            candidate = (relative_to / value)
            if candidate.exists():
                out[name] = str(candidate.resolve())
    return out


def load_sweep(path: str) -> SweepConfig:
    """Read and check a sweep file; relative paths in it are taken from the current folder."""
    source = f"sweep file {path}"
    data = read_yaml_mapping(path, "sweep file")
    known = {f.name for f in dataclasses.fields(SweepConfig)}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise GlueboxError(f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    base = data.get("base") or {}
    if isinstance(base, str):
        base_path = Path(base) if Path(base).is_absolute() else Path(path).parent / base
        base = read_yaml_mapping(str(base_path), "base config")
        base_source = f"base config {base_path}"
    else:
        base_source = f"{source}: base"
    if not isinstance(base, dict):
        raise GlueboxError(f"{source}: base must be a mapping of flag values or the path of a config file")
    settings: dict[str, Any] = {"base": absolute_paths(config_values(base, base_source), Path.cwd()),
                                "space": parse_space(data.get("space"), source)}
    for f in dataclasses.fields(SweepConfig):
        if f.name in ("base", "space") or f.name not in data or data[f.name] is None:
            continue
        value = data[f.name]
        expected = str(f.type)
        ok = (isinstance(value, str) if "str" in expected else
              isinstance(value, (int, float)) and not isinstance(value, bool) and
              (isinstance(value, int) or expected.startswith("float")))
        if not ok:
            raise GlueboxError(f"{source}: {f.name} must be {expected.split(' ')[0]}, got {value!r}")
        settings[f.name] = value
    return SweepConfig(**settings)


def trial_config(base: dict[str, Any], params: dict[str, Any], output_dir: Path, cpus_per_trial: float) -> TrainConfig:
    """The TrainConfig of one trial: base, then its sampled values, then what the sweep fixes."""
    config = TrainConfig(**{**base, **params})
    config.output_dir = str(output_dir)
    config.progress_bar = False
    if config.num_threads is None:
        config.num_threads = max(1, int(cpus_per_trial))
    return config
