"""The Lightning Trainer a run fits with, and the callbacks it runs, in their order.

gluebox keeps Lightning's Trainer (devices, DDP launchers, precision, the progress bar,
loggers, checkpoint IO). Where gluebox works around it, the reason is given where it is set.
"""

from __future__ import annotations

from collections.abc import Sequence

from gluebox.config import TrainConfig
from gluebox.errors import GlueboxError
from gluebox.runs.directory import RunDirectory


def make_trainer(config: TrainConfig, run: RunDirectory, recipe, checkpoints, logger, extra: Sequence = ()):
    """The Trainer and the epoch recorder (whose records say how many epochs were written)."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from gluebox.training.checkpoints import AtomicCheckpointIO, BatchOrder, RandomState
    from gluebox.training.recorders import DistributedRun, EpochRecorder, StepRecorder

    recorder = EpochRecorder(run)
    callbacks = [
        DistributedRun(run, config.seed),
        checkpoints,  # a Checkpoint: Lightning runs it after every other callback
        BatchOrder(recipe.batch_sampler),  # Lightning never calls set_epoch on a custom batch sampler
        StepRecorder(run),
        recorder,
        RandomState(),  # Lightning saves no random state; dropout must continue its stream on resume
        *extra,
    ]
    try:
        trainer = L.Trainer(
            accelerator=config.accelerator,
            devices=config.devices,
            num_nodes=config.num_nodes,
            strategy=config.strategy,
            max_epochs=config.epochs,
            precision=config.precision,
            deterministic=True,
            logger=[logger] if logger is not None else False,
            callbacks=callbacks,
            default_root_dir=run.path,
            num_sanity_val_steps=0,
            enable_progress_bar=config.progress_bar,
            enable_model_summary=False,
            use_distributed_sampler=False,  # each process takes its share of the global batches itself (TrainCollator)
            log_every_n_steps=1,
            plugins=[AtomicCheckpointIO()],
        )
    except (ValueError, MisconfigurationException) as error:
        raise GlueboxError(f"cannot set up training: {error}") from None
    if trainer.world_size > 1:
        for split in recipe.task.validation_splits:
            size = len(recipe.encoded[split])
            batches = -(-size // config.eval_batch_size)
            if batches < trainer.world_size:
                raise GlueboxError(
                    f"{split} has {size} examples: {batches} batch(es) of --eval_batch_size "
                    f"{config.eval_batch_size} for {trainer.world_size} processes, and each process needs one; "
                    "lower --eval_batch_size or run fewer processes"
                )
    return trainer, recorder
