"""`exposure eval`: metrics with known answers on a tiny generated labelled set."""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pytest
from typer.testing import CliRunner

from exposure_cli.analyzers import ANALYZERS, Analyzer, AnalyzerInfo
from exposure_cli.cli import app
from exposure_cli.color import grey
from exposure_cli.data.iea40k import IEA40KWriter
from exposure_cli.data.simulator import render_ev
from exposure_cli.evaluation import evaluate, psnr, roc_auc, spearman, ssim

from conftest import photo_like


class _ZeroAnalyzer(Analyzer):
    """Says "well exposed" everywhere."""

    @property
    def info(self) -> AnalyzerInfo:
        return AnalyzerInfo("test-zero", "0")

    def analyze_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.zeros(im.shape[:2], np.float32) for im in images]


class _BrightnessAnalyzer(_ZeroAnalyzer):
    """A constant map: 0.5 − mean grey (brighter photo → more over)."""

    def analyze_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.full(im.shape[:2], 0.5 - float(grey(im).mean()), np.float32) for im in images]


for _name, _cls in (("test-zero", _ZeroAnalyzer), ("test-brightness", _BrightnessAnalyzer)):
    if _name not in ANALYZERS:
        ANALYZERS.register(_name, lambda _c=_cls, **_: _c(), origin="tests")


@pytest.fixture()
def labelled_set(tmp_path):
    """3 photos × (original + EV −3…+3 sweep) in the IEA40K layout, as `exposure data build` writes it."""
    root = tmp_path / "val"
    w = IEA40KWriter(root, "val", ("kind", "ev", "photo", "source"))
    labels = []
    for i in range(3):
        ideal = photo_like(48, 64, seed=i).astype(np.float32) / 255
        ref = f"p{i}.png"
        zero = np.zeros(ideal.shape[:2], np.float32)
        w.add(ref, ideal, zero, ref_id=ref, score=10, kind="original", ev=0.0, photo=f"p{i}", source="t")
        labels.append(zero)
        for ev in (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0):
            obs, res = render_ev(ideal, ev)
            w.add(f"p{i}_ev{ev:+.0f}", obs, res, ref_id=ref, score=5, kind="sweep", ev=ev, photo=f"p{i}", source="t")
            labels.append(res)
    w.close()
    return root, labels


def test_zero_map_mae_equals_mean_abs_label(labelled_set) -> None:
    root, labels = labelled_set
    out = evaluate(root, [("test-zero", None)])
    zero = out["results"][0]
    expected = float(np.mean([np.abs(lab).mean() for lab in labels]))
    assert zero["model"] == "test-zero" and zero["images"] == 21
    assert zero["mae"] == pytest.approx(expected, rel=1e-6)
    assert out["zero_map_mae"] == pytest.approx(expected, rel=1e-6)
    assert zero["originals_mean_abs"] == 0.0
    assert zero["sweep_monotonic_share"] == 0.0  # a flat curve does not fall
    assert zero["sweep_spearman"] is None
    assert zero["auc_under"] == 0.5 and zero["auc_over"] == 0.5
    assert zero["per_kind_mae"]["original"] == 0.0


def test_sweep_and_auc_metrics_reward_a_model_that_tracks_exposure(labelled_set) -> None:
    root, _ = labelled_set
    out = evaluate(root, [("test-brightness", None)], include_baseline=False)
    (r,) = out["results"]
    assert r["sweep_photos"] == 3
    assert r["sweep_monotonic_share"] == 1.0
    assert r["sweep_spearman"] == pytest.approx(-1.0)
    assert r["auc_under"] == 1.0 and r["auc_over"] == 1.0


def test_baseline_row_is_always_there(labelled_set) -> None:
    root, _ = labelled_set
    out = evaluate(root, [("test-zero", None)])
    assert [r["model"] for r in out["results"]] == ["test-zero", "baseline"]
    out = evaluate(root, [("baseline", None)])
    assert [r["model"] for r in out["results"]] == ["baseline"]


def test_cli_json_output_and_file(labelled_set, tmp_path) -> None:
    root, _ = labelled_set
    target = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["eval", str(root), "--model", "test-zero", "--format", "json",
                                      "--json-out", str(target)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data == json.loads(target.read_text())
    assert {r["model"] for r in data["results"]} == {"test-zero", "baseline"}


def test_per_image_rows_explain_the_aggregates(labelled_set, tmp_path) -> None:
    import csv

    root, labels = labelled_set
    target = tmp_path / "rows" / "per_image.csv"
    result = CliRunner().invoke(app, ["eval", str(root), "--model", "test-brightness", "--format", "json",
                                      "--per-image", str(target)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "per_image" not in data  # the JSON keeps its shape; the rows go to the CSV
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 2 * 21 and {r["model"] for r in rows} == {"test-brightness", "baseline"}
    mine = [r for r in rows if r["model"] == "test-brightness"]
    assert {"img_id", "kind", "ev", "photo", "source", "pred_mean", "pred_mean_abs", "label_mean", "mae"} <= set(mine[0])
    summary = next(r for r in data["results"] if r["model"] == "test-brightness")
    assert np.mean([float(r["mae"]) for r in mine]) == pytest.approx(summary["mae"], rel=1e-6)
    originals = [float(r["pred_mean_abs"]) for r in mine if r["kind"] == "original"]
    assert np.mean(originals) == pytest.approx(summary["originals_mean_abs"], rel=1e-6)
    assert [float(r["label_mean"]) for r in mine] == pytest.approx([float(lab.mean()) for lab in labels], abs=1e-6)


def test_cli_table_and_usage_errors(labelled_set) -> None:
    root, _ = labelled_set
    ok = CliRunner().invoke(app, ["eval", str(root), "--model", "test-brightness"], catch_exceptions=False,
                            env={"COLUMNS": "160"})
    assert ok.exit_code == 0 and "baseline" in ok.output and "test-brightness" in ok.output
    bad = CliRunner().invoke(app, ["eval", str(root), "--model", "test-zer"])
    assert bad.exit_code == 2 and "test-zero" in bad.output
    extra = CliRunner().invoke(app, ["eval", str(root), "--model", "test-zero", "--weights", "a", "--weights", "b"])
    assert extra.exit_code == 2
    missing = CliRunner().invoke(app, ["eval", str(root), "--model", "test-zero", "--split", "nope"])
    assert missing.exit_code == 2 and "no CSV" in missing.output


def test_metric_functions() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (32, 32)).astype(np.float32)
    assert ssim(a, a) == pytest.approx(1.0)
    noisy = a + rng.normal(0, 0.3, a.shape).astype(np.float32)
    assert 0.2 < ssim(a, noisy) < 0.95
    assert abs(ssim(a, np.zeros_like(a))) < 0.05
    assert psnr(a, a) == 100.0
    assert psnr(np.zeros((4, 4)), np.full((4, 4), 0.2)) == pytest.approx(10 * np.log10(4 / 0.04))
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1], [1]) == 0.5
    assert roc_auc([0.2, 0.9], [0.5]) == 0.5
    assert roc_auc([], [1]) is None
    assert roc_auc([1, 3], [2, 2, 0]) == pytest.approx(4 / 6)  # pairs won: 1>0; 3>2, 3>2, 3>0


def test_metric_functions_match_hand_computed_values() -> None:
    # flat maps: no variance, so SSIM is the luminance term alone, (2xy + C1) / (x² + y² + C1), C1 = (0.01·2)²
    c1 = (0.01 * 2.0) ** 2
    assert ssim(np.full((16, 16), 0.5), np.full((16, 16), 0.3)) == pytest.approx((0.3 + c1) / (0.34 + c1), rel=1e-9)
    # ties get their average rank: ranks x = (1, 2.5, 2.5, 4), y = (1, 2, 3, 4)
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 2, 3, 4])
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert np.isnan(ssim(np.zeros((10, 40)), np.zeros((10, 40))))  # smaller than the 11×11 window
    assert ssim(np.zeros((11, 40)), np.zeros((11, 40))) == pytest.approx(1.0)
    assert psnr(np.zeros(8), np.full(8, 1e-6)) == 100.0  # capped
    assert psnr(np.zeros(8), np.full(8, 0.02)) == pytest.approx(10 * np.log10(4 / 0.0004))


def test_unavailable_analyzer_is_a_usage_error(labelled_set) -> None:
    root, _ = labelled_set

    def broken(**_):
        raise RuntimeError("no weights found; looked at: --weights (not given)")

    if "test-broken" not in ANALYZERS:
        ANALYZERS.register("test-broken", broken, origin="tests")
    res = CliRunner().invoke(app, ["eval", str(root), "--model", "test-broken"])
    assert res.exit_code == 2 and "cannot create analyzer 'test-broken'" in res.output


def test_plain_iea40k_layout_gives_map_metrics_only(tmp_path) -> None:
    from test_data_iea40k import _make_iea40k

    labels = _make_iea40k(tmp_path)
    out = evaluate(tmp_path, [("test-zero", None)], split="train", include_baseline=False)
    (r,) = out["results"]
    assert r["mae"] == pytest.approx(float(np.mean([np.abs(v).mean() for v in labels.values()])), rel=1e-6)
    assert r["sweep_photos"] == 0 and r["sweep_monotonic_share"] is None
    assert r["auc_under"] is None and r["auc_over"] is None and r["originals_mean_abs"] is None
