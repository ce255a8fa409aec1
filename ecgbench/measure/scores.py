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


def bootstrap_scores(y_true: np.ndarray, predictions: list[np.ndarray], resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Challenge scores ``[len(predictions), resamples]``: every prediction scored on the same resampled records.

    Each resample draws ``len(y_true)`` records with replacement; row ``k`` holds
    the scores of ``predictions[k]`` on those draws, so rows are paired.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    preds = [np.asarray(p, dtype=np.int64) for p in predictions]
    n = len(y_true)
    scores = np.zeros((len(preds), resamples))
    if n == 0:
        return scores
    k = len(CLASSES)
    rng = np.random.default_rng(seed)
    cells = [y_true * k + p for p in preds]
    chunk = max(1, 2_000_000 // n)  # bound memory of the index matrix
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        offsets = (np.arange(stop - start) * k * k)[:, None]
        for row, cell in enumerate(cells):
            flat = cell[idx] + offsets
            cms = np.bincount(flat.ravel(), minlength=(stop - start) * k * k).reshape(stop - start, k, k)
            scores[row, start:stop] = f1_from_confusion(cms)[:, list(CHALLENGE_CLASSES)].mean(axis=1)
    return scores


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``values`` (percentile method)."""
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def bootstrap_challenge_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the challenge score, resampling records with replacement."""
    if len(y_true) == 0:
        return (0.0, 0.0)
    return percentile_interval(bootstrap_scores(y_true, [y_pred], resamples, seed)[0], level)


def bootstrap_delta_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    reference_pred: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Paired percentile bootstrap interval of ``challenge_f1(y_pred) - challenge_f1(reference_pred)``.

    Both models are scored on the same resampled records in every resample, so
    the records' difficulty, shared by the two, cancels out of the difference:
    the interval is that of the change, much narrower than one built from two
    independent intervals when the models mostly agree.
    """
    if len(y_pred) != len(y_true) or len(reference_pred) != len(y_true):
        raise ValueError(f"labels and both predictions must cover the same records: {len(y_true)}, {len(y_pred)}, {len(reference_pred)}")
    if len(y_true) == 0:
        return (0.0, 0.0)
    scores = bootstrap_scores(y_true, [y_pred, reference_pred], resamples, seed)
    return percentile_interval(scores[0] - scores[1], level)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) across seeds."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return (float("nan"), float("nan"))
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return (float(arr.mean()), std)
