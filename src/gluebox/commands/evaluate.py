"""``gluebox evaluate``: score a finished run on its validation splits, another split, or a file.

A run's own validation splits are scored as its training validated them (the same examples, batches,
padding, precision and threads): ``gluebox evaluate RUN`` gives the best epoch's numbers of
``summary.json`` bit for bit. A ``--file`` is read with the run's own columns (``task.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from gluebox.errors import GlueboxError


def evaluate(path: str, split: str | None = None, file: str | None = None, data_dir: str | None = None,
             output: str | None = None, batch_size: int | None = None) -> dict:
    from gluebox.data.sources import load_split
    from gluebox.recipe.evaluation import load_run, score

    loaded = load_run(path)
    config, task = loaded.config, loaded.task
    if data_dir is not None:
        config.data_dir = data_dir
    if file is not None:
        splits = {Path(file).name: load_split(config, task, "validation", file=file)}
    else:  # the run's own splits, as its validation scored them (its first --max_eval_samples examples)
        names = [split] if split else list(task.validation_splits)
        if any(name.startswith("test") for name in names):
            raise GlueboxError(f"split '{split}' has no labels to score; use `gluebox predict` for test splits")
        splits = {name: load_split(config, task, name).head(config.max_eval_samples if name in task.validation_splits
                                                            else None) for name in names}
    results: dict[str, dict] = {}
    for name, examples in splits.items():
        metrics = results[name] = score(loaded, examples, name, batch_size)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        print(f"{name}: {shown} ({len(examples)} examples, weights {loaded.weights})", flush=True)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results
