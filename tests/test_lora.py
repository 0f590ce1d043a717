"""`--peft lora` on a tiny BERT and a tiny DistilBERT: what is trained, end to end (train, kill and
resume identical, evaluate, predict), the merged export in plain transformers, the adapter in
peft, the memory plan, sweeps, and the bad-input cases.

The runs share test_resume's shape: 48 examples, batches of 4, 2 epochs of 12 steps, dropout on
(the encoder's and the adapters'), so an identical resumed run also proves that the random
generators were put back.
"""

from __future__ import annotations

import copy
import csv
import json
import re
import signal
import subprocess
import sys

import pytest
import torch

from conftest import start_gluebox, train_args, wait_until_paused
from fixtures import write_mrpc
from gluebox.cli import main

KINDS = ("bert", "distilbert")
TARGETS = {"bert": ["query", "value"], "distilbert": ["q_lin", "v_lin"]}
HEADS = {"bert": ["classifier"], "distilbert": ["pre_classifier", "classifier"]}
SETTINGS = ("--peft", "lora", "--lora_r", "4", "--lora_dropout", "0.1", "--train_batch_size", "4",
            "--eval_batch_size", "8", "--max_seq_length", "64", "--epochs", "2", "--warmup_steps", "4", "--learning_rate", "3e-3")


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("mrpc"))


@pytest.fixture(scope="module", params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def tiny(kind, tiny_bert, tiny_distilbert) -> str:
    return tiny_bert if kind == "bert" else tiny_distilbert


def args(model: str, mrpc_dir, output, *extra: str) -> list[str]:
    return train_args(model, output, "--data_dir", str(mrpc_dir), "--task_name", "mrpc", *SETTINGS, *extra)


@pytest.fixture(scope="module")
def lora_run(tiny, mrpc_dir, tmp_path_factory):
    """A LoRA run, never interrupted."""
    run = tmp_path_factory.mktemp("lora") / "run"
    assert main(args(tiny, mrpc_dir, run)) == 0
    return run


def results_of(path) -> list[dict]:
    """The rows of a CSV file without the measurement (``perf/``) columns."""
    with open(path, newline="") as file:
        return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in csv.DictReader(file)]


def records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def lora_model(path: str, **overrides):
    from gluebox.config import TrainConfig
    from gluebox.tasks import GLUE_TASKS
    from gluebox.training.adapters import add_lora
    from gluebox.training.pretrained import load_model

    torch.manual_seed(0)
    return add_lora(load_model(path, GLUE_TASKS["mrpc"], 0.1), TrainConfig(peft="lora", **overrides))


# What is trained ----------------------------------------------------------------------------------


def test_only_adapters_and_the_head_are_trained_and_dropout_is_on(kind, tiny):
    """Adapters on the architecture's query and value, the head (DistilBERT's pre_classifier too) in
    full, everything else frozen; every module in train mode, so the adapters' dropout, when asked
    for, is on."""
    model = lora_model(tiny, lora_dropout=0.1)
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    adapters = {name for name in trained if ".lora_" in name}
    assert adapters and {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in adapters} == set(TARGETS[kind])
    head = trained - adapters
    assert {name.split("base_model.model.")[1].split(".")[0] for name in head} == set(HEADS[kind])
    assert all(".modules_to_save.default." in name for name in head)
    assert all(module.training for module in model.modules())
    dropouts = [m for name, m in model.named_modules() if name.endswith("lora_dropout.default")]
    assert dropouts and all(m.p == 0.1 for m in dropouts)
    ids = torch.randint(1000, 2000, (2, 12))
    first, second = (model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits for _ in range(2))
    assert not torch.equal(first, second)  # dropout draws new masks in training
    by_default = [m for name, m in lora_model(tiny).named_modules() if name.endswith("lora_dropout.default")]
    assert by_default and all(isinstance(m, torch.nn.Identity) for m in by_default)  # --lora_dropout 0


def test_merged_weights_are_peft_merge_and_unload_bit_for_bit(tiny):
    """The export's weights equal peft's own merge (on a copy), and the wrapped model is untouched."""
    from gluebox.training.adapters import merged_state_dict

    model = lora_model(tiny)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.05)  # B starts at zero: make the merge matter
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = merged_state_dict(model)
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert merged.keys() == reference.keys()
    assert all(torch.equal(merged[k], reference[k]) for k in reference)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# End to end ---------------------------------------------------------------------------------------


def test_lora_run_learns_and_writes_merged_model_and_adapter(lora_run, kind):
    config = (lora_run / "config.yaml").read_text()
    assert "peft: lora" in config and "lora_r: 4" in config
    history = records(lora_run)
    assert len(history) == 2 and history[-1]["train/loss"] < history[0]["train/loss"] + 0.05
    assert (lora_run / "best_model" / "model.safetensors").exists()
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (lora_run / "best_adapter").iterdir()}
    adapter = json.loads((lora_run / "best_adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 4 and set(adapter["target_modules"]) == set(TARGETS[kind])
    environment = json.loads((lora_run / "environment.json").read_text())
    assert environment["packages"]["peft"]


def test_evaluate_a_checkpoint_scores_exactly_as_the_run(lora_run, tmp_path):
    """last.ckpt holds the wrapped model: rebuilt around best_model/, it scores bit for bit as training did."""
    output = tmp_path / "eval.json"
    assert main(["evaluate", str(lora_run / "checkpoints" / "last.ckpt"), "--output", str(output)]) == 0
    scored, last = json.loads(output.read_text())["validation"], records(lora_run)[-1]
    assert scored["fingerprint"] == last["validation/fingerprint"]
    assert scored["loss"] == last["validation/loss"]


def best_record(run) -> dict:
    history = records(run)
    best = history[0]
    for record in history[1:]:
        if record["validation/accuracy"] > best["validation/accuracy"]:
            best = record
    return best


def test_merged_model_in_plain_transformers_predicts_as_gluebox(lora_run, mrpc_dir, tmp_path):
    """best_model/ loads with AutoModelForSequenceClassification alone and predicts what `gluebox predict`
    writes; `gluebox evaluate` of the run gives the best epoch's predictions (its fingerprint)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    output = tmp_path / "eval.json"
    assert main(["evaluate", str(lora_run), "--output", str(output)]) == 0
    scored, best = json.loads(output.read_text())["validation"], best_record(lora_run)
    assert scored["fingerprint"] == best["validation/fingerprint"]
    assert scored["loss"] == pytest.approx(best["validation/loss"], rel=1e-5)

    predicted = tmp_path / "dev.jsonl"
    assert main(["predict", str(lora_run), "--split", "validation", "--output", str(predicted)]) == 0
    gluebox = [int(json.loads(line)["prediction"]) for line in predicted.read_text().splitlines()]

    rows = [line.split("\t") for line in (mrpc_dir / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]]
    tokenizer = AutoTokenizer.from_pretrained(lora_run / "best_model")
    model = AutoModelForSequenceClassification.from_pretrained(lora_run / "best_model").eval()
    inputs = tokenizer([r[3] for r in rows], [r[4] for r in rows], truncation=True, max_length=64, padding=True,
                       return_tensors="pt")
    with torch.no_grad():
        plain = model(**inputs).logits.argmax(-1).tolist()
    assert plain == gluebox and len(plain) == 16


def assert_adapter_gives_the_merged_model(base_model, run) -> None:
    """best_adapter/ on the base model (PeftModel.from_pretrained) gives best_model/'s logits."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(base_model, num_labels=2)
    adapted = PeftModel.from_pretrained(base, run / "best_adapter").eval()
    merged = AutoModelForSequenceClassification.from_pretrained(run / "best_model").eval()
    ids = torch.randint(1000, 2000, (3, 20))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        assert torch.allclose(adapted(**batch).logits, merged(**batch).logits, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_adapter_loads_in_peft_on_the_base_model(lora_run, tiny):
    """best_adapter/ on the base model (PeftModel.from_pretrained) gives best_model/'s logits."""
    assert_adapter_gives_the_merged_model(tiny, lora_run)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_modernbert_gets_default_adapters_on_its_fused_attention_projection(mrpc_dir, tmp_path):
    """A tiny ModernBERT (built in code) trains with --peft lora and no --lora_target_modules: the
    adapters sit on every layer's fused query-key-value projection Wqkv and nowhere else, the
    head (dense layer and classifier) trains in full, and the merged best_model/ gives the logits
    of best_adapter/ on the base model."""
    from conftest import make_tiny_model

    base_path = make_tiny_model(tmp_path / "modernbert", kind="modernbert")
    model = lora_model(str(base_path))
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    adapted = {name.split(".lora_")[0] for name in trained if ".lora_" in name}
    assert adapted == {f"base_model.model.model.layers.{i}.attn.Wqkv" for i in range(2)}
    assert {name.split("base_model.model.")[1].split(".")[0] for name in trained - {n for n in trained if ".lora_" in n}} \
        == {"head", "classifier"}

    run = tmp_path / "run"
    assert main(args(str(base_path), mrpc_dir, run, "--epochs", "1")) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"
    assert json.loads((run / "best_adapter" / "adapter_config.json").read_text())["target_modules"] == ["Wqkv"]
    assert_adapter_gives_the_merged_model(base_path, run)


def test_resume_after_sigkill_is_identical(tiny, mrpc_dir, lora_run, tmp_path, capsys):
    """Killed in the middle of the second epoch (checkpoints every 5 steps: the last at 17), resumed,
    the run ends identical to the uninterrupted one, step for step."""
    run = tmp_path / "run"
    process = start_gluebox(args(tiny, mrpc_dir, run, "--checkpoint_every_n_steps", "5"), (20,), tmp_path / "pauses")
    wait_until_paused(process, tmp_path / "pauses", 20)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 17

    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["compare", str(run), str(lora_run)]) == 0, capsys.readouterr().out
    resumed, uninterrupted = (results_of(path / "steps" / "metrics.csv") for path in (run, lora_run))
    assert resumed == uninterrupted and len(resumed) == 24


def test_two_processes_train_like_one(tiny_distilbert, mrpc_dir, tmp_path):
    """DDP over 2 CPU processes (Lightning's launcher) trains the adapters as one process does: the
    adapters start the same in both (drawn from the seed before the processes part ways), and with
    dropout off the step losses agree up to the order of float sums."""
    def run_args(output):
        return args(tiny_distilbert, mrpc_dir, output, "--train_batch_size", "8", "--dropout_rate", "0",
                    "--lora_dropout", "0", "--accelerator", "cpu", "--num_threads", "1", "--epochs", "1")

    single, multi = tmp_path / "single", tmp_path / "multi"
    assert main(run_args(single)) == 0
    result = subprocess.run([sys.executable, "-m", "gluebox", *run_args(multi), "--devices", "2", "--strategy", "ddp"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (results_of(run / "steps" / "metrics.csv") for run in (single, multi))
    assert len(one) == len(two) == 6
    assert [float(r["loss"]) for r in two] == pytest.approx([float(r["loss"]) for r in one], rel=1e-4)
    assert json.loads((multi / "summary.json").read_text())["processes"] == 2
    assert (multi / "best_adapter" / "adapter_model.safetensors").exists()


# Memory and sweeps --------------------------------------------------------------------------------


def test_memory_plan_counts_frozen_weights_without_gradients_or_optimizer_state():
    from transformers import DistilBertConfig

    from gluebox.training.memory import estimate_peak_bytes

    shape = DistilBertConfig()
    full = estimate_peak_bytes(67_000_000, shape, 32 * 64, 64, recompute=True)
    lora = estimate_peak_bytes(67_000_000, shape, 32 * 64, 64, recompute=True, trainable_parameters=1_000_000)
    assert full - lora == 12 * 66_000_000  # gradient and two AdamW moments of each frozen parameter
    assert estimate_peak_bytes(67_000_000, shape, 1, 1, trainable_parameters=67_000_000) == \
        estimate_peak_bytes(67_000_000, shape, 1, 1)


def test_lora_splits_batches_at_half_the_tokens_of_full_fine_tuning(tiny_bert, mrpc_dir, tmp_path):
    """--micro_batch_tokens' default is 2048, and 1024 with LoRA, whose peak is mostly activations:
    batches of 32 x 64 tokens run whole in full fine-tuning and as two micro-batches with LoRA,
    unless the flag is given."""
    def planned(name: str, *extra: str) -> dict:
        output = tmp_path / name
        main(train_args(tiny_bert, output, "--data_dir", str(mrpc_dir), "--task_name", "mrpc", "--epochs", "1",
                        "--max_train_samples", "32", "--train_batch_size", "32", "--padding", "max_length",
                        "--max_seq_length", "64", *extra))
        return json.loads((output / "memory_plan.json").read_text())

    assert planned("full")["micro_batch_tokens"] is None
    lora = planned("lora", "--peft", "lora")
    assert lora["micro_batch_tokens"] == 1024 and lora["estimated_peak_bytes"] > 0
    assert planned("lora-whole", "--peft", "lora", "--micro_batch_tokens", "0")["micro_batch_tokens"] is None
    assert planned("full-capped", "--micro_batch_tokens", "1024")["micro_batch_tokens"] == 1024


def test_the_glue_suite_plans_a_lora_task_as_train_does(lora_run, tmp_path):
    """The suite's plan, printed before its tasks run, estimates a LoRA task's peak as `train`
    estimates it (frozen weights carry no gradient or AdamW state), not as full fine-tuning."""
    from gluebox.config import TrainConfig
    from gluebox.runs.directory import RunDirectory
    from gluebox.suite.plan import make_plan
    from gluebox.suite.spec import Suite

    trained = json.loads((lora_run / "memory_plan.json").read_text())["estimated_peak_bytes"]
    config = RunDirectory(lora_run).read_config()

    def planned(**change) -> int:
        configs = {"mrpc": TrainConfig(**(config | change)).to_dict()}
        return make_plan(Suite(tmp_path / "suite", ["mrpc"], configs), {}).tasks[0].peak_bytes

    assert planned() == trained
    assert planned(peft="none") > trained


def test_a_lora_plan_returns_freed_memory_to_the_os(monkeypatch):
    """Under glibc's malloc (as in this test process), the adapters' small temporaries would fragment
    the heap: a LoRA plan hands freed memory back."""
    from transformers import BertConfig

    from gluebox import resources
    from gluebox.training import memory

    monkeypatch.setattr(resources, "memory_limit", lambda: None)
    shape = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    full = memory.plan(4, None, None, 1_000_000, shape, 64)
    lora = memory.plan(4, None, None, 1_000_000, shape, 64, trainable_parameters=3_000)
    assert full.budget_bytes is None and not full.returns_freed_memory
    assert lora.returns_freed_memory and lora.estimated_peak_bytes == full.estimated_peak_bytes - 12 * 997_000


def test_a_run_that_does_not_fit_is_offered_lora_when_lora_fits(mrpc_dir, tmp_path, capsys):
    """Budgets chosen from the planner's own numbers for a tiny BERT of 128 units (4.4M parameters,
    so that LoRA's 12 bytes less per frozen parameter outweigh the plan's safety margin):

    - just under full fine-tuning's one-example peak: refused before the data is read, and the
      line offers --peft lora with its planned peak (at --max_seq_length); the same run with
      --peft lora under that budget trains, and plans that peak;
    - between one example of one token and one of the run's longest: refused after the data is
      read (the plan is over budget), with the same offer;
    - below anything LoRA can plan: refused, no offer; a LoRA run is never offered LoRA."""
    from conftest import make_tiny_model
    from gluebox.config import TrainConfig
    from gluebox.tasks import GLUE_TASKS
    from gluebox.training import memory
    from gluebox.training.pretrained import load_config

    model = str(make_tiny_model(tmp_path / "bert-128", hidden=128))
    capsys.readouterr()
    length = 64
    model_config = load_config(model, GLUE_TASKS["mrpc"], 0.1)
    parameters, _ = memory.parameter_counts(model_config)
    one_token = memory.estimate_peak_bytes(parameters, model_config, 1, 1)
    one_example = memory.estimate_peak_bytes(parameters, model_config, length, length, recompute=True)

    def run_args(output, budget: int, *extra: str) -> list[str]:
        return train_args(model, output, "--data_dir", str(mrpc_dir), "--task_name", "mrpc", "--epochs", "1",
                          "--max_train_samples", "16", "--max_eval_samples", "8", "--train_batch_size", "8",
                          "--max_seq_length", str(length), "--padding", "max_length", "--memory_budget", str(budget),
                          *extra)

    def offered_peak(budget: int) -> str:
        line = refused(capsys, run_args(tmp_path / "full", budget), "not enough memory", tmp_path / "full")
        assert f"{budget / 1e9:.2f} GB is available (--memory_budget)" in line
        offer = re.search(r"--peft lora would fit \(planned peak (\d+\.\d\d) GB", line)
        assert offer, line
        return offer[1]

    budget = one_token - 1
    lora_run = tmp_path / "lora"
    peak = offered_peak(budget)
    assert main(run_args(lora_run, budget, "--peft", "lora")) == 0, capsys.readouterr().err
    planned = json.loads((lora_run / "memory_plan.json").read_text())
    assert planned["budget_bytes"] == budget and planned["estimated_peak_bytes"] <= budget
    assert f"{planned['estimated_peak_bytes'] / 1e9:.2f}" == peak
    config = TrainConfig(model_name_or_path=model, train_batch_size=8, max_seq_length=length, memory_budget=str(budget))
    assert memory.lora_alternative(config, model_config, length).estimated_peak_bytes == planned["estimated_peak_bytes"]

    assert one_token < one_example
    offered_peak((one_token + one_example) // 2)  # preflight passes; the plan, with the data's lengths, does not fit

    nothing_fits = memory.BASE_PROCESS_BYTES
    line = refused(capsys, run_args(tmp_path / "full", nothing_fits), "not enough memory", tmp_path / "full")
    assert "--peft lora" not in line and "lower --max_seq_length" in line
    line = refused(capsys, run_args(tmp_path / "full", nothing_fits, "--peft", "lora"), "not enough memory",
                   tmp_path / "full")
    assert "--peft lora" not in line


def test_lora_flags_are_searchable_by_a_sweep(tmp_path):
    from gluebox.sweep.spec import load_sweep, trial_config

    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("base: {peft: lora, task_name: mrpc}\n"
                          "space:\n  lora_r: {choice: [4, 8, 16]}\n  lora_alpha: {loguniform: [4, 64]}\n"
                          "  lora_dropout: {uniform: [0.0, 0.2]}\n  lora_target_modules: {choice: ['query,value', query]}\n"
                          "trials: 4\n")
    sweep = load_sweep(str(sweep_file))
    for index, params in enumerate(sweep.trial_params()):
        config = trial_config(sweep.base, params, tmp_path / f"t{index}", 1).validate()
        assert config.peft == "lora" and config.lora_r in (4, 8, 16) and 4 <= config.lora_alpha <= 64
        assert config.lora_target_modules in ("query,value", "query")


# Bad input ----------------------------------------------------------------------------------------


def refused(capsys, argv: list[str], phrase: str, output) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("gluebox: error: ") and phrase in err, err
    assert not output.exists()
    return err


def test_unknown_target_module_is_one_line_naming_the_models_layers(kind, tiny, mrpc_dir, tmp_path, capsys):
    run = tmp_path / "run"
    line = refused(capsys, args(tiny, mrpc_dir, run, "--lora_target_modules", f"{TARGETS[kind][0]},nosuch"),
                   "--lora_target_modules: 'nosuch' matches no layer", run)
    for name in TARGETS[kind]:
        assert name in line  # it names the model's linear layers
    refused(capsys, args(tiny, mrpc_dir, run, "--lora_target_modules", "classifier"),
            "'classifier' is the classification head, which is trained in full", run)
    refused(capsys, args(tiny, mrpc_dir, run, "--lora_target_modules", "LayerNorm" if kind == "bert" else "sa_layer_norm"),
            "is not a linear layer", run)


@pytest.mark.parametrize("extra, phrase", [
    (("--lora_r", "0"), "--lora_r must be at least 1"),
    (("--lora_alpha", "0"), "--lora_alpha must be a positive number"),
    (("--lora_dropout", "1"), "--lora_dropout must be in [0, 1)"),
    (("--lora_target_modules", " , "), "cannot read the list of names"),
    (("--peft", "adalora"), "argument --peft: invalid choice"),
])
def test_bad_lora_values(tiny_bert, mrpc_dir, tmp_path, capsys, extra, phrase):
    run = tmp_path / "run"
    refused(capsys, args(tiny_bert, mrpc_dir, run, *extra), phrase, run)


def test_lora_flags_without_peft_lora_are_refused(tiny_bert, mrpc_dir, tmp_path, capsys):
    run = tmp_path / "run"
    refused(capsys, train_args(tiny_bert, run, "--data_dir", str(mrpc_dir), "--lora_r", "16"),
            "--lora_r only applies to LoRA; add --peft lora", run)
