"""The training benchmark: a fair sample of the epoch, and ways that take turns."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from bench_train import stratified  # noqa: E402
from profile_step import by_shape  # noqa: E402


def test_stratified_sample_spans_the_length_distribution():
    rng = random.Random(0)
    sizes = [rng.randint(600, 3300) for _ in range(115)]
    batches = [[i] for i in range(115)]
    sample = stratified(batches, sizes, 30)
    picked = [sizes[b[0]] for b in sample]
    assert len({b[0] for b in sample}) == 30
    assert abs(statistics.mean(picked) - statistics.mean(sizes)) < 0.03 * statistics.mean(sizes)
    assert min(picked) < sorted(sizes)[8] and max(picked) > sorted(sizes)[-8]
    assert stratified(batches, sizes, 0) == batches
    assert stratified(batches, sizes, 500) == batches


def test_the_profile_sums_operations_by_kind_of_shape_leaving_out_matrix_multiplies():
    from types import SimpleNamespace

    def event(key, shapes, ms, count):
        return SimpleNamespace(key=key, input_shapes=shapes, self_cpu_time_total=ms * 1e3, count=count)

    events = [event("aten::copy_", [[2016, 3072], [2016, 3072], []], 6.0, 1),
              event("aten::copy_", [[1824, 3072], [1824, 3072], []], 4.0, 1),  # same kind: summed with the first
              event("aten::copy_", [[1824, 768], [1824, 768], []], 3.0, 5),
              event("aten::mm", [[2016, 768], [768, 3072]], 900.0, 10),  # a matrix multiply: left out
              event("_Dropout", [[32, 12, 54, 54]], 50.0, 12)]  # not an aten operation: left out
    rows = by_shape(events, steps=2, top=5)[2:]
    assert [row.split() for row in rows] == [["aten::copy_", "5.00", "1.0", "Nx3072", "Nx3072", "s"],
                                             ["aten::copy_", "1.50", "2.5", "Nx768", "Nx768", "s"]]
    assert len(by_shape(events, steps=2, top=1)) == 3


def run_benchmark(model: str, shared_glue, tmp_path, ways: str, warmup: int, steps: int) -> dict:
    """``benchmarks/bench_train.py`` on real MRPC with ``ways``; its results JSON."""
    output = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--model", model,
         "--data_dir", str(shared_glue / "MRPC"), "--ways", ways, "--warmup", str(warmup), "--steps", str(steps),
         "--output", str(output)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return json.loads(output.read_text())


def test_benchmark_ways_take_turns_and_report_a_ratio(tiny_distilbert, shared_glue, tmp_path):
    report = run_benchmark(tiny_distilbert, shared_glue, tmp_path, "course,gluebox", warmup=1, steps=3)
    course, gluebox = report["results"]
    assert (course["way"], gluebox["way"]) == ("course", "gluebox")
    assert course["timed_steps"] == gluebox["timed_steps"] == 3
    assert course["padded_tokens_per_epoch"] == 3668 * 128
    assert course["real_tokens_per_epoch"] == gluebox["real_tokens_per_epoch"] < gluebox["padded_tokens_per_epoch"]
    assert gluebox["padded_tokens_per_epoch"] < 0.5 * course["padded_tokens_per_epoch"]
    assert report["speedup"] == course["seconds_per_epoch"] / gluebox["seconds_per_epoch"]
    assert report["matmul_peak_gflops"] > 0 and 0 < gluebox["fraction_of_matmul_peak"]
    spans = sorted(span for result in (course, gluebox) for span in result["step_spans"])
    assert len(spans) == 2 * (1 + 3)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), "two ways ran at once"


def test_benchmark_ways_run_their_own_kernels_and_allocator(tiny_distilbert, shared_glue, tmp_path):
    """The portable way pins its kernels in its own process: AVX2, 1 thread, for-loop AdamW (2 steps);
    the defaults run under mimalloc, as the gluebox command does, and gluebox-glibc under glibc's malloc."""
    from gluebox.allocator import mimalloc_library

    fast, portable, glibc = run_benchmark(tiny_distilbert, shared_glue, tmp_path, "gluebox,portable,gluebox-glibc",
                                          warmup=0, steps=2)["results"]
    assert (fast["reproducibility"], portable["reproducibility"]) == ("fast", "portable")
    assert portable["cpu_capability"] == "AVX2" and portable["threads"] == 1 and portable["adamw"] == "for-loop"
    assert fast["adamw"] == "fused" and portable["timed_steps"] == 2
    assert fast["allocator"] == ("mimalloc" if mimalloc_library() else "system") and glibc["allocator"] == "system"


def test_the_gpu_check_runs_on_the_cpu_as_a_smoke_test(tmp_path):
    """benchmarks/gpu_check.py cannot be measured without a GPU; --cpu-smoke runs every part of it on the
    CPU with a tiny model (the masks of the torch-operations path against NumPy's, the precisions, the
    short run twice, recompute on and off) and writes its results JSON."""
    from fixtures import write_mrpc

    data = write_mrpc(tmp_path / "mrpc")
    output = tmp_path / "gpu.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--cpu-smoke", "--data_dir", str(data),
                    "--output", str(output)], check=True, capture_output=True, text=True, timeout=600)
    report = json.loads(output.read_text())
    assert report["cpu_smoke"] and report["masks"]["all_equal"] and len(report["masks"]["cases"]) == 6
    assert set(report["precisions"]) == {"32", "bf16-mixed"}
    assert all(r["train_seconds"] > 0 and r["best"] for r in report["precisions"].values())
    short = report["cpu_against_gpu"]
    assert short["steps"] == 3 and short["max_abs_loss_difference"] == 0.0  # the same device twice: identical
    assert set(report["recompute"]) == {"recompute", "no-recompute"}
    assert report["recompute"]["recompute"]["step_losses"] == report["recompute"]["no-recompute"]["step_losses"]
