"""The course project's training, as its script ran it: the baseline gluebox is measured against.

gluebox grows out of a course project that fine-tuned ``distilbert-base-uncased`` on GLUE MRPC
with a Lightning + Hugging Face script (lr 2e-5, batch 32, max length 128, 50 warmup steps,
weight decay 0, eps 1e-8, clip 1.0, seed 42, 3 epochs). That script is not in this
repository; this module reproduces its training behaviours as issue 13 lists them, in the
structure of Lightning's "Finetune Transformers Models with PyTorch Lightning" tutorial (a
``GLUEDataModule`` and a ``GLUETransformer``). It is kept small and separate and does not
import gluebox, because it stands in for a different program. Torch runs with its default
thread count (gluebox picks its own). Each behaviour is documented where it happens:

==============================  ===============================================================
course script                   here
==============================  ===============================================================
``datasets.load_dataset(        :func:`read_mrpc` reads the GLUE MRPC TSVs into the same fields
"glue", "mrpc")``               (offline: the Hub is unreachable)
pad every example to 128        :meth:`GLUEDataModule.convert_to_features`
shuffled batches of 32          :meth:`GLUEDataModule.train_dataloader` (``shuffle=True``)
dense embedding gradients       :class:`GLUETransformer` (the model's own ``nn.Embedding``)
dropout off while training      :class:`GLUETransformer` (the model stays in eval mode)
plain ``torch.optim.AdamW``     :meth:`GLUETransformer.configure_optimizers`
linear warmup 50, then decay    :meth:`GLUETransformer.configure_optimizers` (interval step)
clip 1.0, automatic             :func:`trainer_kwargs` (``gradient_clip_val=1.0``)
optimization
``seed_everything(42)``,        :func:`build` (``deterministic`` left at Lightning's default)
no deterministic mode
Lightning's defaults            :func:`trainer_kwargs`: 2 sanity-check batches, a ModelCheckpoint
                                saving weights + optimizer state at every epoch end, the default
                                logger, progress bar and model summary
accuracy / F1 on dev            :meth:`GLUETransformer.on_validation_epoch_end` (GLUE's MRPC
                                metric, computed locally)
==============================  ===============================================================

Differences that cannot be avoided, none of them part of a training step: the data comes from
the GLUE TSV files instead of the Hub's arrow files (same rows and fields; both splits keep the
order of Microsoft's file), and a row is a dict of tensors instead of an arrow row; the
metric is computed here instead of by ``evaluate.load("glue", "mrpc")`` (which downloads its
code); the course script's Weights & Biases logger is replaced by Lightning's default logger
(no network here).

Command line (prints one JSON line per epoch: wall time, validation metrics, peak RSS so far;
then one for the whole run, whose peak RSS includes the last checkpoint's saving)::

    python benchmarks/course_baseline.py --model PATH --data_dir ../shared/data/glue/MRPC \\
        [--epochs 3] [--max_steps N] [--output_dir DIR]

``bench_train.py`` drives it step by step through :func:`build` (its way "course-script").
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

MODEL = "distilbert-base-uncased"
"""The course project's model (pass a local folder with ``--model``: the Hub is unreachable)."""

NUM_LABELS = 2
MAX_SEQ_LENGTH = 128
TRAIN_BATCH_SIZE = 32
EVAL_BATCH_SIZE = 32
LEARNING_RATE = 2e-5
ADAM_EPSILON = 1e-8
WARMUP_STEPS = 50
WEIGHT_DECAY = 0.0
GRADIENT_CLIP_VAL = 1.0
SEED = 42
EPOCHS = 3
"""The course project's hyperparameters, fixed: this is a baseline, not a tool."""


def read_mrpc(path: Path) -> list[dict]:
    """One GLUE MRPC TSV file as the rows of ``load_dataset("glue", "mrpc")``'s split.

    The Hub's ``glue/mrpc`` builds its train and validation splits from the same Microsoft
    files in the same order as GLUE's ``train.tsv`` and ``dev.tsv``, with the fields
    ``sentence1``, ``sentence2``, ``label`` (1 = paraphrase) and ``idx`` (row number). The
    files start with a UTF-8 BOM and their sentences hold raw ``"`` characters, so lines are
    split on tabs with no quote handling (never a CSV reader).
    """
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split("\t")
    label, first, second = header.index("Quality"), header.index("#1 String"), header.index("#2 String")
    rows = []
    for idx, line in enumerate(lines[1:]):
        fields = line.split("\t")
        rows.append({"sentence1": fields[first], "sentence2": fields[second], "label": int(fields[label]),
                     "idx": idx})
    return rows


class TensorRows(Dataset):
    """The tokenized split as ``Dataset.set_format("torch", columns=...)`` served it: each row a
    dict of tensors, which the DataLoader's default collate stacks into a batch."""

    def __init__(self, columns: dict[str, torch.Tensor]):
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: values[index] for name, values in self.columns.items()}


class GLUEDataModule(L.LightningDataModule):
    """The course script's data module: MRPC tokenized up front, padded to 128, in shuffled batches."""

    text_fields = ("sentence1", "sentence2")

    def __init__(self, model_name_or_path: str, data_dir: str, model_inputs: tuple[str, ...]):
        super().__init__()
        from transformers import AutoTokenizer

        self.data_dir = Path(data_dir)
        self.model_inputs = model_inputs
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, use_fast=True)
        self.dataset: dict[str, TensorRows] = {}
        self.batch_sampler = None
        """None: the course script's ``shuffle=True`` batches. The benchmark sets its own batch
        sampler here (a shuffled permutation cut into batches of 32, handed out in turns)."""

    def setup(self, stage: str | None = None) -> None:
        """Read train and dev (the Hub's ``train`` and ``validation``) and tokenize them.

        As in the tutorial, :func:`build` calls this and ``trainer.fit`` calls it again, so the
        data is tokenized twice before training starts."""
        for split, file in (("train", "train.tsv"), ("validation", "dev.tsv")):
            self.dataset[split] = self.convert_to_features(read_mrpc(self.data_dir / file))

    def convert_to_features(self, rows: list[dict]) -> TensorRows:
        """Tokenize sentence pairs, **every example padded to 128** (``padding="max_length"``,
        the course script's ``pad_to_max_length=True``), longer pairs truncated longest-first.

        The course script kept the tokenizer's columns the model takes: ``distilbert-base-uncased``'s
        tokenizer makes no ``token_type_ids``; a folder that pairs a DistilBERT with a BERT
        tokenizer (bench_train.py's random model) makes them, and they are dropped because
        DistilBERT's ``forward`` has no such argument. The tensors fed are the course script's.
        """
        features = self.tokenizer([r[self.text_fields[0]] for r in rows], [r[self.text_fields[1]] for r in rows],
                                  max_length=MAX_SEQ_LENGTH, padding="max_length", truncation=True)
        columns = {name: torch.tensor(features[name]) for name in self.model_inputs if name in features}
        columns["labels"] = torch.tensor([r["label"] for r in rows])
        return TensorRows(columns)

    def train_dataloader(self) -> DataLoader:
        """Plain shuffled batches: ``DataLoader(train, batch_size=32, shuffle=True)``, no length grouping."""
        if self.batch_sampler is not None:
            return DataLoader(self.dataset["train"], batch_sampler=self.batch_sampler)
        return DataLoader(self.dataset["train"], batch_size=TRAIN_BATCH_SIZE, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """The dev split in order, batches of 32."""
        return DataLoader(self.dataset["validation"], batch_size=EVAL_BATCH_SIZE)


def model_inputs(model_name_or_path: str) -> tuple[str, ...]:
    """The tokenizer columns that the model's ``forward`` names (DistilBERT: no ``token_type_ids``)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    model_class = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(AutoConfig.from_pretrained(model_name_or_path))]
    accepted = inspect.signature(model_class.forward).parameters
    return tuple(name for name in ("input_ids", "token_type_ids", "attention_mask") if name in accepted)


def mrpc_metric(predictions: torch.Tensor, references: torch.Tensor) -> dict[str, float]:
    """GLUE's MRPC metric, as ``evaluate.load("glue", "mrpc").compute`` returns it: accuracy and
    the F1 of the positive class (sklearn's binary ``f1_score``: 0 when there is no positive)."""
    tp = int(((predictions == 1) & (references == 1)).sum())
    fp = int(((predictions == 1) & (references == 0)).sum())
    fn = int(((predictions == 0) & (references == 1)).sum())
    accuracy = float((predictions == references).float().mean())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"accuracy": accuracy, "f1": f1}


class GLUETransformer(L.LightningModule):
    """The course script's LightningModule.

    ``AutoModelForSequenceClassification.from_pretrained`` returns the model **in eval mode**,
    and nothing in the script calls ``train()``: Lightning's fit loop keeps each submodule's
    mode (it switches modes only around validation, and puts them back as they were). So the
    course script trained with every dropout layer off, which makes its steps cheaper; this
    module keeps that. Its word embedding is the model's own ``nn.Embedding``
    (``sparse=False``): **dense gradients** over the whole vocabulary every step. Automatic
    optimization: Lightning runs backward, clips and steps.
    """

    def __init__(self, model_name_or_path: str):
        super().__init__()
        from transformers import AutoConfig, AutoModelForSequenceClassification

        self.save_hyperparameters()
        self.config = AutoConfig.from_pretrained(model_name_or_path, num_labels=NUM_LABELS)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, config=self.config)
        self.outputs: list[dict] = []

    def forward(self, **inputs):
        return self.model(**inputs)

    def training_step(self, batch, batch_idx):
        """The model's own loss (mean cross-entropy over the batch), returned to Lightning."""
        outputs = self(**batch)
        return outputs[0]

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        outputs = self(**batch)
        val_loss, logits = outputs[:2]
        self.outputs.append({"loss": val_loss, "preds": torch.argmax(logits, dim=1), "labels": batch["labels"]})

    def on_validation_epoch_end(self):
        """Loss (mean of the batch means, as the script did) and GLUE's MRPC accuracy and F1.

        This also runs after Lightning's 2 sanity-check batches, as it did for the course."""
        preds = torch.cat([x["preds"] for x in self.outputs]).detach().cpu()
        labels = torch.cat([x["labels"] for x in self.outputs]).detach().cpu()
        loss = torch.stack([x["loss"] for x in self.outputs]).mean()
        self.log("val_loss", loss, prog_bar=True)
        self.log_dict(mrpc_metric(preds, labels), prog_bar=True)
        self.outputs.clear()

    def configure_optimizers(self):
        """``torch.optim.AdamW`` with its **default implementation** (no ``fused``/``foreach``
        argument: on CPU that is the per-parameter loop), lr 2e-5, eps 1e-8, weight decay 0 on
        the usual groups (no decay for biases and LayerNorm weights); a linear warmup over 50
        steps then linear decay to 0 at ``trainer.estimated_stepping_batches``, stepped every
        optimizer step (``interval: step``)."""
        from transformers import get_linear_schedule_with_warmup

        no_decay = ["bias", "LayerNorm.weight"]
        groups = [
            {"params": [p for n, p in self.model.named_parameters() if not any(nd in n for nd in no_decay)],
             "weight_decay": WEIGHT_DECAY},
            {"params": [p for n, p in self.model.named_parameters() if any(nd in n for nd in no_decay)],
             "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE, eps=ADAM_EPSILON)
        scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=WARMUP_STEPS,
                                                    num_training_steps=self.trainer.estimated_stepping_batches)
        return [optimizer], [{"scheduler": scheduler, "interval": "step", "frequency": 1}]


def trainer_kwargs(output_dir: str, epochs: int = EPOCHS, max_steps: int = -1, callbacks=()) -> dict:
    """The course script's ``L.Trainer`` arguments; everything else is Lightning's default.

    ``gradient_clip_val=1.0`` (global norm, automatic optimization). Left at their defaults,
    as the script left them: ``deterministic`` (off), ``num_sanity_val_steps`` (2 validation
    batches before training), ``enable_checkpointing`` (a ``ModelCheckpoint`` that saves the
    weights, optimizer and scheduler state at every epoch end, keeping the latest), the
    default logger, the progress bar and the model summary, fp32 precision, one CPU device.
    ``max_steps`` (-1: whole epochs) is only for smoke checks and the benchmark.
    """
    return {"max_epochs": epochs, "max_steps": max_steps, "accelerator": "auto", "devices": 1,
            "gradient_clip_val": GRADIENT_CLIP_VAL, "default_root_dir": output_dir, "callbacks": list(callbacks)}


def build(model_name_or_path: str, data_dir: str, output_dir: str, epochs: int = EPOCHS, max_steps: int = -1,
          callbacks=()) -> tuple[GLUETransformer, GLUEDataModule, dict]:
    """The course script up to ``trainer.fit``, in its order: ``L.seed_everything(42)`` (which
    seeds the new classifier head and, through torch's generator, the shuffling), the data
    module set up, the model loaded. Returns the module, the data module and the Trainer's
    arguments; run them with ``L.Trainer(**kwargs).fit(module, datamodule=data)``."""
    L.seed_everything(SEED)
    data = GLUEDataModule(model_name_or_path, data_dir, model_inputs(model_name_or_path))
    data.setup("fit")
    module = GLUETransformer(model_name_or_path)
    return module, data, trainer_kwargs(output_dir, epochs, max_steps, callbacks)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class EpochReport(L.Callback):
    """Not part of the course script: prints, at each epoch end, one JSON line with the epoch's
    wall time (training, then validation and the checkpoint), its validation metrics and the
    peak RSS so far."""

    def __init__(self):
        self.epochs: list[dict] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start, self.first_step = time.perf_counter(), trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        report = {"epoch": trainer.current_epoch, "steps": trainer.global_step - self.first_step,
                  "seconds": time.perf_counter() - self.start, **metrics, "peak_rss_mb": peak_rss_mb()}
        self.epochs.append(report)
        print(json.dumps(report), flush=True)


def run(model_name_or_path: str, data_dir: str, output_dir: str, epochs: int = EPOCHS, max_steps: int = -1,
        batch_sampler=None, callbacks=()) -> L.Trainer:
    """Train as the course script did; ``batch_sampler`` replaces its shuffled batches (benchmark)."""
    module, data, kwargs = build(model_name_or_path, data_dir, output_dir, epochs, max_steps, callbacks)
    data.batch_sampler = batch_sampler
    trainer = L.Trainer(**kwargs)
    trainer.fit(module, datamodule=data)
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODEL, help="Model folder (or hub id, when the Hub is reachable).")
    parser.add_argument("--data_dir", required=True, help="Folder with MRPC's train.tsv and dev.tsv.")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--max_steps", type=int, default=-1, help="Stop after N optimizer steps (smoke checks).")
    parser.add_argument("--output_dir", default=None, help="Checkpoints and logs (default: a temporary folder).")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = run(args.model, args.data_dir, args.output_dir or tmp, args.epochs, args.max_steps,
                      callbacks=[EpochReport()])
    print(json.dumps({"run": "end", "steps": trainer.global_step, "seconds": time.perf_counter() - start,
                      "peak_rss_mb": peak_rss_mb()}), flush=True)


if __name__ == "__main__":
    main()
