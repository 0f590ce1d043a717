"""``--time_budget``: the optimizer steps that fit in the run's wall time, planned from its measured speed.

The budget covers the whole ``gluebox train`` command, from its start (loading the model, tokenizing) to
the complete run directory: every step, every validation, the checkpoints and the final files. A resumed
run keeps what is left of it: the checkpoint holds the seconds spent up to it (the work after the last
checkpoint is lost with a kill, and is done again).

The plan: the most optimizer steps ``N`` (at most those of ``--epochs`` or ``--max_steps``) such that

    spent + (N - done) x seconds per step + validations still due x seconds per validation + the end's saves
        <= TARGET_SHARE x budget

(:func:`plan_steps`). It is made when the measured estimate is printed (:class:`gluebox.training.eta.MeasuredEstimate`,
after step 6), from the same measurement: seconds per training token from the second step on, applied to
the tokens of each step to come (the seeded batch order is known ahead); a validation's cost is its tokens
at a third of a training token's time until one is measured. It is made again after every validation, from
this session's measurements so far (checkpoints included in the training time). The learning-rate
schedule is put over the planned steps each time (:meth:`gluebox.training.classifier.Schedule.replan`),
so that it decays to zero at the planned last step. A resumed run keeps the plan of its checkpoint unless it
no longer fits what is left of the budget (a slower machine): then it plans again. In a multi-process run,
rank 0's plan is everyone's.

Tests replace the clock (``GLUEBOX_FAKE_CLOCK=token:0.002,validation:3``: each training token and each
validation costs that many seconds, anything else nothing), so that the plan never depends on the machine.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

from gluebox.errors import GlueboxError
from gluebox.training.eta import duration

TARGET_SHARE = 0.98
"""The plan ends at this share of the budget: the rest absorbs a shared machine's noise."""
FAKE_CLOCK_VARIABLE = "GLUEBOX_FAKE_CLOCK"
DISK_BYTES_PER_SECOND = 200e6
"""For the end's saves before one is measured: a checkpoint (weights and AdamW's two moments) and best_model/."""


def validations_due(done: int, total: int, steps_per_epoch: int, every_n_steps: int | None) -> int:
    """Validations after step ``done`` up to the last step ``total``: every epoch's end (or every
    ``every_n_steps``), and the last step, which always has one."""
    period = every_n_steps or steps_per_epoch
    return math.ceil(total / period) - done // period


def plan_steps(budget: float, spent: float, done: int, training_seconds: Callable[[int], float],
               validation_seconds: float, finish_seconds: float, steps_per_epoch: int, every_n_steps: int | None,
               most: int) -> int:
    """The most optimizer steps in all (from ``done``, at most ``most``) whose remaining work, validations and
    the end's saves end within :data:`TARGET_SHARE` of ``budget``, ``spent`` seconds of it already gone;
    ``done`` when not even one more step fits. ``training_seconds(n)``: the time of the steps after ``done``
    up to step ``n``."""
    limit = TARGET_SHARE * budget - spent - finish_seconds

    def cost(steps: int) -> float:
        return training_seconds(steps) + validations_due(done, steps, steps_per_epoch, every_n_steps) * validation_seconds

    low, high = done, max(done, most)
    if cost(low) > limit:
        return done
    while low < high:  # the cost grows with the steps: the last that fits
        middle = (low + high + 1) // 2
        if cost(middle) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


class Clock:
    """Seconds since the command started (``started``: its ``time.monotonic()``)."""

    def __init__(self, started: float | None = None):
        self.started = time.monotonic() if started is None else started

    def now(self) -> float:
        return time.monotonic()

    def since_start(self) -> float:
        return self.now() - self.started

    def trained(self, tokens: int) -> None:
        """A training step over ``tokens`` tokens ended (the real clock just runs)."""

    def validated(self) -> None:
        """A validation ended."""


class FakeClock(Clock):
    """A clock that moves only by the work done: ``token`` seconds per training token, ``validation`` seconds
    per validation (``GLUEBOX_FAKE_CLOCK``, for tests)."""

    def __init__(self, token: float, validation: float):
        super().__init__(started=0.0)
        self.token, self.validation, self.time = token, validation, 0.0

    @classmethod
    def from_text(cls, text: str) -> "FakeClock":
        try:
            costs = {name.strip(): float(value) for name, value in (part.split(":") for part in text.split(","))}
            return cls(costs.pop("token"), costs.pop("validation", 0.0))
        except (ValueError, KeyError):
            raise GlueboxError(f"{FAKE_CLOCK_VARIABLE}={text}: write it like token:0.002,validation:3") from None

    def now(self) -> float:
        return self.time

    def trained(self, tokens: int) -> None:
        self.time += tokens * self.token

    def validated(self) -> None:
        self.time += self.validation


def process_started() -> float | None:
    """The ``time.monotonic()`` at which this process started (Linux; an ``execve``, as the allocator's restart,
    keeps it), so that a budget covers Python's start too; None where ``/proc`` does not say."""
    try:
        stat = open("/proc/self/stat").read()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks after boot
        with open("/proc/uptime") as uptime:
            since_boot = float(uptime.read().split()[0])
        return time.monotonic() - (since_boot - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def make_clock(started: float | None = None) -> Clock:
    """The real clock, or the fake one a test set in ``GLUEBOX_FAKE_CLOCK``."""
    fake = os.environ.get(FAKE_CLOCK_VARIABLE)
    return FakeClock.from_text(fake) if fake else Clock(started)


class TimeBudget:
    """The run's budget, what it measured, and its plan; saved in the checkpoint (``state["budget"]``)."""

    def __init__(self, seconds: float, clock: Clock):
        self.seconds = seconds
        self.clock = clock
        self.spent_before = 0.0
        """Seconds spent by the sessions before this one (up to the checkpoint this one resumed from)."""
        self.planned = False
        """A plan was made from a measurement (a resumed run keeps it while it fits)."""
        self.session_tokens = 0
        self.session_started_training: float | None = None
        self.validating_since: float | None = None
        self.validation_seconds: list[float] = []
        self.save_seconds: float | None = None

    def spent(self) -> float:
        return self.spent_before + self.clock.since_start()

    def state_dict(self) -> dict:
        return {"spent": self.spent(), "planned": self.planned}

    def load_state_dict(self, state: dict) -> None:
        self.spent_before, self.planned = float(state["spent"]), bool(state["planned"])

    # What the loop reports.
    def step_done(self, tokens: int) -> None:
        """A training step ended; as in the measured estimate, the first of a session is not timed (allocations,
        cold caches)."""
        self.clock.trained(tokens)
        if self.session_started_training is None:
            self.session_started_training = self.clock.now()
        else:
            self.session_tokens += tokens

    def validation_starts(self) -> None:
        self.validating_since = self.clock.now()

    def validation_done(self) -> None:
        """After a validation, with its best_model/ export and record."""
        self.clock.validated()
        if self.validating_since is not None:
            self.validation_seconds.append(self.clock.now() - self.validating_since)
        self.validating_since = None

    def saved(self, seconds: float) -> None:
        """How long the last checkpoint took (the end has one more)."""
        self.save_seconds = seconds

    # What it measured.
    def token_seconds(self) -> float | None:
        """Seconds of training per training token in this session from its second step on, checkpoints included,
        validations not."""
        if self.session_started_training is None or not self.session_tokens:
            return None
        training = self.clock.now() - self.session_started_training - sum(self.validation_seconds)
        return max(training, 0.0) / self.session_tokens

    def finish_seconds(self, parameters: int) -> float:
        """The end's last checkpoint: measured, or estimated from the model's size (weights, AdamW's moments and
        best_model/)."""
        return self.save_seconds if self.save_seconds is not None else parameters * 16 / DISK_BYTES_PER_SECOND


class Planner:
    """Plans the run's steps within its :class:`TimeBudget`, from what the run measured.

    ``step_tokens``: the training tokens of every step the run may take, in order (the batch order is
    known ahead: seeded), so that the time of the steps to come follows their own lengths."""

    def __init__(self, budget: TimeBudget, most: int, steps_per_epoch: int, every_n_steps: int | None,
                 step_tokens, validation_tokens: float, parameters: int):
        import numpy as np

        self.budget, self.most = budget, most
        self.steps_per_epoch, self.every_n_steps = steps_per_epoch, every_n_steps
        self.cumulative = np.concatenate([[0], np.cumsum(np.asarray(step_tokens, dtype=np.float64))])
        self.validation_tokens, self.parameters = validation_tokens, parameters

    def _tokens(self, done: int, total: int) -> float:
        return float(self.cumulative[total] - self.cumulative[done])

    def _left(self, done: int, total: int, token_seconds: float) -> float:
        """Seconds of the steps after ``done`` up to ``total`` and their validations."""
        return (self._tokens(done, total) * token_seconds
                + validations_due(done, total, self.steps_per_epoch, self.every_n_steps) * self._validation_seconds(token_seconds))

    def steps(self, done: int, token_seconds: float) -> int:
        """The planned steps in all, at ``token_seconds`` per training token."""
        self.budget.planned = True
        return plan_steps(self.budget.seconds, self.budget.spent(), done,
                          lambda total: self._tokens(done, total) * token_seconds,
                          self._validation_seconds(token_seconds), self.budget.finish_seconds(self.parameters),
                          self.steps_per_epoch, self.every_n_steps, self.most)

    def fits(self, done: int, total: int, token_seconds: float) -> bool:
        """Whether ``total`` steps in all still end within the budget (not just its target share)."""
        end = self.budget.spent() + self._left(done, total, token_seconds) + self.budget.finish_seconds(self.parameters)
        return end <= self.budget.seconds

    def _validation_seconds(self, token_seconds: float) -> float:
        """Measured, or the validation's tokens at a third of a training token's time (forward only)."""
        measured = self.budget.validation_seconds
        return max(measured) if measured else self.validation_tokens * token_seconds / 3

    def describe(self, total: int, done: int, token_seconds: float) -> str:
        """The line printed with each new plan."""
        budget = self.budget
        end = budget.spent() + self._left(done, total, token_seconds) + budget.finish_seconds(self.parameters)
        return (f"time budget {duration(budget.seconds)}: {total} optimizer steps planned "
                f"({total / self.steps_per_epoch:.2f} epochs; {done} done), ending after about {duration(end)} "
                "with validation and saves")
