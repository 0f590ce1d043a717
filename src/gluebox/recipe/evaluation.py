"""Evaluate and predict with a finished run (or one of its checkpoints): load it, score, predict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gluebox.config import TrainConfig
from gluebox.errors import GlueboxError
from gluebox.runs.directory import BEST_MODEL, ENVIRONMENT, TASK, RunDirectory, open_run
from gluebox.tasks import Task


@dataclass
class LoadedRun:
    run: RunDirectory
    config: TrainConfig
    task: Task
    tokenizer: object
    model: object
    weights: str
    """What the weights came from (for messages)."""
    threads: int | None = None
    """The torch threads each training process ran with (``environment.json``): scored with as many, the
    run's validation splits give its numbers bit for bit."""


def load_run(path: str) -> LoadedRun:
    """A run directory's best model, or the weights of a ``.ckpt`` file inside a run directory.

    A LoRA run's ``best_model/`` has its adapters merged in; a checkpoint of one holds the wrapped
    model, which is rebuilt around ``best_model/`` and given the checkpoint's weights (all of them,
    the frozen ones too), so that it scores exactly as the run did.
    """
    from gluebox.training.quiet import quiet_libraries

    quiet_libraries()
    target = Path(path)
    checkpoint = None
    if target.is_file() and target.suffix == ".ckpt":
        checkpoint = target
        run_path = next((p for p in target.parents if (p / "config.yaml").exists()), None)
        if run_path is None:
            raise GlueboxError(f"{path} is not inside a gluebox run directory (no config.yaml above it)")
        run = open_run(run_path)
    else:
        if not target.exists():
            raise GlueboxError(f"{path} does not exist; give a run directory or a .ckpt file")
        run = open_run(target)
    config = TrainConfig(**run.read_config())
    saved_task = run.read_json(TASK)
    if not isinstance(saved_task, dict):
        raise GlueboxError(f"{run.path} has no {TASK}; the run did not get as far as starting to train")
    task = Task.from_dict(saved_task, config.label_column)
    model_dir = run.file(BEST_MODEL)
    if not (model_dir / "config.json").exists():
        raise GlueboxError(f"{run.path} has no saved model yet ({BEST_MODEL}/ is missing); the run did not finish an epoch")
    from gluebox.training.pretrained import load_tokenizer

    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    weights = str(model_dir)
    if checkpoint is not None:
        from gluebox.training.checkpoints import load_weights

        if config.peft == "lora":  # the checkpoint holds the wrapped model: scored unmerged, as in training
            from gluebox.training.adapters import add_lora

            model = add_lora(model, config)
        load_weights(model, checkpoint)
        weights = str(checkpoint)
    model.eval()
    threads = (run.read_json(ENVIRONMENT) or {}).get("torch_threads")
    return LoadedRun(run, config, task, tokenizer, model, weights, threads if isinstance(threads, int) else None)


def score(loaded: LoadedRun, examples, split: str, batch_size: int | None) -> dict:
    """The task's metrics and loss of the run's model on labelled ``examples`` (``examples`` counted too)."""
    from gluebox.data.encoding import encode
    from gluebox.training.classifier import validate

    encoded = encode(examples, loaded.tokenizer, loaded.config.max_seq_length, loaded.task.is_regression)
    fabric, model = _fabric(loaded)
    results = validate(fabric, model, loaded.task, [split], [_loader(loaded, encoded, batch_size)])
    metrics = {k.split("/", 1)[1]: v for k, v in results.items()}
    metrics["examples"] = len(examples)
    return metrics


def predictions(loaded: LoadedRun, examples, batch_size: int | None) -> list:
    """The run's model's prediction for each example: a label name, or a score for regression."""
    from gluebox.data.encoding import encode
    from gluebox.training.classifier import predict

    task = loaded.task
    encoded = encode(examples, loaded.tokenizer, loaded.config.max_seq_length, task.is_regression)
    values = predict(*_fabric(loaded), task, _loader(loaded, encoded, batch_size))
    if task.is_regression:
        return [round(float(v), 6) for v in values]
    return [task.label_values[int(v)] for v in values]


def _loader(loaded: LoadedRun, encoded, batch_size: int | None):
    """Batches as the run's validation made them: its batch size and padding."""
    from torch.utils.data import DataLoader

    from gluebox.data.batching import Collator

    config = loaded.config
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    return DataLoader(encoded, batch_size=batch_size or config.eval_batch_size,
                      collate_fn=Collator(encoded, pad_id, config.pad_width))


def _fabric(loaded: LoadedRun):
    """One process on the run's accelerator, precision and threads, deterministic kernels; the model on its device."""
    import lightning as L

    from gluebox.reproducibility import check_pinned
    from gluebox.training.hardware import configure_threads, deterministic

    check_pinned(loaded.config.reproducibility)
    configure_threads(loaded.config.num_threads or loaded.threads)
    deterministic()
    fabric = L.Fabric(accelerator=loaded.config.accelerator, devices=1, precision=loaded.config.precision)
    return fabric, fabric.setup_module(loaded.model)
