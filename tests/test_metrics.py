"""CinC 2017 metrics on small confusion matrices computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecgbench.measure.scores import (
    bootstrap_challenge_ci,
    bootstrap_delta_ci,
    bootstrap_scores,
    challenge_f1,
    classification_scores,
    confusion_matrix,
    f1_from_confusion,
    mean_std,
)

# Eight records, classes N=0, A=1, O=2, ~=3.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 3])
Y_PRED = np.array([0, 0, 1, 1, 2, 2, 0, 3])
# Rows true, columns predicted:
#   N: 2 1 0 0     F1_N = 2*2 / (3 predicted + 3 actual) = 2/3
#   A: 0 1 1 0     F1_A = 2*1 / (2 + 2)                  = 1/2
#   O: 1 0 1 0     F1_O = 2*1 / (2 + 2)                  = 1/2
#   ~: 0 0 0 1     F1_~ = 2*1 / (1 + 1)                  = 1
CONFUSION = [[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 1]]


def test_confusion_matrix_by_hand():
    assert confusion_matrix(Y_TRUE, Y_PRED).tolist() == CONFUSION


def test_f1_and_challenge_score_by_hand():
    assert f1_from_confusion(np.array(CONFUSION)) == pytest.approx([2 / 3, 1 / 2, 1 / 2, 1.0])
    assert challenge_f1(Y_TRUE, Y_PRED) == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)  # 5/9


def test_classification_scores_by_hand():
    scores = classification_scores(Y_TRUE, Y_PRED)
    assert scores["challenge_f1"] == pytest.approx(5 / 9)
    assert scores["f1"] == pytest.approx({"N": 2 / 3, "A": 1 / 2, "O": 1 / 2, "~": 1.0})
    assert scores["af_f1"] == pytest.approx(1 / 2)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2 + 1) / 4)  # 2/3
    assert scores["accuracy"] == pytest.approx(5 / 8)
    assert scores["confusion"] == CONFUSION
    assert scores["n_records"] == 8


def test_noise_class_is_not_averaged_into_the_challenge_score():
    # Every noisy record wrong: F1_~ = 0, but N, A, O are unaffected except N's false positive.
    # N: TP 1, predicted 2, actual 1 -> 2/3; A: 1; O: 1 -> challenge (2/3 + 1 + 1) / 3 = 8/9.
    scores = classification_scores([0, 1, 2, 3], [0, 1, 2, 0])
    assert scores["f1"]["~"] == 0.0
    assert scores["challenge_f1"] == pytest.approx(8 / 9)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)


def test_class_never_predicted_scores_zero():
    # A present once, never predicted: TP 0, FN 1 -> F1_A = 0.
    # N: TP 1, predicted 2, actual 1 -> 2/3; O: TP 2, predicted 2, actual 2 -> 1.
    scores = classification_scores([0, 1, 2, 2], [0, 0, 2, 2])
    assert scores["f1"] == pytest.approx({"N": 2 / 3, "A": 0.0, "O": 1.0, "~": 0.0})
    assert scores["challenge_f1"] == pytest.approx(5 / 9)
    assert scores["macro_f1"] == pytest.approx(5 / 12)  # ~ neither present nor predicted counts 0


def test_class_never_present_scores_zero_and_never_inflates():
    # A predicted once but never present: TP 0, FP 1 -> 0. ~ absent everywhere: 0/0 -> 0, not 1.
    # N: TP 1, predicted 1, actual 2 -> 2/3; O: 1.
    scores = classification_scores([0, 0, 2], [0, 1, 2])
    assert scores["f1"] == pytest.approx({"N": 2 / 3, "A": 0.0, "O": 1.0, "~": 0.0})
    assert scores["challenge_f1"] == pytest.approx(5 / 9)


def test_stacked_confusions_give_per_matrix_f1():
    stack = np.array([CONFUSION, np.diag([1, 1, 1, 1])])
    f1 = f1_from_confusion(stack)
    assert f1.shape == (2, 4)
    assert f1[0] == pytest.approx([2 / 3, 1 / 2, 1 / 2, 1.0])
    assert f1[1] == pytest.approx([1, 1, 1, 1])


def test_empty_input_scores_zero():
    scores = classification_scores(np.array([], dtype=int), np.array([], dtype=int))
    assert scores["n_records"] == 0 and scores["accuracy"] == 0.0 and scores["challenge_f1"] == 0.0
    assert bootstrap_challenge_ci([], []) == (0.0, 0.0)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_records():
    widths = []
    for repeats in (5, 80, 1000):  # 8000 records: the resamples are drawn in several chunks
        # Repeating the eight records keeps the point estimate at 5/9 exactly.
        y_true, y_pred = np.tile(Y_TRUE, repeats), np.tile(Y_PRED, repeats)
        point = challenge_f1(y_true, y_pred)
        assert point == pytest.approx(5 / 9)
        lo, hi = bootstrap_challenge_ci(y_true, y_pred, resamples=300, seed=0)
        assert lo <= point <= hi
        widths.append(hi - lo)
    # Width shrinks like 1/sqrt(records): 1/4 from 40 to 640 records, ~1/3.5 from 640 to 8000.
    assert widths[1] < widths[0] / 2
    assert widths[2] < widths[1] / 2


def test_bootstrap_is_reproducible_and_level_sets_the_width():
    y_true, y_pred = np.tile(Y_TRUE, 10), np.tile(Y_PRED, 10)
    assert bootstrap_challenge_ci(y_true, y_pred, 300, seed=1) == bootstrap_challenge_ci(y_true, y_pred, 300, seed=1)
    lo95, hi95 = bootstrap_challenge_ci(y_true, y_pred, 300, seed=1, level=0.95)
    lo50, hi50 = bootstrap_challenge_ci(y_true, y_pred, 300, seed=1, level=0.5)
    assert lo95 < lo50 < hi50 < hi95


def test_bootstrap_of_perfect_predictions_is_a_point():
    # 25 records per class, all correct: every resample (which almost surely holds all
    # of N, A and O) scores 1.
    y = np.repeat([0, 1, 2, 3], 25)
    assert bootstrap_challenge_ci(y, y, resamples=200) == (1.0, 1.0)


def test_mean_std_across_seeds():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std: sqrt(((1)^2 + 0 + 1^2) / 2)
    assert mean_std([0.7]) == (0.7, 0.0)
    mean, std = mean_std([])
    assert math.isnan(mean) and math.isnan(std)


def _agreeing_models(n: int = 400, changed: int = 8, seed: int = 3):
    """Labels, a reference model right on 75 % of records, and a model that differs from it on ``changed`` records only."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    reference = np.where(rng.random(n) < 0.75, y, (y + 1) % 3)
    model = reference.copy()
    model[:changed] = y[:changed]  # fixes a few of the reference's errors (or keeps them right)
    return y, model, reference


def test_paired_delta_interval_is_much_narrower_than_an_unpaired_one():
    y, model, reference = _agreeing_models()
    delta = challenge_f1(y, model) - challenge_f1(y, reference)
    lo, hi = bootstrap_delta_ci(y, model, reference, 1000, 0, 0.95)
    assert lo <= delta <= hi
    # Unpaired: each model on its own resamples, as if the two were scored on different test sets.
    own, other = bootstrap_scores(y, [model], 1000, 0)[0], bootstrap_scores(y, [reference], 1000, 1)[0]
    u_lo, u_hi = np.quantile(own - other, [0.025, 0.975])
    assert u_lo < 0 < u_hi  # the unpaired interval cannot tell the models apart
    assert (hi - lo) < 0.25 * (u_hi - u_lo)
    assert lo >= 0  # the paired one sees that the model never does worse: it only fixes errors


def test_paired_delta_interval_of_identical_models_is_zero_and_rows_share_resamples():
    y, model, _ = _agreeing_models()
    assert bootstrap_delta_ci(y, model, model, 200, 5) == (0.0, 0.0)
    scores = bootstrap_scores(y, [model, model], 50, 5)
    assert np.array_equal(scores[0], scores[1])  # the same records in every resample
    assert bootstrap_challenge_ci(y, model, 50, 5) == tuple(np.quantile(scores[0], [0.025, 0.975]))


def test_paired_delta_interval_needs_predictions_of_the_same_records():
    with pytest.raises(ValueError, match="same records: 3, 3, 2"):
        bootstrap_delta_ci(np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([0, 1]))
