"""Corpus builder: photo heuristic, ids and splits, manifest reproduction with sha256 checks, shipped manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import exposure_cli.data.corpus as corpus_mod
from exposure_cli.data.corpus import (
    DEFAULT_MANIFEST,
    ManifestMismatch,
    build,
    classify,
    load_index,
    load_manifest,
    manifest_summary,
    photo_features,
    photo_group,
    photo_id,
    scan,
    split_for,
)
from exposure_cli.data.sources import SOURCES, Candidate, Source

from conftest import photo_like, write_image

TEST_SOURCE = "test-photos"


def _enumerate(root: Path) -> list[Candidate]:
    return [Candidate(p.name, (lambda p=p: p.read_bytes()), "CC0", "tests") for p in sorted(root.glob("*.png"))]


if TEST_SOURCE not in SOURCES:
    SOURCES.register(TEST_SOURCE, Source(TEST_SOURCE, "python", "test-photos", "CC0", _enumerate), origin="tests")


def make_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_photos: int = 6) -> Path:
    """Generated package (photos + one illustration + one tiny file) → manifest → built corpus."""
    pkg = tmp_path / "pkg"
    for i in range(n_photos):
        write_image(pkg / f"photo{i:02d}x.png", photo_like(240, 320, seed=i))
    flat = np.zeros((240, 320, 3), np.uint8)
    flat[:, :160] = (200, 30, 30)
    flat[:, 160:] = (20, 20, 200)
    write_image(pkg / "drawing.png", flat)
    write_image(pkg / "icon.png", photo_like(32, 32, seed=9))
    monkeypatch.setattr(corpus_mod, "source_root", lambda src, version, cache: (pkg, "1.0"))
    manifest = scan(tmp_path / "cache", [TEST_SOURCE], log=lambda s: None)
    # force a fixed split so both splits exist whatever the hashes say
    for k, f in enumerate(sorted((f for f in manifest["files"] if f["status"] == "kept"), key=lambda f: f["id"])):
        f["split"] = "val" if k % 3 == 0 else "train"
    out = tmp_path / "corpus"
    build(out, manifest, long_side=200, log=lambda s: None)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_heuristic_separates_photos_from_drawings_grey_and_tiny() -> None:
    photo = photo_like(240, 320, seed=1)
    assert classify(photo_features(photo)) == ("kept", "photo (heuristic)")
    flat = np.zeros((240, 320, 3), np.uint8)
    flat[:120] = (250, 200, 0)
    flat[120:] = (0, 90, 200)
    assert classify(photo_features(flat))[1] == "illustration"
    grey = np.repeat(photo_like(240, 320, seed=2)[..., :1], 3, axis=-1)
    assert classify(photo_features(grey))[1] == "grey-only"
    assert classify(photo_features(photo_like(100, 300, seed=3)))[1] == "tiny"
    cutout = photo.copy()
    cutout[:, :200] = 255
    assert classify(photo_features(cutout))[1] == "cut-out"


def test_ids_groups_and_splits_are_stable() -> None:
    pid = photo_id("plasma", "usr/share/wallpapers/Autumn/contents/images/2560x1600.jpg")
    assert pid == "plasma__Autumn"
    assert photo_id("g", "x/y.rcc!/gcompris/src/a/resource/fish1.webp") == "g__a_resource_fish1"
    assert photo_group("s__aloeL") == photo_group("s__aloeR") == "s__aloe"
    assert photo_group("s__motorcycle_left") == photo_group("s__motorcycle_right")
    assert split_for("s__aloe") == split_for("s__aloe") in ("train", "val")
    shares = [split_for(f"x__{i}") for i in range(2000)]
    assert 0.15 < shares.count("val") / len(shares) < 0.25


def test_scan_and_build_reproduce_the_corpus(tmp_path, monkeypatch) -> None:
    out = make_corpus(tmp_path, monkeypatch)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    by_id = {f["id"]: f for f in manifest["files"]}
    assert by_id[f"{TEST_SOURCE}__drawing"]["status"] == "rejected"
    assert by_id[f"{TEST_SOURCE}__icon"]["reason"] == "tiny"
    kept = [f for f in manifest["files"] if f["status"] == "kept"]
    assert len(kept) == 6 and all(len(f["sha256"]) == 64 for f in kept)
    index = load_index(out)
    assert len(index["photos"]) == 6
    for p in index["photos"]:
        assert (out / p["path"]).exists() and max(p["width"], p["height"]) <= 200
    summary = manifest_summary(manifest)
    assert summary[0]["kept"] == 6 and summary[0]["rejected"] == {"illustration": 1, "tiny": 1}


def test_overrides_survive_a_rescan(tmp_path, monkeypatch) -> None:
    make_corpus(tmp_path, monkeypatch)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["overrides"] = {f"{TEST_SOURCE}__drawing": {"status": "kept", "reason": "photo (manual review)"}}
    again = scan(tmp_path / "cache", [TEST_SOURCE], manifest, log=lambda s: None)
    entry = next(f for f in again["files"] if f["id"] == f"{TEST_SOURCE}__drawing")
    assert entry["status"] == "kept" and entry["decided_by"] == "override"


def test_sha256_mismatch_is_reported_clearly(tmp_path, monkeypatch) -> None:
    make_corpus(tmp_path, monkeypatch)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    write_image(tmp_path / "pkg" / "photo01x.png", photo_like(240, 320, seed=77))  # the package changed
    (tmp_path / "pkg" / "photo02x.png").unlink()  # and lost a file
    with pytest.raises(ManifestMismatch) as err:
        build(tmp_path / "again", manifest, log=lambda s: None)
    text = str(err.value)
    assert "2 file(s) did not match" in text
    assert "photo01x" in text and "sha256" in text and "photo02x" in text and "missing" in text
    report = build(tmp_path / "lenient", manifest, strict=False, log=lambda s: None)
    assert report.kept == 4 and len(report.mismatches) == 2


def test_shipped_manifest_is_consistent() -> None:
    m = load_manifest(DEFAULT_MANIFEST)
    files = m["files"]
    ids = [f["id"] for f in files]
    assert len(ids) == len(set(ids))
    kept = [f for f in files if f["status"] == "kept"]
    assert len(kept) >= 200
    for f in kept:
        assert len(f["sha256"]) == 64 and f["split"] in ("train", "val") and f["licence"]
        assert f["version"] and f["package"]
    # a photo group never straddles the split
    groups: dict[str, set[str]] = {}
    for f in kept:
        groups.setdefault(f["group"], set()).add(f["split"])
    assert all(len(s) == 1 for s in groups.values())
    assert {f["source"] for f in kept} >= {"opencv-doc", "plasma-wallpapers", "gcompris", "skimage", "sklearn",
                                          "tuxpaint", "palapeli", "lxqt-themes", "blender-hdr"}
    assert all(f["reason"] for f in files if f["status"] == "rejected")


def test_build_command_reproduces_and_reports_mismatches(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from exposure_cli.cli import app

    make_corpus(tmp_path, monkeypatch)
    manifest = tmp_path / "manifest.json"
    ok = CliRunner().invoke(app, ["data", "build", str(tmp_path / "c2"), "--manifest", str(manifest)],
                            catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert "6 kept files" in ok.output and "validation set:" in ok.output
    assert (tmp_path / "c2" / "val" / "val.csv").exists()
    write_image(tmp_path / "pkg" / "photo03x.png", photo_like(240, 320, seed=99))
    bad = CliRunner().invoke(app, ["data", "build", str(tmp_path / "c3"), "--manifest", str(manifest), "--no-val"])
    assert bad.exit_code == 1
    assert "photo03x" in bad.output and "differs from manifest" in bad.output
