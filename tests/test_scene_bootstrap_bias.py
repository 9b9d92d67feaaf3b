"""tools/scene_bootstrap_bias.py: stage 41's scene bootstrap of the synthetic val set's per-EV bias."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("scene_bootstrap_bias", ROOT / "tools" / "scene_bootstrap_bias.py")
sb = importlib.util.module_from_spec(spec)
sys.modules["scene_bootstrap_bias"] = sb
spec.loader.exec_module(sb)

FIELDS = ["model", "img_id", "kind", "ev", "photo", "source", "pred_mean", "pred_mean_abs", "label_mean", "mae"]


def _write(path: Path, errors: dict[tuple[str, str], list[float]], ev: float = 2.0) -> Path:
    """One CSV of the `exposure eval --per-image` shape: (source, photo) → the images' predicted − label."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for (source, photo), errs in errors.items():
            for i, err in enumerate(errs):
                row = dict(model="eat", img_id=f"{photo}_{i}", kind="sweep", ev=ev, photo=photo, source=source,
                           pred_mean=0.2 + err, pred_mean_abs=0.2, label_mean=0.2, mae=abs(err))
                writer.writerow(row)
                writer.writerow({**row, "model": "baseline", "pred_mean": 9.0})  # other analyzers are not read
            writer.writerow({**row, "kind": "original", "ev": 0.0, "pred_mean": 9.0})  # nor originals
    return path


def test_hdr_crops_group_by_panorama_and_photos_by_photo(tmp_path) -> None:
    path = _write(tmp_path / "a.csv", {("pmndrs-hdr", "pmndrs-hdr__dock__y000p00"): [0.1],
                                       ("pmndrs-hdr", "pmndrs-hdr__dock__y060p15"): [0.3],
                                       ("gcompris", "gcompris__bee"): [0.05, 0.07]})
    table = sb.per_scene_errors(path)
    assert dict(table["hdr"][2.0]) == {"pmndrs-hdr__dock": pytest.approx([0.1, 0.3])}
    assert dict(table["photo"][2.0]) == {"gcompris__bee": pytest.approx([0.05, 0.07])}


def test_the_bias_is_the_image_mean_and_the_spread_comes_from_the_scenes(tmp_path) -> None:
    steady = {("gcompris", f"p{i}"): [0.02, 0.02] for i in range(6)}
    mixed = {("gcompris", f"p{i}"): [0.0, 0.0] if i < 3 else [0.04, 0.04] for i in range(6)}
    (a_bias, b_bias), boot = sb.bootstrap([sb.per_scene_errors(_write(tmp_path / n, e))["photo"][2.0]
                                           for n, e in (("a.csv", steady), ("b.csv", mixed))], 500, 0)
    assert a_bias == pytest.approx(0.02) and b_bias == pytest.approx(0.02)
    assert boot.shape == (2, 500)
    assert np.allclose(boot[0], 0.02)  # every scene agrees: redrawing them moves nothing
    assert boot[1].std() > 0.005 and boot[1].min() >= -1e-12 and boot[1].max() <= 0.04 + 1e-12


def test_the_draws_are_paired_and_the_scenes_must_match(tmp_path) -> None:
    base = {("gcompris", f"p{i}"): [0.01 * i] for i in range(5)}
    shifted = {key: [errs[0] + 0.01] for key, errs in base.items()}
    cells = [sb.per_scene_errors(_write(tmp_path / n, e))["photo"][2.0] for n, e in (("a.csv", base), ("b.csv", shifted))]
    _, boot = sb.bootstrap(cells, 300, 1)
    assert np.allclose(boot[1] - boot[0], 0.01)  # the same scenes in every draw for both weights
    fewer = sb.per_scene_errors(_write(tmp_path / "c.csv", dict(list(base.items())[:4])))["photo"][2.0]
    with pytest.raises(ValueError, match="same scenes"):
        sb.bootstrap([cells[0], fewer], 10, 0)


def test_the_command_prints_each_step_with_the_interval_against_the_first(tmp_path, capsys) -> None:
    a = _write(tmp_path / "a.csv", {("gcompris", f"p{i}"): [0.03] for i in range(4)})
    b = _write(tmp_path / "b.csv", {("gcompris", f"p{i}"): [0.01] for i in range(4)})
    assert sb.main([f"A={a}", f"B={b}", "--draws", "50"]) == 0
    out = capsys.readouterr().out
    assert "photo: 4 scenes" in out and "hdr" not in out
    assert "+2 EV  A +0.030 (sd 0.000)  B +0.010 (sd 0.000)  |B|-|A| 90% [-0.020, -0.020]" in out
