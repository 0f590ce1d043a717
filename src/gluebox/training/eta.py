"""How long a run will take on this machine: a rough estimate before training, a measured one after
the first steps.

Before training (printed beside the memory plan, and in ``gluebox glue``'s plan),
:func:`training_seconds`: the epoch's useful work (6 x non-embedding parameters x padded training
tokens, plus 2 x that per validation token) at the speed of this machine's matrix multiplies in
the run's precision (float32, or bfloat16 under ``--precision bf16-mixed``), measured for a
fraction of a second on constant matrices (:func:`matmul_speeds`), times the share of that speed
training reached in ``benchmarks/bench_train.py`` (in float32 0.80 with whole batches, 0.41
under a memory budget's micro-batches), plus the fixed work of every optimizer step: AdamW and
clipping over every parameter, and the operators of each layer, which cost the same on a short
batch as on a long one.

The same probe says whether this CPU multiplies bfloat16 natively (:func:`precision_hint`): where
it does at least :data:`BF16_HINT_RATIO` times faster than float32, the run's first lines suggest
``--precision bf16-mixed``; where it multiplies bfloat16 slower than float32 (no bfloat16 units:
the products are converted and computed in float32), a run that asked for it is told so. Then the measured estimate: after the first steps of an epoch, the real tokens per second
of steps 2 onwards, applied to the epoch's real tokens.

Nothing here touches the model, the data order or any random generator: the results of a run are
the same with and without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gluebox.training.memory import model_shape

SHARE_OF_MATMUL_SPEED = {False: 0.80, True: 0.41}
"""The share of the time probe's float32 speed at which a training step's useful work runs, the fixed work of
each step (:data:`STEP_SECONDS_PER_PARAMETER`, :data:`STEP_SECONDS_PER_LAYER`) apart: freed memory kept for
reuse (the defaults), and returned to the OS at once (under a budget, with micro-batches). 0.80 fits the
MRPC epochs measured by ``benchmarks/bench_train.py`` in two runs on 2 Intel Xeon CPUs (commits 2669198 and
86ee519, the same training code; the time probe, run between them, gave 338 GFLOP/s): DistilBERT-shaped,
training and validation 207.6 and 211.1 s (``results-bf16.json``), estimated 226 s, 7 to 9% over;
all-MiniLM-L6-v2, training alone 68.0 and 70.3 s (``results-course-minilm.json``), estimated 64.1 s, 6 to 9%
under (the smaller model's matrix multiplies run further from the peak). It was 0.66, fitted to an earlier,
slower version: 29% over DistilBERT's epoch of this version. 0.41 was fitted to that earlier version too,
and has not been measured again."""
BF16_SHARE_OF_MATMUL_SPEED = 0.66
"""The same under ``--precision bf16-mixed``, over the bfloat16 matrix-multiply speed the time probe measures:
the rest of the step (casts, LayerNorm, dropout) does not get faster with the matrix multiplies. The
DistilBERT-shaped epoch and validation of ``results-bf16.json`` took 86.4 and 87.7 s in the same two runs,
with the time probe at 1326 GFLOP/s in bfloat16 (3.9x float32; run between them): estimated 91 s, 4 to 6%
over. (It was 0.40, beside float32's 0.66: 55% over.)"""
BF16_HINT_RATIO = 2.0
"""bfloat16 matrix multiplies at least this many times faster than float32: the run suggests bf16-mixed."""

STEP_SECONDS_PER_PARAMETER = 0.12 / 67e6
"""Fixed work of an optimizer step (fused AdamW, clipping): about 0.12 s for DistilBERT's 67M parameters."""
STEP_SECONDS_PER_LAYER = 0.017
"""Fixed work of a training step per encoder layer (about 200 operators forward and backward, whatever
the batch's length). Measured with all-MiniLM-L6-v2 on SST-2 (2 Intel Xeon CPUs, matrix multiply at
230 GFLOP/s, 2,105 steps of 447 padded tokens on average): an epoch took 694 s, of which the
useful work accounts for 396 s and AdamW for 86 s."""

MEASURED_AFTER_STEPS = 6
"""The measured estimate comes after this many steps of an epoch (the first one is not timed)."""


def duration(seconds: float) -> str:
    """``45 s``, ``12 min 5 s``, ``3 h 4 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else "under 1 s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _about(seconds: float) -> str:
    return f"about {duration(seconds)}" if seconds >= 1 else duration(seconds)


def matmul_gflops(size: int = 1024, repeats: int = 4, dtype=None) -> float:
    """This process's matrix-multiply speed in ``dtype`` (float32 by default; best of ``repeats``), on
    constant matrices (no random draws)."""
    import torch

    dtype = dtype or torch.float32
    a = torch.full((size, size), 0.5, dtype=dtype)
    b = torch.full((size, size), 0.25, dtype=dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / max(best, 1e-9) / 1e9


@dataclass(frozen=True)
class MatmulSpeeds:
    """This machine's matrix-multiply speeds, GFLOP/s on its CPU threads."""

    float32: float
    bfloat16: float

    @property
    def bf16_ratio(self) -> float:
        """How many times faster bfloat16 multiplies than float32."""
        return self.bfloat16 / max(self.float32, 1e-9)

    def for_precision(self, precision: str) -> float:
        """The speed of the matrix multiplies of a run under ``--precision``."""
        return self.bfloat16 if precision == "bf16-mixed" else self.float32


def matmul_speeds() -> MatmulSpeeds:
    """Measure float32 and bfloat16 matrix multiplies (a fraction of a second on most CPUs)."""
    import torch

    return MatmulSpeeds(matmul_gflops(), matmul_gflops(dtype=torch.bfloat16))


def precision_hint(speeds: MatmulSpeeds, precision: str, device: str = "cpu", portable: bool = False) -> str | None:
    """The line a CPU run prints about bfloat16, or None: the suggestion of ``--precision bf16-mixed``
    where bfloat16 multiplies at least :data:`BF16_HINT_RATIO` times faster than float32 (not to a
    ``--reproducibility portable`` run, whose point is float32's numbers everywhere), and a warning
    where a run asked for bf16-mixed and bfloat16 is slower than float32 here."""
    if device != "cpu":
        return None
    ratio = speeds.bf16_ratio
    if precision == "32" and ratio >= BF16_HINT_RATIO and not portable:
        return (f"hint: this CPU multiplies bfloat16 matrices {ratio:.1f}x as fast as float32 "
                f"({speeds.bfloat16:.0f} against {speeds.float32:.0f} GFLOP/s): --precision bf16-mixed trains "
                "faster here (results differ from float32's in their last digits)")
    if precision == "bf16-mixed" and ratio < 1.0:
        return (f"note: this CPU has no bfloat16 units (bfloat16 matrix multiplies at {ratio:.2f}x float32's speed): "
                "--precision bf16-mixed is slower here than the default --precision 32; going on")
    return None


def padded_train_tokens(batches: list[list[int]], lengths: np.ndarray, width: Callable[[int], int]) -> int:
    """Tokens the model runs on in an epoch of ``batches``: each batch padded to ``width`` of its longest
    example's length (``TrainConfig.pad_width``)."""
    return sum(len(batch) * width(int(lengths[batch].max())) for batch in batches if batch)


def padded_eval_tokens(lengths: np.ndarray, batch_size: int, width: Callable[[int], int]) -> int:
    return padded_train_tokens([list(range(i, min(i + batch_size, len(lengths))))
                                for i in range(0, len(lengths), batch_size)], lengths, width)


def non_embedding_parameters(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def training_seconds(non_embedding: int, parameters: int, layers: int, gflops: float, steps: int,
                     train_tokens: float, evaluated_tokens: float = 0.0, returns_freed_memory: bool = False,
                     processes: int = 1, precision: str = "32") -> float:
    """Estimated seconds for ``steps`` optimizer steps over ``train_tokens`` tokens and a forward pass over
    ``evaluated_tokens``, on ``processes`` processes whose matrix multiplies (in ``precision``'s type) run
    at ``gflops``."""
    share = SHARE_OF_MATMUL_SPEED[returns_freed_memory]
    if precision == "bf16-mixed":
        share *= BF16_SHARE_OF_MATMUL_SPEED / SHARE_OF_MATMUL_SPEED[False]
    rate = gflops * 1e9 * share * processes
    fixed = steps * (STEP_SECONDS_PER_PARAMETER * parameters + STEP_SECONDS_PER_LAYER * layers) / processes
    return (6 * train_tokens + 2 * evaluated_tokens) * non_embedding / rate + fixed


def estimate_epoch_seconds(recipe, processes: int = 1, speeds: MatmulSpeeds | None = None) -> tuple[float, str]:
    """The rough estimate of one epoch (training and validation) and a line that says how it was made,
    from ``speeds`` (measured here when not given) in the run's precision."""
    config = recipe.config
    train = recipe.encoded["train"]
    tokens = padded_train_tokens(recipe.batch_sampler.batches(0), train.lengths, config.pad_width)
    eval_tokens = sum(padded_eval_tokens(recipe.encoded[s].lengths, config.eval_batch_size, config.pad_width)
                      for s in recipe.task.validation_splits)
    speeds = speeds or matmul_speeds()
    gflops = speeds.for_precision(config.precision)
    steps = len(recipe.batch_sampler)
    seconds = training_seconds(non_embedding_parameters(recipe.model), sum(p.numel() for p in recipe.model.parameters()),
                               model_shape(recipe.model.config)[1], gflops, steps, tokens, eval_tokens,
                               recipe.plan.returns_freed_memory, processes, config.precision)
    kind = "bfloat16" if config.precision == "bf16-mixed" else "float32"
    line = (f"time estimate: {_about(seconds)} per epoch on this machine ({steps} steps, "
            f"{tokens:,} padded training tokens, {kind} matrix multiplies at {gflops:.0f} GFLOP/s); "
            f"{config.epochs} epoch(s) {_about(seconds * config.epochs)}; "
            f"a measured estimate follows step {MEASURED_AFTER_STEPS}")
    return seconds, line


class MeasuredEstimate:
    """After the first steps of the first epoch this process trains, the measured time per epoch and
    when the run should end (training only; validation and checkpoints come on top)."""

    def __init__(self, epoch_tokens: int, steps_per_epoch: int, epochs: int, clock=time.perf_counter):
        self.clock = clock
        """Seconds from any origin (a fake one in tests of --time_budget)."""
        self.epoch_tokens = epoch_tokens
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.steps = 0
        self.tokens = 0
        self.started: float | None = None
        self.done = steps_per_epoch <= MEASURED_AFTER_STEPS  # too short an epoch to tell anything

    def after_step(self, tokens: int, epoch: int, step_in_epoch: int) -> str | None:
        """The line to print once (after step ``MEASURED_AFTER_STEPS``), else None.

        ``epoch`` is 0-based; ``step_in_epoch`` counts the epoch's steps done, this one included."""
        if self.done:
            return None
        self.steps += 1
        if self.started is None:  # the first step (allocations, warm caches) is not timed
            self.started = self.clock()
            return None
        self.tokens += tokens
        if self.steps < MEASURED_AFTER_STEPS:
            return None
        self.done = True
        rate = self.tokens / max(self.clock() - self.started, 1e-9)
        per_epoch = self.epoch_tokens / rate
        left = per_epoch * (self.epochs - epoch - step_in_epoch / self.steps_per_epoch)
        finish = time.strftime("%H:%M", time.localtime(time.time() + left))
        return (f"measured over steps 2-{self.steps}: {rate:.0f} tokens/s, {_about(per_epoch)} of training "
                f"per epoch; {duration(left)} of training left, done around {finish} (validation not counted)")
