"""Classification metrics of CinC 2017, defined once so every row is comparable.

The challenge score is the mean F1 of N, A and O; the noise class ``~`` is
predicted and reported but not averaged in (Clifford et al., CinC 2017).
F1 of a class is ``2 TP / (2 TP + FP + FN)``, and 0 when that is 0/0 (a class
neither present nor predicted), so a missing class never inflates a score.
"""

from __future__ import annotations

import numpy as np

from ecgbench import CLASSES

CHALLENGE_CLASSES = (0, 1, 2)  # N, A, O
AF_CLASS = 1


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(CLASSES)) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    for name, values in (("labels", y_true), ("predictions", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} must be class indices 0..{n_classes - 1}, got {values.min()}..{values.max()}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 from one confusion matrix ``[C, C]`` or a stack ``[R, C, C]``."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    predicted = cm.sum(axis=-2)
    actual = cm.sum(axis=-1)
    denom = predicted + actual
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def challenge_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 of N, A and O."""
    f1 = f1_from_confusion(confusion_matrix(y_true, y_pred))
    return float(f1[list(CHALLENGE_CLASSES)].mean())


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Every classification metric ecgbench reports, as a JSON-ready dict."""
    cm = confusion_matrix(y_true, y_pred)
    f1 = f1_from_confusion(cm)
    n = int(cm.sum())
    return {
        "challenge_f1": float(f1[list(CHALLENGE_CLASSES)].mean()),
        "f1": {name: float(value) for name, value in zip(CLASSES, f1)},
        "af_f1": float(f1[AF_CLASS]),
        "macro_f1": float(f1.mean()),
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "confusion": cm.tolist(),
        "n_records": n,
    }


def bootstrap_challenge_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the challenge score, resampling records with replacement."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    n = len(y_true)
    if n == 0:
        return (0.0, 0.0)
    k = len(CLASSES)
    rng = np.random.default_rng(seed)
    scores = np.empty(resamples)
    cell = y_true * k + y_pred
    chunk = max(1, 2_000_000 // n)  # bound memory of the index matrix
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        flat = cell[idx] + (np.arange(stop - start) * k * k)[:, None]
        cms = np.bincount(flat.ravel(), minlength=(stop - start) * k * k).reshape(stop - start, k, k)
        scores[start:stop] = f1_from_confusion(cms)[:, list(CHALLENGE_CLASSES)].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(scores, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def paired_bootstrap_delta_ci(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``challenge_f1(pred_a) - challenge_f1(pred_b)``, both scored on the
    same resampled records each time (paired: the records' difficulty cancels out)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(y_true)
    if n == 0:
        return (0.0, 0.0)
    k = len(CLASSES)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    cells = [y_true * k + np.asarray(p, dtype=np.int64) for p in (pred_a, pred_b)]
    chunk = max(1, 1_000_000 // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        offsets = (np.arange(stop - start) * k * k)[:, None]
        scores = []
        for cell in cells:
            cms = np.bincount((cell[idx] + offsets).ravel(), minlength=(stop - start) * k * k).reshape(stop - start, k, k)
            scores.append(f1_from_confusion(cms)[:, list(CHALLENGE_CLASSES)].mean(axis=1))
        deltas[start:stop] = scores[0] - scores[1]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(deltas, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) across seeds."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return (float("nan"), float("nan"))
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return (float(arr.mean()), std)
