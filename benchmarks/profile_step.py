"""Where a gluebox training step's time goes: ``torch.profiler`` over stratified steps of the real
step (gluebox's recipe, data pipeline and :func:`gluebox.training.classifier.train_step`).

    python benchmarks/profile_step.py --model DISTILBERT_SHAPED --steps 6 --output benchmarks/profile-distilbert.txt

``--precision bf16-mixed`` profiles the step under bfloat16 autocast (``--precision 32``, the default,
in float32; ``--precision 32,bf16-mixed`` both, taking turns like the generators).

``--generators philox,torch`` profiles each dropout generator over the same batches, the two taking
turns step by step in this one process (``GLUEBOX_DROPOUT_GENERATOR`` is read at every step). For
each it reports the mean step time, the time in gluebox's dropout (its masks drawn and applied, timed
around :meth:`gluebox.training.dropout.Mask.apply`; in the profile, NumPy's work is the self time of the
``_Dropout`` and ``_DropoutBackward`` entries it runs in), the time in PyTorch's dropout draws
(``aten::bernoulli_``), and the operations with the most self CPU time. "Outside operations" is the
step's wall time less the self time of every profiled operation: Python, the autograd engine's
bookkeeping, and threads waiting.

``--by_shape`` adds, for each way, the operations other than matrix multiplies summed by the kind of
their inputs' shapes (each dimension written as itself when it is a model constant such as 768,
12, 64 or 3072, else ``N``), in ms a step: which bias copies, which elementwise passes, which norms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model folder (default: a DistilBERT-shaped random model).")
    parser.add_argument("--data_dir", default="../shared/data/glue/MRPC")
    parser.add_argument("--steps", type=int, default=6, help="Profiled steps per generator (stratified).")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--generators", default="philox,torch")
    parser.add_argument("--precision", default="32", help="Comma-separated --precision values to profile.")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", default=None, help="Also write the report to this file.")
    parser.add_argument("--by_shape", action="store_true",
                        help="Also sum the operations other than matrix multiplies by the kind of their input shapes.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        from bench_train import make_distilbert

        model = args.model or str(make_distilbert(Path(tmp) / "distilbert-shaped"))
        report = profile(model, args)
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n")


def profile(model: str, args) -> str:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from bench_train import DropoutClock, cpu_model, stratified
    from gluebox.config import TrainConfig
    from gluebox.recipe.build import build
    from gluebox.training import dropout
    from gluebox.training.classifier import EmbeddingGradient, make_optimizer, train_step
    from gluebox.training.hardware import deterministic
    from gluebox.training.loop import make_fabric
    from gluebox.training.quiet import quiet_libraries

    quiet_libraries()
    deterministic()
    clock = DropoutClock()
    generators = args.generators.split(",")
    ways = [(precision, generator) for precision in args.precision.split(",") for generator in generators]
    steppers = {}
    for precision in args.precision.split(","):  # one model, optimizer and Fabric per precision, same weights
        config = TrainConfig(model_name_or_path=model, data_dir=args.data_dir, precision=precision)
        recipe = build(config)
        train = recipe.encoded["train"]
        epoch = recipe.batch_sampler.batches(0)
        padded = [len(b) * int(train.lengths[b].max()) for b in epoch]
        timed = stratified(epoch, padded, args.steps)
        warmup = [b for b in epoch if b not in timed][: args.warmup]
        fabric = make_fabric(config)
        wrapped = fabric.setup_module(recipe.model)
        embedding = EmbeddingGradient(recipe.model)
        optimizer, scheduler = make_optimizer(recipe.model, recipe.optim, len(generators) * len(epoch), fabric.device)
        optimizer = fabric.setup_optimizers(optimizer)
        steppers[precision] = (recipe, fabric, wrapped, embedding, optimizer, scheduler, dropout.DropoutStream(config.seed))

    def step(indices, number: int, way) -> float:
        precision, generator = way
        recipe, fabric, wrapped, embedding, optimizer, scheduler, stream = steppers[precision]
        os.environ[dropout.GENERATOR_VARIABLE] = generator
        start = time.perf_counter()
        batch = recipe.train_collator([recipe.encoded["train"][i] for i in indices])
        train_step(fabric, wrapped, optimizer, scheduler, batch, recipe.task, recipe.optim.gradient_clip_val,
                   embedding, stream, number)
        return time.perf_counter() - start

    for number, indices in enumerate(warmup):
        for way in ways:
            step(indices, number, way)
    walls = {w: [] for w in ways}
    drop = {w: 0.0 for w in ways}
    profiles = {w: torch_profile(activities=[ProfilerActivity.CPU], acc_events=True, record_shapes=args.by_shape)
                for w in ways}
    for number, indices in enumerate(timed, start=len(warmup)):
        for way in ways:
            before = clock.seconds
            with profiles[way]:
                walls[way].append(step(indices, number, way))
            drop[way] += clock.seconds - before
    lines = [f"CPU: {cpu_model()}, {torch.get_num_threads()} threads, model {Path(model).name}, "
             f"{len(timed)} stratified steps after {len(warmup)} warm-up, the ways taking turns; "
             f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end"]
    for way in ways:
        events = profiles[way].key_averages()
        wall = sum(walls[way])
        self_total = sum(e.self_cpu_time_total for e in events) / 1e6
        bernoulli = sum(e.cpu_time_total for e in events if e.key == "aten::bernoulli_") / 1e6
        outside = wall - self_total  # gluebox's dropout (NumPy's work too) is _Dropout's and _DropoutBackward's self time
        lines += ["", f"== precision {way[0]}, {way[1]}: {statistics.mean(walls[way]):.3f} s a step; gluebox dropout "
                      f"{drop[way] / wall:.1%}, aten::bernoulli_ {bernoulli / wall:.1%}, outside operations "
                      f"{outside / wall:.1%} ({outside / len(timed) * 1e3:.0f} ms a step)",
                  events.table(sort_by="self_cpu_time_total", row_limit=args.top)]
        if args.by_shape:
            lines += by_shape(profiles[way].key_averages(group_by_input_shape=True), len(timed), args.top)
    return "\n".join(lines)


MODEL_CONSTANTS = {1, 2, 12, 64, 384, 768, 1536, 3072, 30522}
"""Dimensions written as themselves by ``--by_shape`` (hidden sizes, heads, head size, vocabulary)."""
MATRIX_MULTIPLIES = {"aten::mm", "aten::addmm", "aten::bmm"}


def shape_kind(shapes) -> str:
    """``Nx12xNx64 s``: each input's shape, dimensions other than :data:`MODEL_CONSTANTS` as ``N``, ``s`` a scalar."""
    return " ".join("x".join(str(d) if d in MODEL_CONSTANTS else "N" for d in shape) if shape else "s"
                    for shape in shapes)


def by_shape(events, steps: int, top: int) -> list[str]:
    """The ``top`` operations other than matrix multiplies by self time, summed by operation and kind of input shapes."""
    totals: dict[tuple[str, str], list[float]] = {}
    for event in events:
        if event.key.startswith("aten::") and event.key not in MATRIX_MULTIPLIES:
            total = totals.setdefault((event.key, shape_kind(event.input_shapes)), [0.0, 0])
            total[0] += event.self_cpu_time_total / 1e3 / steps
            total[1] += event.count / steps
    rows = sorted(totals.items(), key=lambda item: -item[1][0])[:top]
    return ["", f"{'operation':<36} {'ms a step':>9} {'calls a step':>12}  input shapes"] + [
        f"{name:<36} {ms:>9.2f} {calls:>12.1f}  {kind}" for (name, kind), (ms, calls) in rows]


if __name__ == "__main__":
    main()
