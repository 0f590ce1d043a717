"""Load a pretrained encoder and its tokenizer, from a local folder or the Hugging Face hub."""

from __future__ import annotations

import os
from pathlib import Path

from gluebox.errors import GlueboxError
from gluebox.tasks import Task

DROPOUT_FIELDS = (
    "hidden_dropout_prob",  # BERT, RoBERTa, ELECTRA, ALBERT, MPNet, DeBERTa-v2, ...
    "attention_probs_dropout_prob",
    "classifier_dropout",  # the head's, where a config sets it (ModernBERT; None elsewhere: the hidden rate)
    "classifier_dropout_prob",  # ALBERT's head
    "pooler_dropout",  # DeBERTa-v2's head
    "dropout",  # DistilBERT
    "attention_dropout",  # DistilBERT, ModernBERT
    "seq_classif_dropout",  # DistilBERT's head
    "mlp_dropout",  # ModernBERT
    "embedding_dropout",
    "hidden_dropout",  # DeBERTa-v2 style names
    "attention_probs_dropout",
)
"""Config fields that hold a dropout probability, across encoder families: ``--dropout_rate`` sets
every one a config holds as a number (ALBERT's config writes 0 as an integer); ``None`` keeps its meaning."""


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
    return _with_task(_saved_config(name), task, dropout_rate)


def _saved_config(name: str):
    """The model's config as saved."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, local_files_only=is_local(name))
    except (OSError, ValueError, KeyError) as error:
        raise _hub_error(name, "model", error) from None


def _with_task(config, task: Task, dropout_rate: float):
    """``config`` changed in place: the task's labels and problem type, ``dropout_rate`` on every dropout field."""
    config.num_labels = task.num_labels
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    if not task.is_regression:
        config.id2label = dict(enumerate(task.labels))
        config.label2id = {label: i for i, label in enumerate(task.labels)}
    for field in DROPOUT_FIELDS:
        value = getattr(config, field, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(config, field, dropout_rate)
    return config


def load_model(name: str, task: Task, dropout_rate: float, max_seq_length: int | None = None):
    """A sequence-classification model in train mode (``from_pretrained`` returns eval mode).

    A saved model whose classification head does not fit the task (another number of classes, or
    classification against regression) gets a new head, with one line saying so, as ``run_glue.py``'s
    ``--ignore_mismatched_sizes`` does; any other weight that does not fit its config is refused.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    saved = _saved_config(name)
    head = saved_head(saved)
    config = _with_task(saved, task, dropout_rate)
    limit = getattr(config, "max_position_embeddings", None)
    if max_seq_length is not None and limit is not None and max_seq_length > limit:
        raise GlueboxError(f"--max_seq_length {max_seq_length} is more than {name} supports ({limit}); lower it")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name, config=config, local_files_only=is_local(name), ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise _hub_error(name, "model", error) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    mismatched = sorted(info.get("mismatched_keys") or ())
    if mismatched:
        _check_only_the_head_differs(name, mismatched, task.num_labels)
        outputs = mismatched[0][1][0]
        print(f"note: {name} has a classification head for {head or f'{outputs} output(s)'} and this task is "
              f"{describe_head(task.num_labels, task.is_regression)}: it gets a new head (the rest of the model "
              "is loaded)", flush=True)
    model.train()
    return model


def describe_head(num_labels: int, regression: bool) -> str:
    """A classification head in words: ``regression (1 output)``, ``classification into 3 classes``."""
    return "regression (1 output)" if regression else f"classification into {num_labels} classes"


def saved_head(config) -> str | None:
    """The sequence-classification head a saved config describes (:func:`describe_head`), or None when its
    model has none (a plain encoder, or a model saved for another kind of task)."""
    if not any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or ()):
        return None
    regression = config.problem_type == "regression" or (config.problem_type is None and config.num_labels == 1)
    return describe_head(config.num_labels, regression)


def _check_only_the_head_differs(name: str, mismatched, num_labels: int) -> None:
    """Only the head's output layer may have another shape than the saved weights (``num_labels`` rows where
    they have another number): any other weight that does not fit belongs to another config.json."""
    for key, saved_shape, shape in mismatched:
        if not (len(shape) and shape[0] == num_labels and tuple(shape[1:]) == tuple(saved_shape[1:])):
            raise GlueboxError(f"{name}: the saved weight {key} has shape {tuple(saved_shape)} where its config.json "
                               f"gives {tuple(shape)}; the weights do not belong to this config.json")


def check_tokenizer_fits(tokenizer, model, name: str) -> None:
    """A tokenizer whose ids run past the model's embedding table is the wrong tokenizer."""
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings:
        raise GlueboxError(
            f"the tokenizer of {name} has {len(tokenizer)} tokens but the model's embedding table has "
            f"{embeddings}; use the tokenizer that belongs to this model"
        )
