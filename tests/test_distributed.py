"""Multi-process training: 2 CPU processes (DDP over gloo) give the single process's maths.

The processes split each optimizer step's batch and DDP averages their gradients, so the
step losses equal the single process's up to the order in which floats are summed. Dropout is
off in these comparisons: each process draws its own dropout masks (seeded per rank), so with
dropout on the runs differ by chance, not by maths. The data sizes are odd on purpose: the last
training batch holds one example (one process gets none) and the validation shards are uneven.

Each launcher gets one task: Lightning's launcher trains STS-B (regression: every prediction is
a different float, so the prediction fingerprint checks each example's score and place) and
torchrun trains MRPC (classification).
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import train_args, write_tsv
from fixtures import WORDS, write_mrpc
from gluebox.cli import main
from gluebox.config import TrainConfig
from gluebox.data.batching import TrainCollator
from gluebox.data.encoding import encode
from gluebox.data.sources import load_split
from gluebox.data.sharding import ShardSampler, batch_share, shard_range
from gluebox.training.distributed import launcher_rank
from gluebox.errors import GlueboxError
from gluebox.training.metrics import PredictionFingerprint
from gluebox.training.pretrained import load_tokenizer
from gluebox.tasks import GLUE_TASKS

TRAIN_ROWS, DEV_ROWS = 49, 17
STEPS_PER_EPOCH = 7
"""49 examples in batches of 8: six of 8 and a last one of 1."""


def write_stsb(folder: Path, seed: int = 0) -> Path:
    """An STS-B-layout folder with random sentence pairs and scores from 0 to 5."""
    rng = random.Random(seed)
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]

    def rows(count: int) -> list[list[str]]:
        return [[str(i), "main-news", "MSRvid", "2012test", f"{i:04d}", "none", "none",
                 " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))),
                 " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))), f"{rng.uniform(0, 5):.2f}"]
                for i in range(count)]

    write_tsv(folder / "train.tsv", header, rows(TRAIN_ROWS))
    write_tsv(folder / "dev.tsv", header, rows(DEV_ROWS))
    return folder


def step_losses(run: Path) -> list[float]:
    with open(run / "steps" / "metrics.csv", newline="") as file:
        return [float(row["loss"]) for row in csv.DictReader(file) if row.get("loss")]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def run_args(model: str, task: str, data: Path, output: Path | None) -> list[str]:
    args = train_args(model, output or Path("unused"), "--data_dir", str(data), "--task_name", task,
                      "--train_batch_size", "8", "--eval_batch_size", "4", "--max_seq_length", "64",
                      "--warmup_steps", "2", "--learning_rate", "1e-3", "--epochs", "2", "--dropout_rate", "0",
                      "--accelerator", "cpu", "--num_threads", "1")
    if output is None:
        index = args.index("--output_dir")
        del args[index:index + 2]
    return args


def gluebox_subprocess(command: list[str], env: dict | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def assert_trains_like_one_process(single: Path, multi: Path) -> None:
    one, two = step_losses(single), step_losses(multi)
    assert len(one) == len(two) == 2 * STEPS_PER_EPOCH
    assert two == pytest.approx(one, rel=1e-4)
    for a, b in zip(records(single), records(multi)):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
        assert a["validation/loss"] == pytest.approx(b["validation/loss"], rel=1e-4)
        assert a["validation/examples"] == b["validation/examples"] == DEV_ROWS
    summary = json.loads((multi / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["status"] == "complete"
    assert json.loads((multi / "status.json").read_text())["status"] == "complete"


@pytest.fixture(scope="module")
def stsb(tmp_path_factory) -> Path:
    return write_stsb(tmp_path_factory.mktemp("stsb"))


@pytest.fixture(scope="module")
def stsb_single(tiny_bert, stsb, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("single") / "run"
    assert main(run_args(tiny_bert, "stsb", stsb, run)) == 0
    return run


@pytest.fixture(scope="module")
def stsb_two_processes(tiny_bert, stsb, tmp_path_factory) -> Path:
    """Lightning's own launcher: one command, Lightning starts the second process."""
    run = tmp_path_factory.mktemp("ddp") / "run"
    gluebox_subprocess([sys.executable, "-m", "gluebox", *run_args(tiny_bert, "stsb", stsb, run),
                        "--devices", "2", "--strategy", "ddp"])
    return run


def test_lightning_launcher_two_processes_train_like_one(stsb_single, stsb_two_processes):
    """Pearson gets a looser bound: the barely trained model's scores are close to constant, and
    torchmetrics' float32 running moments amplify the weights' last-digit differences (4e-4 seen)."""
    assert_trains_like_one_process(stsb_single, stsb_two_processes)
    for a, b in zip(records(stsb_single), records(stsb_two_processes)):
        assert a["validation/spearmanr"] == pytest.approx(b["validation/spearmanr"], rel=1e-4)
        assert a["validation/pearson"] == pytest.approx(b["validation/pearson"], abs=1e-3)


def test_validation_of_two_processes_equals_one_process_evaluation_of_the_same_weights(stsb_two_processes, tmp_path):
    """Uneven shards (8 + 9 examples), no padding: every score in its place, metrics reduced over both.

    The fingerprint (sha256 of the float32 scores in dataset order) must be equal: the processes
    scored exactly the batches one process scores. Pearson merges per-process float32 moments,
    so it agrees to float32 rounding only: 3e-6 relative seen on one set of weights, 3.5e-5 on
    another, because the tiny model's scores are nearly constant (an ill-conditioned Pearson)."""
    summary = json.loads((stsb_two_processes / "summary.json").read_text())
    output = tmp_path / "eval.json"
    assert main(["evaluate", str(stsb_two_processes), "--output", str(output)]) == 0
    scored = json.loads(output.read_text())["validation"]
    best = summary["best"]
    assert scored["examples"] == best["validation/examples"] == DEV_ROWS
    assert scored["fingerprint"] == best["validation/fingerprint"]
    assert scored["pearson"] == pytest.approx(best["validation/pearson"], rel=2e-4)
    assert scored["spearmanr"] == pytest.approx(best["validation/spearmanr"], rel=1e-6)
    assert scored["loss"] == pytest.approx(best["validation/loss"], rel=1e-6)


def test_torchrun_two_processes_train_like_one_in_one_directory(tiny_bert, tmp_path):
    """torchrun starts both processes; the default (timestamped) run path is rank 0's, created once."""
    mrpc = write_mrpc(tmp_path / "mrpc", train_rows=TRAIN_ROWS, dev_rows=DEV_ROWS)
    single = tmp_path / "single"
    assert main(run_args(tiny_bert, "mrpc", mrpc, single)) == 0
    runs = tmp_path / "runs"
    gluebox_subprocess([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "gluebox", *run_args(tiny_bert, "mrpc", mrpc, None), "--devices", "2"],
                       env={"GLUEBOX_RUNS_DIR": str(runs)})
    made = list(runs.iterdir())
    assert len(made) == 1
    assert_trains_like_one_process(single, made[0])
    for a, b in zip(records(single), records(made[0])):
        assert (a["validation/accuracy"], a["validation/f1"]) == (b["validation/accuracy"], b["validation/f1"])
        assert a["validation/fingerprint"] == b["validation/fingerprint"]


def test_shares_of_a_batch_and_shards_of_a_split_cover_each_example_once():
    batch = [7, 3, 9, 1, 4]
    shares = [batch_share(batch, rank, 2) for rank in range(2)]
    assert sorted(shares[0] + shares[1]) == sorted(batch) and len(shares[0]) - len(shares[1]) == 1
    for length in (0, 1, 5, 17):
        for world in (1, 2, 3):
            covered = [i for rank in range(world) for i in shard_range(length, rank, world)]
            assert covered == list(range(length))
    assert list(ShardSampler(17, rank=1, world_size=2)) == list(range(8, 17))
    # Whole batches of 4: 5 batches, 2 for rank 0 (8 examples) and 3 for rank 1 (9 examples).
    assert list(ShardSampler(17, 4, rank=0, world_size=2)) == list(range(0, 8))
    assert list(ShardSampler(17, 4, rank=1, world_size=2)) == list(range(8, 17))
    assert [i for r in range(3) for i in ShardSampler(10, 4, rank=r, world_size=3)] == list(range(10))


def test_collator_takes_this_rank_share_and_a_zero_weight_filler(tiny_bert, stsb):
    task = GLUE_TASKS["stsb"]
    split = encode(load_split(TrainConfig(task_name="stsb", data_dir=str(stsb)), task, "train"),
                   load_tokenizer(tiny_bert), 64, True)
    batch = [5, 2, 8]
    seen = []
    for rank in range(2):
        step = TrainCollator(split, 0, None, micro_batch_size=1, rank=rank, world_size=2)(batch)
        assert step.num_examples == 3 and step.world_size == 2 and not step.filler
        seen += [int(m["example_index"][0]) for m in step.micro_batches]
    assert sorted(seen) == sorted(batch)
    filler = TrainCollator(split, 0, None, rank=1, world_size=2)([4])
    assert filler.filler and filler.num_examples == 1 and len(filler.micro_batches) == 1
    whole = TrainCollator(split, 0, None)(batch)
    assert whole.world_size == 1 and sorted(whole.micro_batches[0]["example_index"].tolist()) == sorted(batch)


def test_fingerprint_is_the_same_for_any_sharding_and_refuses_duplicates():
    import torch

    preds = torch.tensor([1, 0, 0, 1, 1])
    whole = PredictionFingerprint()
    whole.update(preds, torch.arange(5))
    first, second = PredictionFingerprint(), PredictionFingerprint()
    second.update(preds[3:], torch.arange(3, 5))
    first.update(preds[:3], torch.arange(3))
    digest, count = PredictionFingerprint.combine([second.state(), first.state()])
    assert (digest, count) == (whole.hexdigest(), 5)
    with pytest.raises(RuntimeError, match="exactly once"):
        PredictionFingerprint.combine([first.state(), first.state()])


def test_launcher_rank_and_process_checks(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert launcher_rank(2) == 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("NODE_RANK", "1")
    assert launcher_rank(2) == 3
    monkeypatch.setenv("RANK", "5")
    assert launcher_rank(2) == 5
    with pytest.raises(GlueboxError, match="smaller than the 4 processes"):
        TrainConfig(train_batch_size=2, devices=2, num_nodes=2).validate()
    with pytest.raises(GlueboxError, match="--strategy"):
        TrainConfig(strategy="fsdp").validate()
    with pytest.raises(GlueboxError, match="got 'ddp_spawn'; ddp runs the same training"):
        TrainConfig(strategy="ddp_spawn").validate()


def test_trainer_controls_in_two_processes_train_like_one(tiny_bert, stsb, tmp_path):
    """The new flags in a 2-process run (Lightning's launcher): validation every 3 steps, a cosine schedule with
    a warmup ratio, early stopping on the loss, and a time budget whose plan (rank 0's, on a fake clock: never the
    machine's speed) every process follows: the same steps, losses and validations as one process."""
    from gluebox.training.budget import FAKE_CLOCK_VARIABLE

    controls = ("--eval_every_n_steps", "3", "--lr_scheduler", "cosine", "--warmup_ratio", "0.2",
                "--metric_for_best", "validation/loss", "--early_stopping_patience", "3", "--time_budget", "40s")
    clock = {FAKE_CLOCK_VARIABLE: "token:0.02,validation:1"}
    single, multi = tmp_path / "single", tmp_path / "multi"

    def command(run: Path) -> list[str]:
        args = run_args(tiny_bert, "stsb", stsb, run)
        index = args.index("--warmup_steps")  # the ratio sets the warmup here
        return [sys.executable, "-m", "gluebox", *args[:index], *args[index + 2:], *controls]

    gluebox_subprocess(command(single), env=clock)
    gluebox_subprocess([*command(multi), "--devices", "2", "--strategy", "ddp"], env=clock)
    one, two = (json.loads((run / "summary.json").read_text()) for run in (single, multi))
    assert two["processes"] == 2 and two["status"] == "complete"
    assert one["time_budget"]["planned_steps"] == two["time_budget"]["planned_steps"] == two["steps"] == one["steps"]
    assert one["steps"] < 2 * STEPS_PER_EPOCH  # the budget cut the run
    assert step_losses(multi) == pytest.approx(step_losses(single), rel=1e-4)
    assert [r["step"] for r in records(multi)] == [r["step"] for r in records(single)]
    for a, b in zip(records(single), records(multi)):
        assert a["validation/loss"] == pytest.approx(b["validation/loss"], rel=1e-4)
