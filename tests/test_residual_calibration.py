"""The fitted output calibration of residual maps: table reading, the fit, the analyzer, the fitting command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from exposure_cli.residual_calibration import (
    GREY_STEP, R_STEP, CalibrationFit, ResidualCalibration, isotonic,
)

SHAPE = (int(round(2 / R_STEP)) + 1, int(round(1 / GREY_STEP)) + 1)


def test_table_is_read_exactly_at_its_nodes_and_bilinearly_between() -> None:
    rng = np.random.default_rng(0)
    table = rng.uniform(-0.05, 0.05, SHAPE).astype(np.float32)
    cal = ResidualCalibration(table)
    i, j = 23, 11  # r = 0.15, grey = 11/16
    r, g = np.float32(-1 + i * R_STEP), np.float32(j * GREY_STEP)
    assert cal.apply(np.array([[r]]), np.array([[g]]))[0, 0] == pytest.approx(r + table[i, j], abs=1e-6)
    # half-way in both directions: the mean of the four corners
    mid_r, mid_g = r + R_STEP / 2, g + GREY_STEP / 2
    expected = mid_r + table[i:i + 2, j:j + 2].mean()
    assert cal.apply(np.array([mid_r]), np.array([mid_g]))[0] == pytest.approx(expected, abs=1e-6)
    # outside the grid the edge nodes hold, and the result stays a residual
    big = ResidualCalibration(np.full(SHAPE, 0.3, np.float32))
    out = big.apply(np.array([0.9, -1.0]), np.array([1.7, -0.2]))
    assert out.tolist() == pytest.approx([1.0, -0.7])


def test_bad_tables_and_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="must be"):
        ResidualCalibration(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        ResidualCalibration(np.full(SHAPE, np.nan))
    card = {"residual_calibration": {**ResidualCalibration(np.zeros(SHAPE)).to_card(), "r_step": 0.1}}
    with pytest.raises(ValueError, match="grid"):
        ResidualCalibration.from_card(card)
    assert ResidualCalibration.from_card({}) is None


def test_card_round_trip_keeps_the_table() -> None:
    table = np.random.default_rng(1).uniform(-0.1, 0.1, SHAPE).astype(np.float32)
    back = ResidualCalibration.from_card(json.loads(json.dumps(
        {"residual_calibration": ResidualCalibration(table, "somewhere").to_card()})))
    assert back.fitted_on == "somewhere"
    np.testing.assert_allclose(back.table, table, atol=1e-5)


def test_isotonic_pools_adjacent_violators_by_weight() -> None:
    assert isotonic(np.array([1.0, 3.0, 2.0, 4.0]), np.ones(4)).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert isotonic(np.array([3.0, 1.0]), np.array([3.0, 1.0])).tolist() == [2.5, 2.5]
    increasing = np.linspace(-1, 1, 9)
    assert isotonic(increasing, np.ones(9)).tolist() == increasing.tolist()


def _timid_maps(rng: np.random.Generator, n: int = 24):
    """(map, grey, label) triples of a network that reads bright pixels' over-exposure at 60 %."""
    for _ in range(n):
        g = rng.uniform(0, 1, (40, 50)).astype(np.float32)
        label = np.where(g > 0.75, -rng.uniform(0.1, 0.5, g.shape), rng.uniform(-0.3, 0.3, g.shape)).astype(np.float32)
        r = np.where(g > 0.75, 0.6 * label, label).astype(np.float32)
        yield r, g, label


def test_fit_removes_a_systematic_error_and_leaves_a_right_map_alone() -> None:
    rng = np.random.default_rng(2)
    fit = CalibrationFit()
    for r, g, y in _timid_maps(rng, 100):
        fit.add(r, g, y)
    cal = fit.fit(pseudo_count=0.05)  # 100 small images put about 1 image's weight on a node: little shrinking
    test = list(_timid_maps(np.random.default_rng(3), 6))
    before = np.mean([np.abs(r - y)[g > 0.8].mean() for r, g, y in test])
    after = np.mean([np.abs(cal.apply(r, g) - y)[g > 0.8].mean() for r, g, y in test])
    assert after < 0.5 * before, (before, after)
    # where the network was right (mid greys) the table stays near zero
    mid = cal.table[:, int(0.25 / GREY_STEP):int(0.5 / GREY_STEP) + 1]
    assert np.abs(mid).max() < 0.02
    # and where nothing was seen (r far from the data) it is exactly zero
    assert np.all(cal.table[:8] == 0.0)


def test_fit_never_reorders_two_pixels_of_one_grey() -> None:
    rng = np.random.default_rng(4)
    fit = CalibrationFit()
    for _ in range(10):  # labels that *fall* as the map rises: the raw node means would reverse the order
        r = rng.uniform(-0.5, 0.5, (30, 30)).astype(np.float32)
        g = np.full_like(r, 0.5)
        fit.add(r, g, -0.5 * r)
    cal = fit.fit()
    levels = np.linspace(-1, 1, SHAPE[0])[:, None] + cal.table
    assert np.all(np.diff(levels, axis=0) >= -1e-6)
    r = np.linspace(-0.6, 0.6, 121, dtype=np.float32)
    out = cal.apply(r, np.full_like(r, 0.47))
    assert np.all(np.diff(out) >= -1e-6)


def test_every_image_weighs_the_same_whatever_its_size() -> None:
    small, large = CalibrationFit(), CalibrationFit()
    r, g = np.zeros((4, 4), np.float32), np.full((4, 4), 0.5, np.float32)
    small.add(r, g, np.full((4, 4), 0.2, np.float32))
    small.add(np.zeros((40, 40), np.float32), np.full((40, 40), 0.5, np.float32), np.full((40, 40), -0.2, np.float32))
    assert small.fit(pseudo_count=0.0).table[20, 8] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        large.add(r, g, np.zeros((3, 3), np.float32))


def _ambiguous_steps(rng: np.random.Generator, per_cell: int, size: int):
    """(map, grey, label, cell) of a network that reads each image's exposure step with an image-level error:
    unbiased *given the step* (cells ``−2 … +2``), so a conditional mean of the label shrinks the outer steps."""
    for step in range(-2, 3):
        for _ in range(per_cell):
            level = 0.15 * step
            label = np.full((size, size), level, np.float32) + rng.normal(0, 0.01, (size, size)).astype(np.float32)
            r = label + np.float32(rng.normal(0, 0.12))
            g = rng.uniform(0.2, 0.8, label.shape).astype(np.float32)  # grey says nothing of the step
            yield r.astype(np.float32), g, label, f"step {step:+d}"


def _fill(fit: CalibrationFit, data) -> CalibrationFit:
    for r, g, y, cell in data:
        fit.add(r, g, y, cell=cell)
    return fit


def test_unbiased_fit_keeps_every_cell_unbiased_where_the_conditional_mean_shrinks_the_outer_ones() -> None:
    fit = _fill(CalibrationFit(), _ambiguous_steps(np.random.default_rng(7), per_cell=400, size=8))
    fresh = _fill(CalibrationFit(), _ambiguous_steps(np.random.default_rng(8), per_cell=400, size=8))
    shrunk = fresh.held_out(fit.fit(pseudo_count=0.05)).cell_bias
    # the conditional mean pulls the outer steps towards the middle: +2 reads less under, −2 less over
    assert shrunk["step +2"] < -0.03 and shrunk["step -2"] > 0.03, shrunk
    unbiased = fresh.held_out(fit.fit_unbiased(bias_weight=10.0, smoothness=0.1, grey_monotone=False)).cell_bias
    assert max(abs(b) for b in unbiased.values()) < 0.012, unbiased
    # with no table the cells were unbiased already, and an unbiased fit stays close to no table
    assert max(abs(b) for b in fresh.held_out(None).cell_bias.values()) < 0.02


def test_unbiased_fit_respects_both_monotonicities() -> None:
    rng = np.random.default_rng(9)
    fit = CalibrationFit()
    for _ in range(40):  # labels that rise with grey and fall with r: both constraints are binding
        r = rng.uniform(-0.6, 0.6, (16, 16)).astype(np.float32)
        g = rng.uniform(0, 1, (16, 16)).astype(np.float32)
        fit.add(r, g, (0.3 * g - 0.4 * r).astype(np.float32), cell="all")
    free = fit.fit_unbiased(1.0, smoothness=0.01, grey_monotone=False).table
    assert (free[10:30, -2] - free[10:30, 1]).mean() > 0.15  # without the grey constraint the table rises with grey
    held = fit.fit_unbiased(1.0, smoothness=0.01, grey_monotone=True).table
    levels = np.linspace(-1, 1, SHAPE[0])[:, None] + held
    assert np.diff(levels, axis=0).min() >= -1e-6
    assert np.diff(held, axis=1).max() <= 1e-6


def test_held_out_measures_the_pixel_error_and_merge_adds_two_fits() -> None:
    rng = np.random.default_rng(10)
    data = list(_ambiguous_steps(rng, per_cell=6, size=8))
    one = _fill(CalibrationFit(), data)
    halves = _fill(CalibrationFit(), data[::2]).merge(_fill(CalibrationFit(), data[1::2]))
    expected = np.mean([np.square(y - r).mean() for r, _, y, _ in data])
    assert one.held_out(None).mse == pytest.approx(expected, rel=1e-6)
    assert halves.held_out(None).mse == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(halves.fit_unbiased(3.0).table, one.fit_unbiased(3.0).table, atol=1e-6)
    table = ResidualCalibration(np.full(SHAPE, 0.05, np.float32))
    shifted = np.mean([np.square(y - r - 0.05).mean() for r, _, y, _ in data])
    assert one.held_out(table).mse == pytest.approx(shifted, rel=1e-5)
    with pytest.raises(ValueError):
        CalibrationFit().fit_unbiased(1.0)


# ---------------------------------------------------------------- the analyzer and the fitting command


@pytest.fixture(scope="module")
def shipped_folder() -> Path:
    from exposure_cli.weights import resolve_weights

    return resolve_weights(None).parent


def _with_table(shipped: Path, out: Path, table: np.ndarray) -> Path:
    out.mkdir()
    shutil.copy(shipped / "model.safetensors", out / "model.safetensors")
    card = json.loads((shipped / "card.json").read_text())
    card.pop("thumbnail_weights", None)
    card["residual_calibration"] = ResidualCalibration(table, "a test").to_card()
    (out / "card.json").write_text(json.dumps(card))
    return out


def test_analyzer_applies_the_cards_table_to_the_working_map(shipped_folder: Path, tmp_path: Path) -> None:
    from exposure_cli.analyzers.eat import EATAnalyzer
    from test_data_corpus import photo_like

    folder = _with_table(shipped_folder, tmp_path / "w", np.full(SHAPE, -0.1, np.float32))
    photo = photo_like(480, 640, seed=5).astype(np.float32) / 255.0
    calibrated = EATAnalyzer(device="cpu", weights=folder)
    raw = EATAnalyzer(device="cpu", weights=folder, residual_calibration=False)
    (small, low), = calibrated.working_maps([photo])
    (_, low_raw), = raw.working_maps([photo])
    np.testing.assert_allclose(low, np.clip(low_raw - 0.1, -1, 1), atol=1e-6)
    assert calibrated.info.extra["residual_calibration"] == "a test"
    assert "residual_calibration" not in raw.info.extra  # a card without one scans as before
    # the full-size map is the calibrated working map brought up, so it moved by the same amount
    assert float(raw.analyze(photo).mean() - calibrated.analyze(photo).mean()) == pytest.approx(0.1, abs=0.01)


def test_fitting_command_reads_train_renders_only_and_writes_a_card_the_analyzer_uses(
        shipped_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from exposure_cli.analyzers.eat import EATAnalyzer
    from exposure_cli.data.corpus import load_index
    from exposure_cli.data.valset import SIMULATED_PER_PHOTO, SWEEP_EVS
    from exposure_cli.training.fit_residual_calibration import main
    from test_data_corpus import make_corpus

    corpus = make_corpus(tmp_path, monkeypatch, n_photos=4)
    train = [p for p in load_index(corpus)["photos"] if p["split"] == "train"]
    out = tmp_path / "calibrated"
    assert main(["--weights", str(shipped_folder), "--out", str(out), "--corpus", str(corpus)]) == 0
    card = json.loads((out / "card.json").read_text())
    entry = card["residual_calibration"]
    assert entry["images"] == {"photo": len(train) * (1 + len(SWEEP_EVS) + SIMULATED_PER_PHOTO)}
    assert "train renders" in entry["fitted_on"]
    assert (out / "model.safetensors").read_bytes() == (shipped_folder / "model.safetensors").read_bytes()
    analyzer = EATAnalyzer(device="cpu", weights=out)  # loads as written: the thumbnail weights came along
    assert analyzer.residual_calibration is not None
    assert np.abs(analyzer.residual_calibration.table).max() > 0  # it learned something from the renders


def test_fitting_command_fits_unbiased_cells_and_chooses_its_weights_on_train_folds(
        shipped_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from exposure_cli.data.corpus import load_index
    from exposure_cli.data.valset import SWEEP_EVS
    from exposure_cli.training import fit_residual_calibration as command
    from test_data_corpus import make_corpus

    corpus = make_corpus(tmp_path, monkeypatch, n_photos=6)
    train = [p["id"] for p in load_index(corpus)["photos"] if p["split"] == "train"]
    out = tmp_path / "unbiased"
    assert command.main(["--weights", str(shipped_folder), "--out", str(out), "--corpus", str(corpus),
                         "--bias-weight", "3", "--smoothness", "0.1", "--grey-monotone"]) == 0
    entry = json.loads((out / "card.json").read_text())["residual_calibration"]
    assert entry["bias_weight"] == 3.0 and entry["grey_monotone"] is True
    assert set(entry["train_cell_bias"]) == {"photo original"} | {f"photo {ev:+g} EV" for ev in SWEEP_EVS}
    table = ResidualCalibration.from_card({"residual_calibration": entry}).table
    assert np.diff(table, axis=1).max() <= 1e-6
    assert np.diff(np.linspace(-1, 1, SHAPE[0])[:, None] + table, axis=0).min() >= -1e-6

    for wrong in (["--choose", "--bias-weight", "1"], ["--smoothness", "0.1"], ["--grey-monotone"]):
        with pytest.raises(SystemExit):  # one or the other; a modifier of the unbiased fit without it
            command.main(["--weights", str(shipped_folder), "--out", str(out), "--corpus", str(corpus), *wrong])
    # --choose: every pair of the grid fitted on one fold, measured on the other; a bound nothing meets
    # writes nothing, a bound everything meets writes the lowest held-out error's pair
    assert {command.fold_of(pid) for pid in train} == {0, 1}  # these ids fall in both folds
    chosen_out = tmp_path / "chosen"
    monkeypatch.setattr(command, "CHOICE_GRID", ((1.0, 0.1), (3.0, 1.0)))
    args = ["--weights", str(shipped_folder), "--out", str(chosen_out), "--corpus", str(corpus), "--choose"]
    assert command.main(args + ["--bias-bound", "0"]) == 1
    assert "nothing written" in capsys.readouterr().out and not chosen_out.exists()
    assert command.main(args + ["--bias-bound", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("held-out MSE") == 3 and "chosen: bias weight" in printed
    assert "two-fold" in json.loads((chosen_out / "card.json").read_text())["residual_calibration"]["chosen_by"]
    # a fold with nothing in it is a clear error, not a crash
    monkeypatch.setattr(command, "fold_of", lambda unit: 0)
    assert command.main(args) == 2 and "both folds" in capsys.readouterr().out
