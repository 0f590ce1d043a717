"""Weights & Biases through Lightning's WandbLogger: online with a key, offline without, never a prompt."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from gluebox.config import TrainConfig

SECRET_ENV_VARS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
"""Credentials that must never reach a log line, a run directory or a W&B config."""


def has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(requested: str) -> str:
    """``auto`` becomes ``online`` when a key is configured, else ``offline``."""
    if requested != "auto":
        return requested
    return "online" if has_wandb_key() else "offline"


def wandb_logger(config: TrainConfig, run_dir: Path, run_name: str):
    """A WandbLogger writing under ``run_dir/wandb``, or None when tracking is disabled."""
    mode = resolve_mode(config.wandb_mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(
        project=config.wandb_project,
        name=config.wandb_run_name or run_name,
        save_dir=str(run_dir),
        mode=mode,
        settings={"console": "off"},
    )


def log_best_model(logger, model_dir: Path, best: dict) -> None:
    """Upload ``model_dir`` (the run's ``best_model/``) to W&B as a ``model`` artifact, alias ``best``.

    Lightning's ``WandbLogger(log_model=True)`` uploads only what a ``ModelCheckpoint`` callback
    saves, and gluebox keeps its own checkpoints; the exported model is what a user loads anyway.
    Offline, the artifact waits in the offline run until ``wandb sync``.
    """
    import wandb

    experiment = logger.experiment
    artifact = wandb.Artifact(f"model-{experiment.id}", type="model",
                              metadata={k: v for k, v in best.items() if isinstance(v, (int, float, str))})
    artifact.add_dir(str(model_dir))
    experiment.log_artifact(artifact, aliases=["best", "latest"])


def redact(text: str) -> str:
    """``text`` with the value of every credential variable replaced by ``***``."""
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text
