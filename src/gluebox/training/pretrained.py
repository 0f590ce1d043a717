"""Load a pretrained encoder and its tokenizer, from a local folder or the Hugging Face hub."""

from __future__ import annotations

import os
from pathlib import Path

from gluebox.errors import GlueboxError
from gluebox.tasks import Task

DROPOUT_FIELDS = (
    "hidden_dropout_prob",  # BERT, RoBERTa, ELECTRA, ...
    "attention_probs_dropout_prob",
    "dropout",  # DistilBERT
    "attention_dropout",
    "seq_classif_dropout",  # DistilBERT's classification head
    "hidden_dropout",  # DeBERTa-v2 style names
    "attention_probs_dropout",
)
"""Config fields that hold a dropout probability, across encoder families."""


def is_local(model_name_or_path: str) -> bool:
    return Path(model_name_or_path).expanduser().exists()


def _hub_error(name: str, what: str, error: Exception) -> GlueboxError:
    """Explain a failed load: a local folder missing files, or a hub id we cannot reach."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    if is_local(name):
        return GlueboxError(f"{name} is not a loadable {what} folder ({reason}); it needs config.json, weights and tokenizer files")
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    cause = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the hub could not be reached or has no such model"
    return GlueboxError(
        f"model '{name}' is not in the local Hugging Face cache and {cause} ({reason}); "
        f"run `gluebox cache --model_name_or_path {name}` while online, or pass a local folder"
    )


def load_tokenizer(name: str):
    """The model's fast tokenizer."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=is_local(name))
    except (OSError, ValueError, KeyError) as error:
        raise _hub_error(name, "tokenizer", error) from None


def load_config(name: str, task: Task, dropout_rate: float):
    """The model config with the task's labels and our dropout rate on every dropout field."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, local_files_only=is_local(name))
    except (OSError, ValueError, KeyError) as error:
        raise _hub_error(name, "model", error) from None
    config.num_labels = task.num_labels
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    if not task.is_regression:
        config.id2label = dict(enumerate(task.labels))
        config.label2id = {label: i for i, label in enumerate(task.labels)}
    for field in DROPOUT_FIELDS:
        if isinstance(getattr(config, field, None), float):
            setattr(config, field, dropout_rate)
    return config


def load_model(name: str, task: Task, dropout_rate: float, max_seq_length: int | None = None):
    """A sequence-classification model in train mode (``from_pretrained`` returns eval mode)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    config = load_config(name, task, dropout_rate)
    limit = getattr(config, "max_position_embeddings", None)
    if max_seq_length is not None and limit is not None and max_seq_length > limit:
        raise GlueboxError(f"--max_seq_length {max_seq_length} is more than {name} supports ({limit}); lower it")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name, config=config, local_files_only=is_local(name)
        )
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise _hub_error(name, "model", error) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    model.train()
    return model


def check_tokenizer_fits(tokenizer, model, name: str) -> None:
    """A tokenizer whose ids run past the model's embedding table is the wrong tokenizer."""
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings:
        raise GlueboxError(
            f"the tokenizer of {name} has {len(tokenizer)} tokens but the model's embedding table has "
            f"{embeddings}; use the tokenizer that belongs to this model"
        )
