"""``best_model/README.md``: a model card in the Hugging Face Hub's format.

YAML front matter (``library_name``, ``tags``, ``datasets``, ``metrics``, ``model-index`` with the
best epoch's validation results, as the Hub reads them), then the task, the data, the metrics, the
hyperparameters and how to load the model. Uploading ``best_model/`` as it is gives a usable page.

The card holds no local paths (only file names) and nothing from the W&B settings.
"""

from __future__ import annotations

from pathlib import Path

from gluebox.config import TrainConfig
from gluebox.tasks import GLUE_TASKS, Task

HUB_GLUE = "nyu-mll/glue"

METRIC_NAMES = {"accuracy": "Accuracy", "f1": "F1", "matthews_correlation": "Matthews correlation",
                "pearson": "Pearson correlation", "spearmanr": "Spearman correlation", "loss": "Loss"}

HYPERPARAMETERS = ("learning_rate", "weight_decay", "adam_epsilon", "warmup_steps", "dropout_rate", "gradient_clip_val",
                   "train_batch_size", "micro_batch_size", "max_seq_length", "epochs", "seed", "padding",
                   "group_by_length", "precision", "max_train_samples", "max_eval_samples")
"""The config fields that shape the model (what the card lists under "Training hyperparameters")."""


def _is_glue(config: TrainConfig, task: Task) -> bool:
    return not config.uses_custom_files and task.name in GLUE_TASKS


def _data_source(config: TrainConfig, task: Task) -> str:
    if config.uses_custom_files:
        files = [Path(f).name for f in (config.train_file, config.validation_file) if f]
        return "the user's own files (" + ", ".join(f"`{f}`" for f in files) + ")"
    if config.data_dir is not None:
        return f"GLUE {task.name.upper()} from GLUE's TSV files (`{task.glue_folder}/`)"
    return f"GLUE {task.name.upper()} from the Hub dataset [`{HUB_GLUE}`](https://huggingface.co/datasets/{HUB_GLUE}) (config `{task.name}`)"


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
    kind = "regression (one score)" if task.is_regression else "classification into " + ", ".join(
        f"`{label}`" for label in task.labels)
    texts = f"`{task.text_a}`" + (f" and `{task.text_b}` (a pair)" if task.text_b else " (single texts)")
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        f"`{base}` fine-tuned on {task.name.upper() if _is_glue(config, task) else task.name} with "
        "gluebox: the best epoch's weights "
        f"(epoch {epoch} of {config.epochs}, chosen by validation {task.main_metric}).",
        "",
        "## Task",
        "",
        f"Sequence {kind}; input: {texts}.",
        "",
        "## Data",
        "",
        f"Trained on {train_examples} examples of {_data_source(config, task)}; "
        f"evaluated on the {', '.join(task.validation_splits)} split(s).",
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
        "Optimizer: AdamW (no weight decay on biases and LayerNorm weights), linear warmup then linear decay to 0, "
        "gradient clipping by global norm.",
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
        "Or, from the run directory: `gluebox predict RUN --output predictions.tsv`.",
        "",
    ]
    return "\n".join(lines)
