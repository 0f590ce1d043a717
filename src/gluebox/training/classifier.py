"""The training maths, one readable step at a time: the loss, AdamW and its schedule, one
optimizer step over micro-batches, and validation with the task's metrics.

A batch can be run as several micro-batches with exactly the maths of one full batch: each
micro-batch adds ``sum of its losses / batch size`` to the gradients, then the step clips,
updates and advances the schedule once.

With several processes (DDP), each runs its share of the batch and scales its loss by the
number of processes, because DDP averages the processes' gradients: the average of
``world_size * (sum of a share's losses) / batch size`` is the whole batch's mean. Gradients
are exchanged once per step, on the last micro-batch (the others run under ``no_sync``).
Validation shards are gathered back: metrics, loss and fingerprint cover every example once.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gluebox.data.batching import TrainBatch
from gluebox.tasks import Task
from gluebox.training.casts import input_casts, weight_casts_kept_for_the_step
from gluebox.training.dropout import DropoutStream
from gluebox.training.metrics import PredictionFingerprint, predictions, task_metrics

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class OptimConfig:
    """The optimizer and schedule settings of a run."""

    learning_rate: float
    weight_decay: float
    adam_epsilon: float
    warmup_steps: int | None
    """``--warmup_steps``; None: ``warmup_ratio``'s share, or the default (:meth:`warmup`)."""
    gradient_clip_val: float
    fused: bool = True
    """Fused AdamW where the device has it (bf16-mixed included: it scales no loss); off under 16-mixed,
    whose loss scaling unscales gradients before clipping (a fused optimizer unscales them inside its own step)."""
    for_loop: bool = False
    """The for-loop AdamW (``--reproducibility portable``): PyTorch's reference implementation, one
    tensor at a time on every device, instead of the fused kernel or CUDA's default ``foreach``."""
    lr_scheduler: str = "linear"
    """A name transformers' ``get_scheduler`` knows (``--lr_scheduler``)."""
    warmup_ratio: float | None = None
    """Warmup as a share of the planned steps (``--warmup_ratio``), when ``warmup_steps`` is None."""

    def warmup(self, total_steps: int) -> int:
        """Warmup steps of a schedule over ``total_steps``: ``--warmup_steps``, ``--warmup_ratio``'s share
        (rounded up, as in transformers' Trainer), or the default (none for the constant schedule)."""
        from gluebox.config import DEFAULT_WARMUP_STEPS

        if self.warmup_ratio is not None:
            return math.ceil(self.warmup_ratio * total_steps)
        if self.warmup_steps is not None:
            return self.warmup_steps
        return 0 if self.lr_scheduler == "constant" else DEFAULT_WARMUP_STEPS

    @property
    def implementation(self) -> str:
        """For the run record: ``fused``, ``for-loop`` or ``default`` (torch's choice for the device)."""
        return "for-loop" if self.for_loop else "fused" if self.fused else "default"


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices; never decay biases and normalization weights (every 1-d parameter)."""
    decay, no_decay = [], []
    for _, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fused_adamw_supported(device: torch.device) -> bool:
    """Fused AdamW: one kernel over all parameters, 5x faster than foreach on 2 CPU cores for
    DistilBERT (0.31 s against 1.53 s a step) and without foreach's temporary copies."""
    return device.type in ("cpu", "cuda")


def make_optimizer(model: nn.Module, optim: OptimConfig, total_steps: int, device: torch.device):
    """AdamW and its :class:`Schedule` over ``total_steps``, stepped once per optimizer step."""
    optimizer = torch.optim.AdamW(parameter_groups(model, optim.weight_decay), lr=optim.learning_rate,
                                  eps=optim.adam_epsilon,
                                  fused=optim.fused and not optim.for_loop and fused_adamw_supported(device),
                                  foreach=False if optim.for_loop else None)
    return optimizer, Schedule(optimizer, optim, total_steps)


class Schedule:
    """The learning rate's schedule: transformers' ``get_scheduler`` (``--lr_scheduler``) over the run's
    planned optimizer steps, with its warmup.

    The plan may change while the run trains (``--time_budget`` plans its steps from the measured speed):
    :meth:`replan` puts the schedule over the new total, from the step it is at. The checkpoint keeps the
    total with the scheduler's own state, so a resumed run continues the same schedule.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int):
        self.optimizer, self.optim = optimizer, optim
        self.total_steps = total_steps
        self.scheduler = self._make()

    def _make(self):
        from transformers import get_scheduler

        return get_scheduler(self.optim.lr_scheduler, self.optimizer, num_warmup_steps=self.optim.warmup(self.total_steps),
                             num_training_steps=self.total_steps)

    @property
    def warmup_steps(self) -> int:
        return self.optim.warmup(self.total_steps)

    def step(self) -> None:
        self.scheduler.step()

    def replan(self, total_steps: int) -> None:
        """The same schedule over ``total_steps`` in all, from the step it is at (the next step's learning
        rate is the new schedule's)."""
        if total_steps == self.total_steps:
            return
        state = self.scheduler.state_dict()
        self.total_steps = total_steps
        self.scheduler = self._make()
        self.scheduler.load_state_dict(state)
        self._set_rates()

    def _set_rates(self) -> None:
        """The optimizer's learning rates at the scheduler's step, as its own ``step`` sets them."""
        step = self.scheduler.last_epoch
        for group, base, rate in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
            group["lr"] = base * rate(step)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"total_steps": self.total_steps, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "total_steps" not in state:  # a checkpoint of an earlier gluebox: the linear schedule's own state
            self.scheduler.load_state_dict(state)
            return
        self.total_steps = int(state["total_steps"])
        self.scheduler = self._make()
        self.scheduler.load_state_dict(state["scheduler"])
        self._set_rates()


def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}).logits


def loss_sum(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed (not averaged) loss, so micro-batches add up to the full batch's mean."""
    if task.is_regression:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype), reduction="sum")
    return F.cross_entropy(logits, labels, reduction="sum")


class EmbeddingGradient:
    """Gives the word embeddings a zeroed dense gradient that micro-batches add into in place.

    The embedding is made sparse, so its backward yields a sparse gradient (only the rows of
    the batch's tokens) and accumulating a micro-batch never materializes a second dense copy
    of the vocabulary-sized gradient (94 MB for DistilBERT). The sum is the same as the dense
    backward's; the optimizer still sees a dense gradient.

    The buffer is kept from step to step and zeroed in place: a new one each step is a fresh
    94 MB mapping whose pages the kernel must fault in and zero again. Only the rows a step's
    sparse gradients added into are zeroed again (a few thousand of DistilBERT's 30,522), noted
    by a hook on the weight as each gradient arrives; clipping, too, multiplies only those rows
    (:meth:`written`). The whole buffer is zeroed when it may hold other nonzero rows: ``rows_only``
    False (a multi-process run, whose gradients are summed over the processes), a dense gradient
    arrived (a weight used elsewhere too), or :meth:`spread` was called (clipping by a norm that is
    not finite multiplies every row).
    """

    def __init__(self, model: nn.Module, rows_only: bool = True):
        embeddings = model.get_input_embeddings()
        embeddings.sparse = True
        self.weight = embeddings.weight
        self.buffer: torch.Tensor | None = None
        self.rows_only = rows_only
        self.rows: list[torch.Tensor] | None = []
        """The rows added into since the buffer was last zeroed; None: possibly any row."""
        if self.weight.requires_grad:
            self.weight.register_hook(self._note)

    def _note(self, grad: torch.Tensor) -> None:
        if self.rows is not None and grad.layout == torch.sparse_coo:
            self.rows.append(grad._indices()[0])
        else:
            self.rows = None

    def written(self) -> torch.Tensor | None:
        """The rows of the gradient this step's sparse gradients added into (every other row is zero), or
        None when that is not known."""
        if not (self.rows_only and self.rows and self.weight.grad is self.buffer):
            return None
        return torch.cat(self.rows).unique()

    def spread(self) -> None:
        """Every row of the buffer may be nonzero now: the next step zeroes all of them."""
        self.rows = None

    def start(self) -> None:
        if not self.weight.requires_grad:
            return
        if self.buffer is None:
            self.buffer = torch.zeros_like(self.weight)
        elif self.rows_only and self.rows is not None:
            if self.rows:
                self.buffer.index_fill_(0, torch.cat(self.rows).unique(), 0.0)
        else:
            self.buffer.zero_()
        self.rows = []
        self.weight.grad = self.buffer


def clip_gradients(fabric, model, optimizer, max_norm: float,
                   embedding: EmbeddingGradient | None = None) -> torch.Tensor:
    """Scale the gradients so that their total norm is at most ``max_norm``: ``fabric.clip_gradients``,
    less its multiply by 1 when the norm is within bounds.

    PyTorch's ``clip_grad_norm_`` always multiplies every gradient by ``min(1, max_norm / (norm +
    1e-6))``, so that a GPU need not wait for the norm to decide. On the CPU there is nothing to wait
    for, and multiplying by 1 changes no bit: the multiply (a pass over every gradient, 67 million
    for DistilBERT) runs only when it clips, or when the norm is not finite (NaN then spreads as
    before). With ``embedding``, the word embeddings' gradient is multiplied only in the rows the step
    wrote (:meth:`EmbeddingGradient.written`; the others are zeros, which a finite factor leaves
    zero): the same bits for a few thousand of its rows instead of all 30,522. Elsewhere Fabric's
    clipping runs as it is. Returns the gradients' total norm."""
    if fabric.device.type != "cpu":
        return fabric.clip_gradients(model, optimizer, max_norm=max_norm, error_if_nonfinite=False)
    precision = fabric.strategy.precision
    precision.unscale_gradients(optimizer)
    parameters = list(precision.main_params(optimizer))
    total = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None], 2.0,
                                          error_if_nonfinite=False)
    if bool(max_norm / (total + 1e-6) >= 1.0):
        return total
    rows = embedding.written() if embedding is not None and bool(torch.isfinite(total)) else None
    if rows is None:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
        return total
    torch.nn.utils.clip_grads_with_norm_([p for p in parameters if p is not embedding.weight], max_norm, total)
    factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # clip_grads_with_norm_'s
    gradient = embedding.weight.grad
    gradient.index_copy_(0, rows, gradient.index_select(0, rows).mul_(factor))
    return total


def train_step(fabric, model, optimizer, scheduler, batch: TrainBatch, task: Task, clip: float,
               embedding: EmbeddingGradient, dropout: DropoutStream, step: int) -> float:
    """One optimizer step over the batch's micro-batches; the whole batch's mean loss (all processes).

    ``step`` is the number of optimizer steps done before this one: with the micro-batch's number, the
    place of its dropout masks in ``dropout``'s stream.
    Processes may run different numbers of micro-batches: all but the last skip DDP's gradient
    exchange, so that every process exchanges exactly once per step.
    """
    embedding.start()
    batch_loss = torch.zeros((), device=fabric.device)
    last = len(batch.micro_batches) - 1
    with weight_casts_kept_for_the_step(fabric, len(batch.micro_batches)):
        for number, micro_batch in enumerate(batch.micro_batches):
            micro_batch = fabric.to_device(micro_batch)
            with fabric.no_backward_sync(model, enabled=number != last):
                with dropout.step(step, number) or contextlib.nullcontext(), input_casts(fabric):
                    scores = logits(model, micro_batch)
                loss = loss_sum(task, scores, micro_batch["labels"]) / batch.num_examples
                if batch.filler:
                    loss = loss * 0.0
                fabric.backward(loss * batch.world_size if batch.world_size > 1 else loss)
            batch_loss += loss.detach()
    if clip > 0:
        total = clip_gradients(fabric, model, optimizer, clip, embedding)
        if fabric.device.type != "cpu" or not bool(torch.isfinite(total)):
            embedding.spread()  # NaN may have spread to every row; on a GPU, reading the norm would wait for it
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    if batch.world_size > 1:
        batch_loss = fabric.all_reduce(batch_loss, reduce_op="sum")
    return batch_loss.item()


def validate(fabric, model, task: Task, splits: list[str], loaders,
             keep: dict | None = None) -> dict[str, float | str | int]:
    """Each split's loss, metrics, fingerprint and example count, over the examples of every process.

    ``keep``, when given, receives each split's predictions in dataset order (the fingerprinted array).

    torchmetrics gathers its states from all processes in ``compute()``; the summed loss and
    count are reduced here, and the predictions gathered and put in dataset order. Each
    loader's iterator draws its base seed from torch's global generator (the loaders have no
    generator of their own), once per split and validation: that is part of the random stream.
    """
    from gluebox.training.distributed import all_gather_objects

    training = model.training
    model.eval()
    results: dict[str, float | str | int] = {}
    with torch.inference_mode():
        for split, loader in zip(splits, loaders):
            metrics, fingerprint = fabric.to_device(task_metrics(task)), PredictionFingerprint()
            total, count = 0.0, 0
            for batch in loader:
                batch = fabric.to_device(batch)
                scores, labels = logits(model, batch).float(), batch["labels"]
                total += loss_sum(task, scores, labels).item()
                count += labels.shape[0]
                preds = predictions(scores, task)
                metrics.update(preds, labels)
                fingerprint.update(preds, batch["example_index"])
            if fabric.world_size > 1:
                totals = torch.tensor([total, count], dtype=torch.float64, device=fabric.device)
                total, count = fabric.all_reduce(totals, reduce_op="sum").tolist()
            results[f"{split}/loss"] = total / max(1, count)
            for name, value in metrics.compute().items():
                results[f"{split}/{name}"] = float(value)
            ordered = PredictionFingerprint.ordered(all_gather_objects(fingerprint.state()))
            digest, examples = PredictionFingerprint.digest(ordered), len(ordered)
            if keep is not None:
                keep[split] = ordered
            if examples != int(count):
                raise RuntimeError(f"{split}: {examples} predictions for {int(count)} validation examples")
            results[f"{split}/fingerprint"] = digest
            results[f"{split}/examples"] = examples
    model.train(training)
    return results


def predict(fabric, model, task: Task, loader) -> list:
    """The model's prediction of every example of ``loader``, in order (class ids or scores)."""
    model.eval()
    with torch.inference_mode():
        return [value for batch in loader
                for value in predictions(logits(model, fabric.to_device(batch)).float(), task).cpu().tolist()]
