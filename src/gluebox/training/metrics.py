"""GLUE's metrics, computed locally and batch by batch with torchmetrics (no logits kept)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torchmetrics
from torchmetrics import classification, regression

from gluebox.tasks import Task


class MatthewsCorrelation(torchmetrics.Metric):
    """Matthews correlation exactly as scikit-learn computes it for GLUE's CoLA score.

    torchmetrics' MatthewsCorrCoef gives non-zero values when every prediction (or every
    target) is one class; scikit-learn, and so GLUE, gives 0 there. The confusion matrix is
    the only state, so nothing grows with the data.
    """

    full_state_update = False

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        cells = target.long() * self.num_classes + preds.long()
        counts = torch.bincount(cells, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes).to(torch.float64)

    def compute(self) -> torch.Tensor:
        confusion = self.confusion
        true_sum, pred_sum = confusion.sum(dim=1), confusion.sum(dim=0)
        correct, total = confusion.trace(), confusion.sum()
        covariance = correct * total - (true_sum * pred_sum).sum()
        pred_variance = total**2 - (pred_sum * pred_sum).sum()
        true_variance = total**2 - (true_sum * true_sum).sum()
        denominator = torch.sqrt(pred_variance * true_variance)
        if denominator == 0:
            return torch.zeros((), dtype=torch.float64)
        return covariance / denominator


def _metric(name: str, num_labels: int) -> torchmetrics.Metric:
    binary = num_labels == 2
    if name == "accuracy":
        return classification.BinaryAccuracy() if binary else classification.MulticlassAccuracy(num_labels, average="micro")
    if name == "f1":
        return classification.BinaryF1Score()
    if name == "matthews_correlation":
        return MatthewsCorrelation(num_labels)
    if name == "pearson":
        return regression.PearsonCorrCoef()
    if name == "spearmanr":
        import warnings

        with warnings.catch_warnings():  # that it keeps every score is known: a float per validation example
            warnings.filterwarnings("ignore", message="Metric `SpearmanCorrcoef` will save all targets")
            return regression.SpearmanCorrCoef()
    raise ValueError(f"unknown metric {name}")


def task_metrics(task: Task) -> torchmetrics.MetricCollection:
    """The task's metrics, fed with predicted class ids (or scores) and targets."""
    return torchmetrics.MetricCollection({name: _metric(name, task.num_labels) for name in task.metrics})


def predictions(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """Class ids for classification, the score itself for regression."""
    return logits.squeeze(-1) if task.is_regression else logits.argmax(dim=-1)


class PredictionFingerprint:
    """sha256 of the predictions in dataset order: equal fingerprints mean equal predictions.

    Predictions are kept with their examples' positions in the split (8 bytes each), so that
    the shards of several processes can be gathered and put back in dataset order: the hash
    is the same whether one process or many produced the predictions, and :meth:`combine`
    refuses predictions that miss or repeat an example.
    """

    def __init__(self) -> None:
        self._indices: list[np.ndarray] = []
        self._preds: list[np.ndarray] = []

    def update(self, preds: torch.Tensor, indices: torch.Tensor) -> None:
        values = preds.detach().cpu()
        values = values.to(torch.float32) if values.is_floating_point() else values.to(torch.int64)
        self._preds.append(values.contiguous().numpy())
        self._indices.append(indices.detach().cpu().to(torch.int64).numpy())

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, predictions) of this process, for gathering."""
        if not self._indices:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(self._indices), np.concatenate(self._preds)

    @staticmethod
    def combine(states: list[tuple[np.ndarray, np.ndarray]]) -> tuple[str, int]:
        """The hexdigest of the predictions of all ``states`` in dataset order, and their count.

        Raises ``RuntimeError`` unless the positions are exactly ``0 .. n-1``, each once.
        """
        preds = PredictionFingerprint.ordered(states)
        return PredictionFingerprint.digest(preds), len(preds)

    @staticmethod
    def ordered(states: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """The predictions of all ``states`` in dataset order (what the fingerprint hashes)."""
        filled = [(i, p) for i, p in states if len(i)]
        if not filled:
            return np.zeros(0, dtype=np.int64)
        indices = np.concatenate([i for i, _ in filled])
        preds = np.concatenate([p for _, p in filled])
        order = np.argsort(indices, kind="stable")
        if not np.array_equal(indices[order], np.arange(len(indices))):
            raise RuntimeError(
                f"validation predictions do not cover each of the {len(indices)} examples exactly once"
            )
        return np.ascontiguousarray(preds[order])

    @staticmethod
    def digest(preds: np.ndarray) -> str:
        """The fingerprint of predictions in dataset order."""
        return hashlib.sha256(np.ascontiguousarray(preds).tobytes()).hexdigest()

    def hexdigest(self) -> str:
        """The fingerprint of this process's predictions alone."""
        return self.combine([self.state()])[0]
