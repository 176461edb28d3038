"""The transfer metrics of Taylor & Stone on hand-made curves: each one can fail."""
import numpy as np
import pytest

from tuning.metrics import Curve, steps_to_scratch_final, threshold, transfer_metrics


def curve(steps, values):
    return Curve(np.asarray(steps, float), np.asarray(values, float))


SCRATCH = curve([0, 100, 200, 300, 400], [-10, -8, -6, -4, -2])     # improves 8 (final of last 3: -4)


def test_threshold_is_start_plus_ninety_percent_of_improvement():
    # final = mean of the last 3 = -4; thr = -10 + 0.9 * 6
    assert threshold(SCRATCH) == pytest.approx(-10 + 0.9 * 6)


def test_jumpstart_asymptote_and_steps():
    reuse = curve([0, 100, 200, 300, 400], [-5, -4, -3, -3, -2])
    m = transfer_metrics(reuse, SCRATCH, low=-10, high=0)
    assert m["jumpstart"] == pytest.approx(5.0)
    assert m["asymptotic_gain"] == pytest.approx(np.mean([-3, -3, -2]) - np.mean([-6, -4, -2]))
    assert m["steps_to_threshold"] == 100           # -4 >= -4.6 first at step 100
    assert m["scratch_steps_to_threshold"] == 300   # -4 >= -4.6 first at step 300
    assert m["censored"] is False
    assert m["auc_norm"] > m["scratch_auc_norm"] > 0
    assert m["transfer_ratio"] == pytest.approx((m["auc_norm"] - m["scratch_auc_norm"]) / m["scratch_auc_norm"])


def test_never_reaching_the_threshold_is_censored_not_zero():
    worse = curve([0, 100, 200, 300, 400], [-12, -12, -11, -11, -11])
    m = transfer_metrics(worse, SCRATCH, low=-10, high=0)
    assert m["steps_to_threshold"] is None and m["censored"] is True
    assert m["jumpstart"] < 0 and m["transfer_ratio"] < 0


def test_auc_is_normalised_between_references():
    at_high = curve([0, 200, 400], [0, 0, 0])
    at_low = curve([0, 200, 400], [-10, -10, -10])
    assert at_high.normalised_area(-10, 0, 400) == pytest.approx(1.0)
    assert at_low.normalised_area(-10, 0, 400) == pytest.approx(0.0)
    # a curve that stops early holds its last value to the budget
    assert curve([0, 200], [0, 0]).normalised_area(-10, 0, 400) == pytest.approx(1.0)


def test_a_curve_needs_its_step_zero():
    with pytest.raises(ValueError, match="step-0"):
        Curve.of([{"step": 5, "eval_return": 1.0}])


def test_steps_to_scratch_final_for_a_lower_is_better_curve():
    scratch = curve([0, 100, 200, 300], [3.0, 2.0, 1.5, 1.0])      # final (last 3) = 1.5
    adapted = curve([0, 100, 200, 300], [1.4, 1.2, 1.1, 1.0])
    mine, theirs = steps_to_scratch_final(adapted, scratch, higher_is_better=False)
    assert (mine, theirs) == (0, 200)
