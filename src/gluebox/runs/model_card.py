"""``best_model/README.md``: a model card in the Hugging Face Hub's format.

YAML front matter (``library_name``, ``tags``, ``datasets``, ``metrics``, ``model-index`` with the
best epoch's validation results, as the Hub reads them), then the task, the data, the metrics, the
hyperparameters and how to load the model. Uploading ``best_model/`` as it is gives a usable page.

The card holds no local paths (only file names) and nothing from the W&B settings.
"""

from __future__ import annotations

from pathlib import Path

from gluebox.config import TrainConfig
from gluebox.tasks import DataFile, Task

HUB_GLUE = "nyu-mll/glue"

METRIC_NAMES = {"accuracy": "Accuracy", "f1": "F1", "matthews_correlation": "Matthews correlation",
                "pearson": "Pearson correlation", "spearmanr": "Spearman correlation", "loss": "Loss"}

HYPERPARAMETERS = ("learning_rate", "lr_scheduler", "weight_decay", "adam_epsilon", "warmup_steps", "warmup_ratio",
                   "dropout_rate", "gradient_clip_val", "train_batch_size", "micro_batch_size", "max_seq_length", "epochs",
                   "max_steps", "seed", "padding",
                   "group_by_length", "precision", "max_train_samples", "max_eval_samples")
"""The config fields that shape the model (what the card lists under "Training hyperparameters")."""


def _is_glue(config: TrainConfig, task: Task) -> bool:
    """Trained on GLUE's own data (its folders or the Hub dataset), not on files of the user's."""
    return not config.uses_custom_files and task.glue


def _task_title(config: TrainConfig, task: Task) -> str:
    """``MRPC`` for GLUE's data; ``GLUE RTE (the user's own files)``; else the task's own name."""
    if _is_glue(config, task):
        return task.name.upper()
    return f"GLUE {task.name.upper()} (the user's own files)" if task.glue else f"`{task.name}`"


def _data_source(config: TrainConfig, task: Task, train_examples: int) -> str:
    """Where the training and validation data came from: file names and row counts for the user's own files."""
    if config.uses_custom_files:
        files = task.data or tuple(DataFile(split, Path(f).name, 0)  # a task.json without file names
                                   for split, f in (("train", config.train_file), ("validation", config.validation_file)) if f)
        train = [f for f in files if f.split == "train"]
        validation = [f for f in files if f.split != "train"]
        return (f"Trained on {_rows(train, train_examples)} of the user's own file "
                f"{', '.join(_file(f) for f in train)}; validated on "
                f"{_rows(validation, config.max_eval_samples)} of {', '.join(_file(f) for f in validation) or 'none'}.")
    if config.data_dir is not None:
        source = f"GLUE {task.name.upper()} from GLUE's TSV files (`{task.glue_folder}/`)"
    else:
        source = (f"GLUE {task.name.upper()} from the Hub dataset [`{HUB_GLUE}`](https://huggingface.co/datasets/{HUB_GLUE}) "
                  f"(config `{task.name}`)")
    return f"Trained on {train_examples} examples of {source}; evaluated on the {', '.join(task.validation_splits)} split(s)."


def _file(file: DataFile) -> str:
    return f"`{file.file}`"


def _rows(files: tuple[DataFile, ...] | list[DataFile], used: int | None) -> str:
    """``the 40 rows``, or ``the first 30 of the 40 rows`` when fewer were used."""
    rows = sum(f.rows for f in files)
    if not rows:
        return f"{used} examples" if used else "the rows"
    return f"the first {used} of the {rows} rows" if used is not None and used < rows else f"the {rows} rows"


def split_metrics(task: Task, validation: dict) -> dict[str, dict[str, float]]:
    """The validation results by split: each metric of the task, then the loss."""
    return {split: {m: validation[f"{split}/{m}"] for m in (*task.metrics, "loss") if f"{split}/{m}" in validation}
            for split in task.validation_splits}


def front_matter(config: TrainConfig, task: Task, validation: dict, name: str) -> dict:
    """The card's YAML metadata, as the Hub's model cards hold it."""
    glue = _is_glue(config, task)
    base = config.model_name_or_path
    meta: dict = {"library_name": "transformers"}
    if not Path(base).expanduser().exists():  # a Hub id, not a local folder
        meta["base_model"] = base
    meta["tags"] = ["text-classification", "gluebox", *(["glue", task.name] if glue else [])]
    if glue:
        meta["datasets"] = [HUB_GLUE]
        meta["language"] = ["en"]
    meta["metrics"] = list(task.metrics)
    meta["pipeline_tag"] = "text-classification"
    results = []
    for split, values in split_metrics(task, validation).items():
        dataset = {"name": f"GLUE {task.name.upper()}" if glue else task.name, "type": HUB_GLUE if glue else task.name}
        if glue:
            dataset["config"] = task.name
        dataset["split"] = split
        results.append({
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": dataset,
            "metrics": [{"type": m, "value": float(values[m]), "name": f"Validation {METRIC_NAMES.get(m, m)}"}
                        for m in task.metrics if m in values],
        })
    meta["model-index"] = [{"name": name, "results": results}]
    return meta


def model_card(config: TrainConfig, task: Task, validation: dict, epoch: int, train_examples: int,
               name: str) -> str:
    """The card of a model exported after ``epoch`` with ``validation``'s results (the best epoch so far)."""
    import yaml

    meta = front_matter(config, task, validation, name)
    base = config.model_name_or_path if "base_model" in meta else Path(config.model_name_or_path).name
    kind = "regression (one score)" if task.is_regression else f"classification into {len(task.labels)} classes: " + ", ".join(
        f"`{label}`" for label in task.labels)
    texts = f"`{task.text_a}`" + (f" and `{task.text_b}` (a pair)" if task.text_b else " (single texts)")
    if task.data and task.label_column:
        texts += f"; {'score' if task.is_regression else 'label'} column `{task.label_column}`"
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        f"`{base}` fine-tuned on {_task_title(config, task)} with "
        "gluebox: the best epoch's weights "
        f"(epoch {epoch} of {config.epochs}, chosen by validation {task.main_metric}).",
        "",
        "## Task",
        "",
        f"Sequence {kind}; input: {texts}.",
        "",
        "## Data",
        "",
        _data_source(config, task, train_examples),
        "",
        "## Metrics",
        "",
        "| split | " + " | ".join(METRIC_NAMES.get(m, m) for m in (*task.metrics, "loss")) + " |",
        "|---|" + "---|" * (len(task.metrics) + 1),
    ]
    for split, values in split_metrics(task, validation).items():
        cells = [f"{values[m]:.4f}" if m in values else "" for m in (*task.metrics, "loss")]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    lines += ["", "## Training hyperparameters", "", "| setting | value |", "|---|---|"]
    for field in HYPERPARAMETERS:
        value = getattr(config, field, None)
        if value is not None:
            lines.append(f"| `{field}` | {value} |")
    example = '"The first sentence.", "The second one."' if task.text_b else '"A sentence to classify."'
    if task.is_regression:
        read = "score = model(**inputs).logits.item()"
    else:
        read = "label = model.config.id2label[model(**inputs).logits.argmax(-1).item()]"
    lines += [
        "",
        "Optimizer: AdamW (no weight decay on biases and LayerNorm weights), transformers' "
        f"`{config.lr_scheduler}` learning-rate schedule, gradient clipping by global norm.",
        "",
        "## How to use",
        "",
        "```python",
        "import torch",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        'path = "best_model"  # this folder, or its Hub repository id once uploaded',
        "tokenizer = AutoTokenizer.from_pretrained(path)",
        "model = AutoModelForSequenceClassification.from_pretrained(path).eval()",
        f"inputs = tokenizer({example}, truncation=True, max_length={config.max_seq_length}, return_tensors=\"pt\")",
        "with torch.no_grad():",
        f"    {read}",
        "```",
        "",
        "Or, from the run directory: " + ("`gluebox predict RUN --file DATA.csv --output predictions.csv` (DATA.csv "
                                          f"with the column(s) {' and '.join(f'`{c}`' for c in (task.text_a, task.text_b) if c)})."
                                          if config.uses_custom_files else "`gluebox predict RUN --output predictions.tsv`."),
        "",
    ]
    return "\n".join(lines)
