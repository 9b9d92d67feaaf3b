"""Real-bracket metrics (exposure_cli.stack_evaluation) on stacks rendered from a real photo."""

import numpy as np
import pytest

from exposure_cli.data.simulator import render_ev
from exposure_cli.stack_evaluation import MeanGreyHeuristic, SceneResult, frame_result, summarise

EVS = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0)


@pytest.fixture(scope="module")
def stack():
    from skimage import data

    photo = data.astronaut()[::2, ::2].astype(np.float32) / 255.0
    frames = [render_ev(photo, ev) for ev in EVS]
    return [f for f, _ in frames], [lab for _, lab in frames]


def _scene(frames, preds, labels, best=3):
    s = SceneResult("s", "outdoor", best)
    for img, pred, lab, ev in zip(frames, preds, labels, EVS):
        s.frames.append(frame_result(img, pred, lab, ev - EVS[best]))
    return s


def test_a_perfect_map_passes_every_count(stack):
    frames, labels = stack
    s = _scene(frames, labels, labels)
    summary = summarise([s])
    assert summary["ordered"] == 1 and summary["reversals"] == 0
    assert summary["best_pick"] == 1 and summary["darkest_flagged"] == 1 and summary["brightest_flagged"] == 1
    assert summary["ev_correction_error"] < 0.4
    assert summary["mae"] == 0.0
    bias = {b["ev"]: b for b in summary["per_ev_bias"]}
    assert bias[-2]["mean_pred"] == pytest.approx(bias[-2]["mean_label"])


def test_a_map_that_calls_everything_fine_fails_them(stack):
    frames, labels = stack
    zeros = [np.zeros_like(lab) for lab in labels]
    summary = summarise([_scene(frames, zeros, labels)])
    assert summary["ordered"] == 0 and summary["reversals"] == len(EVS) - 1
    assert summary["darkest_flagged"] == 0 and summary["brightest_flagged"] == 0
    # "no correction" on frames 1-3 stops off costs their offsets
    assert summary["ev_correction_error"] > 1.0


def test_a_swapped_pair_is_one_reversal(stack):
    frames, labels = stack
    preds = list(labels)
    preds[1], preds[2] = preds[2], preds[1]
    s = _scene(frames, preds, labels)
    assert s.reversals() == 1 and not s.ordered()


def test_the_heuristic_orders_a_pure_exposure_sweep(stack):
    frames, labels = stack
    preds = MeanGreyHeuristic().analyze_batch(frames)
    s = _scene(frames, preds, labels)
    assert s.ordered()
    assert s.darkest_flagged()


def test_the_known_ev_error_leaves_out_scenes_with_estimated_steps(stack):
    frames, labels = stack
    exact = _scene(frames, labels, labels)  # perfect maps, EXIF-like steps
    zeros = [np.zeros_like(lab) for lab in labels]
    guessed = _scene(frames, zeros, labels)  # "no correction" everywhere, steps estimated
    guessed.ev_known = False
    summary = summarise([exact, guessed])
    assert summary["ev_known_scenes"] == 1
    assert summary["ev_correction_frames_known"] == len(exact.ev_errors())
    assert summary["ev_correction_error_known"] == pytest.approx(np.mean(exact.ev_errors()))
    assert summary["ev_correction_error"] > summary["ev_correction_error_known"] + 0.3


def test_per_category_splits_the_counts_and_shows_a_category_read_wrong(stack):
    """A night scene whose best frame the model calls under-exposed shows up in its own category row, with
    the best frame's mean predicted vs labelled residual, while the other category stays perfect."""
    frames, labels = stack
    good = _scene(frames, labels, labels)
    good.category = "outdoor"
    biased = [lab + 0.3 for lab in labels]  # every frame read 0.3 too dark, the best frame too
    night = _scene(frames, biased, labels)
    night.scene, night.category, night.ev_known = "n", "night", True
    good.ev_known = False
    summary = summarise([good, night])
    rows = {r["category"]: r for r in summary["per_category"]}
    assert set(rows) == {"outdoor", "night"}
    assert rows["outdoor"]["scenes"] == rows["night"]["scenes"] == 1
    assert rows["outdoor"]["best_frame_mean_pred"] == pytest.approx(rows["outdoor"]["best_frame_mean_label"])
    assert rows["night"]["best_frame_mean_pred"] == pytest.approx(rows["night"]["best_frame_mean_label"] + 0.3,
                                                                   abs=1e-5)
    assert rows["night"]["ev_correction_error"] > rows["outdoor"]["ev_correction_error"] + 0.5
    # known-exposure errors are counted only where the exposures are known
    assert rows["outdoor"]["ev_correction_error_known"] is None
    assert rows["night"]["ev_correction_error_known"] == pytest.approx(rows["night"]["ev_correction_error"])
    # the categories add up to the whole
    assert sum(r["ordered"] for r in rows.values()) == summary["ordered"]
    assert sum(r["best_pick"] for r in rows.values()) == summary["best_pick"]
