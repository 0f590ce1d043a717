"""LoRA through peft (``--peft lora``): which layers get adapters, the wrapped model, and its
merged weights.

The pretrained weights are frozen; each target linear layer ``W`` gets two small trainable
matrices and computes ``W x + (lora_alpha / lora_r) B A dropout(x)`` (``B`` starts at zero,
so training starts from the pretrained model); ``dropout`` (``--lora_dropout``) is peft's
``nn.Dropout``, whose masks in a training step are gluebox's like every other dropout's
(:mod:`gluebox.training.dropout`). The classification head (every module of the
model outside its encoder: BERT's ``classifier``, DistilBERT's ``pre_classifier`` and
``classifier``) is new and trained in full, as peft's ``modules_to_save``. Gradients and
AdamW state exist only for the adapters and the head.

The wrapped model trains with the same loop, optimizer and checkpoints as full fine-tuning
(a checkpoint holds the whole wrapped model, so a resumed run continues bit for bit). Its
export is the adapters folded into the weights (:func:`merged_state_dict`): a plain model
that ``AutoModelForSequenceClassification.from_pretrained`` loads.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from gluebox.config import TrainConfig
from gluebox.errors import GlueboxError

ADAPTER = "default"
"""peft's name for the one adapter of a run."""

DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "xlm-roberta": ("query", "value"),
    "camembert": ("query", "value"),
    "electra": ("query", "value"),
    "albert": ("query", "value"),
    "distilbert": ("q_lin", "v_lin"),
    "deberta-v2": ("query_proj", "value_proj"),
    "mpnet": ("q", "v"),
    "modernbert": ("Wqkv",),
}
"""The attention's query and value projections of each architecture (``config.model_type``), as in
the LoRA paper; other architectures fall back on peft's own table.

ModernBERT (not in peft's table) computes query, key and value in one fused layer, ``Wqkv``: its
adapter is the only way to reach the query and value, and at rank ``r`` it has as many parameters
(``r * (hidden + 3 * hidden)`` a layer) as the two separate query and value adapters of the other
architectures. Its other linear layers are left out as theirs are: ``Wi`` is the MLP's input, and
``Wo`` names both the attention's and the MLP's output layer under peft's suffix rule."""


def is_lora(model: Any) -> bool:
    """Whether ``model`` is a peft-wrapped model (``--peft lora``)."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def head_modules(model: nn.Module) -> list[str]:
    """The classification head: the model's top-level modules with weights, outside its encoder."""
    encoder = getattr(model, "base_model_prefix", "")
    return [name for name, child in model.named_children()
            if name != encoder and next(child.parameters(), None) is not None]


def _body_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every named module outside the classification head."""
    head = head_modules(model)
    return [(name, module) for name, module in model.named_modules() if name and name.split(".")[0] not in head]


def _is_linear(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def target_modules(model: nn.Module, requested: str | None) -> list[str]:
    """The layers that get adapters: ``--lora_target_modules``, else the architecture's default.

    A name matches a layer whose full name is it or ends with ``.name`` (peft's rule); one that
    matches no linear layer is a one-line error naming the model's linear layers.
    """
    body = _body_modules(model)
    linear = list(dict.fromkeys(name.rsplit(".", 1)[-1] for name, module in body if _is_linear(module)))
    model_type = getattr(model.config, "model_type", "") or "this model"
    if requested is None:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

        default = DEFAULT_TARGETS.get(model_type) or PEFT_TARGETS.get(model_type)
        if not default:
            raise GlueboxError(
                f"gluebox has no default LoRA layers for model type '{model_type}'; pass --lora_target_modules "
                f"with some of its linear layers: {', '.join(linear)}"
            )
        targets = list(default)
    else:
        targets = requested.split(",")
    for target in targets:
        matched = [module for name, module in body if name == target or name.endswith(f".{target}")]
        if target in head_modules(model):
            problem = "is the classification head, which is trained in full"
        elif not matched:
            problem = "matches no layer"
        elif not all(_is_linear(module) for module in matched):
            problem = "is not a linear layer"
        else:
            continue
        raise GlueboxError(f"--lora_target_modules: '{target}' {problem} of {model_type}; "
                           f"its linear layers are {', '.join(linear)}")
    return targets


def add_lora(model: nn.Module, config: TrainConfig) -> nn.Module:
    """``model`` with LoRA adapters on its target layers and a fully trained head, in train mode.

    The adapters' ``A`` matrices draw from torch's global generator (seeded by the run), so the
    same seed gives the same adapters.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout, target_modules=target_modules(model, config.lora_target_modules),
        modules_to_save=head_modules(model),
    )
    with warnings.catch_warnings():  # peft asks transformers 5 a deprecated question; nothing for the user
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        wrapped = get_peft_model(model, lora, adapter_name=ADAPTER)
    wrapped.train()
    return wrapped


def describe_lora(model) -> str:
    """One line: the adapters and how many parameters are trained."""
    lora = model.peft_config[ADAPTER]
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return (f"LoRA: rank {lora.r}, alpha {lora.lora_alpha:g} on {', '.join(sorted(lora.target_modules))}, head "
            f"{', '.join(head_modules(model.get_base_model()))} in full; {trained:,} of {total:,} parameters trained "
            f"({100 * trained / total:.2f}%)")


def merged_state_dict(model) -> dict[str, Any]:
    """The weights of the plain model with the adapters folded in (``W + scale * B A``), under the
    plain model's names; the wrapped model is left untouched (no copy of it is made).

    The same values as peft's ``merge_and_unload`` (a test checks them bit for bit).
    """
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas = {name: module.get_delta_weight(ADAPTER) for name, module in base.named_modules()
              if isinstance(module, LoraLayer)}
    saved = f".modules_to_save.{ADAPTER}."
    merged: dict[str, Any] = {}
    for key, value in base.state_dict().items():
        module, _, parameter = key.rpartition(".")
        if ".lora_" in key or ".original_module." in key:
            continue
        if module.endswith(".base_layer"):
            owner = module.removesuffix(".base_layer")
            merged[f"{owner}.{parameter}"] = (value + deltas[owner]).contiguous() if parameter == "weight" else value
        elif saved in key:
            merged[key.replace(saved, ".")] = value
        else:
            merged[key] = value
    return merged


def plain_model(model):
    """The Hugging Face model inside a wrapped one (with the adapters' layers in place), else ``model``."""
    return model.get_base_model() if is_lora(model) else model
