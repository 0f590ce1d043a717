"""The training loop, top to bottom, on Lightning Fabric.

Fabric gives the devices, the processes (DDP over gloo or NCCL; started by ``torchrun``, a
cluster scheduler, or Fabric's own launcher), precision, collectives and checkpoint IO. The
loop is gluebox's own and reads in the order things happen:

1. set up: the processes agree on rank 0's run directory; each draws its own dropout masks
   (keyed by the seed and its rank, placed by step, micro-batch and call); the
   model and AdamW go to the device (DDP); a resumed run loads its checkpoint last, so
   nothing draws from the random generators between the restore and the next step;
2. every epoch: the batch order of that epoch, then each step (micro-batches, clipping,
   update, schedule), its row, the test hook's hold and a checkpoint when one is due or a
   stop signal came;
3. every epoch's end: validation, ``best.ckpt`` if the main metric improved, the epoch's
   record, ``last.ckpt``, a stop if one was asked for.

What a checkpoint holds is ``state`` below, saved and loaded whole with ``fabric.save`` and
``fabric.load``: objects with ``state_dict`` are saved through it, plain values as they are.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from gluebox.config import TrainConfig
from gluebox.errors import GlueboxError


def make_fabric(config: TrainConfig, logger=None, callbacks: Sequence = ()) -> L.Fabric:
    """Fabric for the run's devices, processes and strategy, checkpoints written atomically.

    ``callbacks`` are objects with any of the loop's hooks (``on_train_epoch_start(epoch)``,
    ``on_train_batch_start(model, batch)``); ``gluebox sweep`` reports each epoch to Ray Tune with one.
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from gluebox.training.checkpoints import AtomicCheckpointIO

    try:
        return L.Fabric(accelerator=config.accelerator, devices=config.devices, num_nodes=config.num_nodes,
                        strategy=config.strategy, precision=config.precision, loggers=[logger] if logger is not None else [],
                        callbacks=list(callbacks), plugins=[AtomicCheckpointIO()])
    except (ValueError, MisconfigurationException) as error:
        raise GlueboxError(f"cannot set up training: {error}") from None


def check_validation_shards(fabric: L.Fabric, recipe) -> None:
    """Each process scores at least one validation batch of every split (its metrics take part in
    the cross-process reduction); else a one-line error before anything is written."""
    config = recipe.config
    for split in recipe.task.validation_splits:
        size = len(recipe.encoded[split])
        batches = -(-size // config.eval_batch_size)
        if batches < fabric.world_size:
            raise GlueboxError(
                f"{split} has {size} examples: {batches} batch(es) of --eval_batch_size "
                f"{config.eval_batch_size} for {fabric.world_size} processes, and each process needs one; "
                "lower --eval_batch_size or run fewer processes"
            )


def fit(fabric: L.Fabric, recipe, run, checkpoints, stop, resume_from: Path | None = None,
        budget=None) -> "Outcome":
    """Train ``recipe`` for its epochs (from ``resume_from``'s checkpoint when given).

    Runs in every process, under every launcher (torchrun's, a cluster's, or Lightning's, which
    starts the other processes with the same command).
    With several processes, the other ranks take rank 0's run path (the default one holds the
    time of day) and each rank draws its own dropout masks (:class:`~gluebox.training.dropout.DropoutStream`
    keyed by its rank; the torch generator is seeded per rank too); with one, the random stream is kept.
    Ends with :class:`~gluebox.errors.RunInterrupted` after a stop signal's checkpoint.
    ``budget``: the :class:`~gluebox.training.budget.TimeBudget` of ``--time_budget``, which plans the steps.
    """
    from gluebox.training.checkpoints import RandomState
    from gluebox.training.classifier import EmbeddingGradient, make_optimizer, train_step, validate
    from gluebox.training.distributed import rank_seed
    from gluebox.training.dropout import DropoutStream
    from gluebox.training.eta import MeasuredEstimate
    from gluebox.training.hardware import deterministic
    from gluebox.training.recorders import EpochRecorder, StepRecorder
    from gluebox.training.stopping import EarlyStopping, validation_due

    config, task = recipe.config, recipe.task
    stop.install()
    if fabric.world_size > 1:
        run.path = Path(fabric.broadcast(str(run.path), src=0))
        torch.manual_seed(rank_seed(config.seed, fabric.global_rank))
    deterministic()

    model = fabric.setup_module(recipe.model)
    embedding = EmbeddingGradient(recipe.model, rows_only=fabric.world_size == 1)
    dropout = DropoutStream(config.seed, fabric.global_rank)
    sampler = recipe.batch_sampler
    steps_per_epoch = len(sampler)
    optimizer, scheduler = make_optimizer(recipe.model, recipe.optim, config.max_steps or config.epochs * steps_per_epoch,
                                          fabric.device)
    optimizer = fabric.setup_optimizers(optimizer)
    steps, epochs = StepRecorder(run, fabric.is_global_zero), EpochRecorder(run, fabric.is_global_zero)
    early_stopping = EarlyStopping(recipe.monitor, config.early_stopping_patience, config.early_stopping_min_delta)
    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "batch_order": sampler,
             "steps": steps, "epochs": epochs, "global_step": 0, "epoch": 0,
             "train_loss_sum": 0.0, "train_examples": 0, "best": None,
             "random": RandomState(fabric.global_rank, fabric.world_size),
             "validations_without_improvement": 0, "stop_reason": None, "finished": False}
    planner = None
    if budget is not None:
        state["budget"] = budget
        planner = budget_planner(recipe, budget, scheduler.total_steps, steps_per_epoch)
        checkpoints.budget = budget
    if resume_from is not None:
        load_state(fabric, resume_from, state)
    checkpoints.start(state["global_step"])
    estimate = MeasuredEstimate(recipe.encoded["train"].num_tokens, steps_per_epoch, config.epochs,
                                clock=budget.clock.now if budget is not None else time.perf_counter)

    def plan(token_seconds: float | None, say, keep_if_it_fits: bool = False) -> None:
        """--time_budget: the steps that fit, from rank 0's measurements; the schedule over them."""
        if planner is None or token_seconds is None:
            return
        done = state["global_step"]
        if keep_if_it_fits and planner.fits(done, scheduler.total_steps, token_seconds):
            total = scheduler.total_steps
        else:
            total = planner.steps(done, token_seconds)
        if fabric.world_size > 1:
            total = fabric.broadcast(total, src=0)
        if total != scheduler.total_steps:
            scheduler.replan(total)
            if fabric.is_global_zero:
                say(planner.describe(total, done, token_seconds))

    def validate_now(epoch: int, say) -> None:
        """Validation after the step just taken: its record, the best model, early stopping."""
        if budget is not None:
            budget.validation_starts()
        kept: dict = {}
        validation = validate(fabric, model, task, list(task.validation_splits), recipe.val_loaders, keep=kept)
        if fabric.is_global_zero:
            run.write_predictions(kept)
        fabric.log_dict({k: v for k, v in validation.items() if isinstance(v, float)}, step=state["global_step"])
        state["stop_reason"] = early_stopping.after_validation(state, validation)
        checkpoints.save_if_best(fabric, state, validation)
        train_loss = state["train_loss_sum"] / max(1, state["train_examples"])
        epochs.record(epoch + 1, state["global_step"], train_loss, validation, fabric,
                      epochs_trained=state["global_step"] / steps_per_epoch, say=say)
        steps.flush()
        state.update(train_loss_sum=0.0, train_examples=0)
        if budget is not None:
            budget.validation_done()
            plan(budget.token_seconds(), say)

    epochs.start()
    while not state["finished"]:
        epoch = state["epoch"]
        fabric.call("on_train_epoch_start", epoch=epoch)
        sampler.set_epoch(epoch)
        steps.start_epoch()
        model.train()
        with ProgressBar(fabric, config, epoch, steps_per_epoch, state["global_step"] - epoch * steps_per_epoch) as bar:
            for batch in recipe.train_loader:
                fabric.call("on_train_batch_start", model=model, batch=batch)
                learning_rate = optimizer.param_groups[0]["lr"]
                loss = train_step(fabric, model, optimizer, scheduler, batch, task, recipe.optim.gradient_clip_val,
                                  embedding, dropout, state["global_step"])
                state["global_step"] += 1
                state["train_loss_sum"] += loss * batch.num_examples
                state["train_examples"] += batch.num_examples
                row = steps.record(epoch + 1, state["global_step"], loss, learning_rate, batch.num_tokens)
                epochs.count(batch.num_tokens)
                shown = {"loss": loss, "tok/s": row["perf/tokens_per_second"], "peak_mb": row["perf/peak_rss_mb"]}
                fabric.log_dict(shown | {"epoch": epoch}, step=state["global_step"])
                bar.update(shown)
                if budget is not None:
                    budget.step_done(batch.num_tokens)
                note = estimate.after_step(batch.num_tokens, epoch, state["global_step"] - epoch * steps_per_epoch)
                if note is not None and fabric.is_global_zero:
                    bar.write(note)
                if note is not None and budget is not None:  # the first measurement of this session
                    plan(budget.token_seconds(), bar.write, keep_if_it_fits=budget.planned)
                end_of_epoch = sampler.served == steps_per_epoch
                last_step = state["global_step"] >= scheduler.total_steps
                if validation_due(state["global_step"], end_of_epoch, last_step, config.eval_every_n_steps):
                    validate_now(epoch, bar.write)
                # a plan made after this validation may end the run here too
                state["finished"] = state["global_step"] >= scheduler.total_steps or state["stop_reason"] is not None
                checkpoints.after_step(fabric, state, end_of_epoch=end_of_epoch or state["finished"])
                if state["finished"]:
                    break
        if sampler.served == steps_per_epoch:
            state["epoch"] = epoch + 1
        checkpoints.after_epoch(fabric, state)
    steps.flush()
    embedding.buffer = None
    return Outcome(state["global_step"], scheduler.total_steps, state["stop_reason"])


def budget_planner(recipe, budget, most: int, steps_per_epoch: int):
    """The :class:`~gluebox.training.budget.Planner` of a run with ``--time_budget``."""
    from gluebox.training.budget import Planner
    from gluebox.training.eta import padded_eval_tokens

    config = recipe.config
    validation_tokens = sum(padded_eval_tokens(recipe.encoded[s].lengths, config.eval_batch_size, config.pad_width)
                            for s in recipe.task.validation_splits)  # padded: a generous estimate until measured
    lengths, sampler = recipe.encoded["train"].lengths, recipe.batch_sampler
    step_tokens = [int(lengths[batch].sum()) for epoch in range(-(-most // steps_per_epoch))
                   for batch in sampler.batches(epoch)][:most]
    return Planner(budget, most, steps_per_epoch, config.eval_every_n_steps, step_tokens, validation_tokens,
                   sum(p.numel() for p in recipe.model.parameters()))


@dataclass
class Outcome:
    """How training ended: the steps taken and planned, and why it stopped early (None: it did not)."""

    steps: int
    planned_steps: int
    stop_reason: str | None = None


def load_state(fabric: L.Fabric, path: Path, state: dict) -> None:
    """Put the checkpoint at ``path`` into ``state``; values a checkpoint of an earlier gluebox lacks (added
    since) keep their start values."""
    from gluebox.training.checkpoints import checkpoint_keys

    present = checkpoint_keys(path)
    if "model" not in present:
        raise GlueboxError(f"{path} was saved by an older gluebox (Lightning's Trainer) and "
                           "cannot be resumed; evaluate it, or start the run again")
    loadable = {key: value for key, value in state.items() if key in present}
    fabric.load(path, loadable)
    state.update(loadable)


class ProgressBar:
    """The epoch's tqdm bar on rank 0 (``--no-progress_bar``: none), with the step's loss and speed."""

    def __init__(self, fabric, config, epoch: int, total: int, done: int):
        self.bar = None
        if config.progress_bar and fabric.is_global_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc=f"Epoch {epoch}", dynamic_ncols=True)

    def update(self, shown: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
            self.bar.update(1)

    def write(self, text: str) -> None:
        """A line on stdout that leaves the bar intact."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
