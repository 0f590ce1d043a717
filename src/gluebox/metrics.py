"""GLUE's metrics, computed locally and batch by batch with torchmetrics (no logits kept)."""

from __future__ import annotations

import hashlib

import torch
import torchmetrics
from torchmetrics import classification, regression

from gluebox.tasks import Task


def _metric(name: str, num_labels: int) -> torchmetrics.Metric:
    binary = num_labels == 2
    if name == "accuracy":
        return classification.BinaryAccuracy() if binary else classification.MulticlassAccuracy(num_labels, average="micro")
    if name == "f1":
        return classification.BinaryF1Score()
    if name == "matthews_correlation":
        return classification.BinaryMatthewsCorrCoef() if binary else classification.MulticlassMatthewsCorrCoef(num_labels)
    if name == "pearson":
        return regression.PearsonCorrCoef()
    if name == "spearmanr":
        return regression.SpearmanCorrCoef()
    raise ValueError(f"unknown metric {name}")


def task_metrics(task: Task) -> torchmetrics.MetricCollection:
    """The task's metrics, fed with predicted class ids (or scores) and targets."""
    return torchmetrics.MetricCollection({name: _metric(name, task.num_labels) for name in task.metrics})


def predictions(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """Class ids for classification, the score itself for regression."""
    return logits.squeeze(-1) if task.is_regression else logits.argmax(dim=-1)


class PredictionFingerprint:
    """sha256 of the predictions in dataset order: equal fingerprints mean equal predictions."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, preds: torch.Tensor) -> None:
        values = preds.detach().cpu()
        values = values.to(torch.float32) if values.is_floating_point() else values.to(torch.int64)
        self._hash.update(values.contiguous().numpy().tobytes())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
