"""XMP sidecars read back by a real XMP reader: ExifTool (Debian ``libimage-exiftool-perl``; ``.ci/run``
installs it, the tests that need it skip with that reason where it is absent)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import photo_like, write_image
from exposure_cli.cli import app
from exposure_cli.report.writers import read_report
from exposure_cli.report.xmp import (SidecarError, merge_packet, properties, rating_and_label, sidecar_name,
                                     write_xmp_sidecars, NS_XMP)
from exposure_cli.rules import load_rule_sets

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None,
                                    reason="ExifTool not installed (apt-get install -y libimage-exiftool-perl)")
FAST = ["--model", "baseline", "--no-regions", "-q"]


def exiftool(*args: str) -> list[dict]:
    done = subprocess.run([EXIFTOOL, "-json", "-G1", "-a", "-n", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_sidecar_names_follow_the_photo_managers():
    assert sidecar_name("photo.jpg") == "photo.jpg.xmp"  # darktable, digiKam
    assert sidecar_name("IMG_0001.CR2") == "IMG_0001.xmp"  # Lightroom, Camera Raw
    assert sidecar_name("IMG_0001.dng") == "IMG_0001.xmp"
    assert sidecar_name("photo.png") == "photo.png.xmp"


def test_rating_and_label_from_the_grade():
    grades = load_rule_sets(["default"])[0].grades
    got = {g: rating_and_label(g, None, grades) for _, g in grades}
    assert got == {"A": (5, "Green"), "B": (4, "Yellow"), "C": (3, "Yellow"), "D": (2, "Red"), "F": (1, "Red")}


@pytest.fixture
def scanned(tmp_path):
    photos = tmp_path / "photos"
    for i, gain in enumerate([0.08, 1.0, 6.0]):
        write_image(photos / "trip" / f"p{i}.jpg", photo_like(120, 160, seed=i, gain=gain))
    (photos / "broken.jpg").write_bytes(b"not a photo")
    return photos


@needs_exiftool
def test_scan_writes_sidecars_that_exiftool_reads(scanned, tmp_path):
    out = tmp_path / "audit"
    res = CliRunner().invoke(app, ["scan", str(scanned), "--out", str(out), "--xmp", *FAST], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    df, _ = read_report(out)
    grades = load_rule_sets(["default"])[0].grades
    assert not (out / "xmp" / "broken.jpg.xmp").exists()  # an error row has nothing to rate
    for row in df[df["status"] == "ok"].to_dict("records"):
        sidecar = out / "xmp" / (row["path"] + ".xmp")
        (tags,) = exiftool(str(sidecar))
        stars, label = rating_and_label(row["grade_default"], row["score_default"], grades)
        assert tags["XMP-xmp:Rating"] == stars and tags["XMP-xmp:Label"] == label
        assert tags["XMP-exposurecli:Grade"] == row["grade_default"]
        assert tags["XMP-exposurecli:Score"] == pytest.approx(row["score_default"], abs=0.05)
        assert tags["XMP-exposurecli:BadPct"] == pytest.approx(row["bad_pct"], rel=1e-3, abs=1e-3)
        assert tags["XMP-exposurecli:Reason"] == row["reasons_default"].split("; ")[0]
        if "ev_correction" in df.columns and np.isfinite(row["ev_correction"]):
            expected = max(-5.0, min(5.0, row["ev_correction"]))
            assert float(tags["XMP-crs:Exposure2012"]) == pytest.approx(expected, abs=0.006)  # "+2.22", as ACR writes
        else:
            assert "XMP-crs:Exposure2012" not in tags
    assert not any(p.parent == scanned / "trip" for p in scanned.rglob("*.xmp"))  # nothing beside the photos


@needs_exiftool
def test_exposure2012_only_from_a_finite_ev_correction_column(tmp_path):
    row = {"path": "a.jpg", "status": "ok", "score_default": 80.0, "grade_default": "B", "reasons_default": "x"}
    frames = {"none": pd.DataFrame([row]),
              "nan": pd.DataFrame([{**row, "ev_correction": float("nan")}]),
              "value": pd.DataFrame([{**row, "ev_correction": 1.25}]),
              "clamped": pd.DataFrame([{**row, "ev_correction": -7.0}])}
    seen = {}
    for name, df in frames.items():
        write_xmp_sidecars(df, {"rule_sets": ["default"]}, out_dir=tmp_path / name)
        (tags,) = exiftool(str(tmp_path / name / "xmp" / "a.jpg.xmp"))
        value = tags.get("XMP-crs:Exposure2012")
        seen[name] = None if value is None else float(value)
    assert seen == {"none": None, "nan": None, "value": 1.25, "clamped": -5.0}


@needs_exiftool
def test_next_to_photos_merges_into_an_existing_sidecar_without_losing_a_field(scanned, tmp_path):
    photo = scanned / "trip" / "p1.jpg"
    sidecar = photo.with_name("p1.jpg.xmp")
    # A sidecar written by a photo manager: title, keywords, a hierarchy, a white balance, an old rating.
    done = subprocess.run([EXIFTOOL, "-q", "-o", str(sidecar), "-XMP-dc:Title=Harbour at dawn",
                           "-XMP-dc:Subject=harbour", "-XMP-dc:Subject=dawn", "-XMP-lr:HierarchicalSubject=places|harbour",
                           "-XMP-crs:Temperature=5200", "-XMP-xmp:Rating=1", "-XMP-xmp:Label=Purple", str(photo)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and sidecar.exists(), done.stderr
    original = sidecar.read_bytes()
    (before,) = exiftool(str(sidecar))
    # one sidecar that is not XML at all: left exactly as it was
    junk = scanned / "trip" / "p2.jpg.xmp"
    junk.write_bytes(b"this is not xml")
    res = CliRunner().invoke(app, ["scan", str(scanned), "--out", str(tmp_path / "audit"), "--xmp-next-to-photos",
                                   *FAST[:-1]], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "1 left untouched" in res.output and "p2.jpg" in res.output
    assert junk.read_bytes() == b"this is not xml"
    assert sidecar.with_name("p1.jpg.xmp.bak").read_bytes() == original  # the original, kept
    (after,) = exiftool(str(sidecar))
    for key, value in before.items():
        if key.startswith("XMP-") and key not in ("XMP-xmp:Rating", "XMP-xmp:Label"):
            assert after.get(key) == value, (key, value, after.get(key))
    assert after["XMP-dc:Title"] == "Harbour at dawn" and after["XMP-dc:Subject"] == ["harbour", "dawn"]
    df, _ = read_report(tmp_path / "audit")
    row = df.set_index("path").loc["trip/p1.jpg"]
    grades = load_rule_sets(["default"])[0].grades
    assert (after["XMP-xmp:Rating"], after["XMP-xmp:Label"]) == rating_and_label(row["grade_default"], None, grades)
    assert after["XMP-exposurecli:Grade"] == row["grade_default"]
    assert (scanned / "trip" / "p0.jpg.xmp").exists()  # new ones beside the other photos
    # a second run merges into our own sidecar again: same fields, no second backup
    again = CliRunner().invoke(app, ["scan", str(scanned), "--out", str(tmp_path / "audit2"), "--xmp-next-to-photos",
                                     *FAST], catch_exceptions=False)
    assert again.exit_code == 0
    (twice,) = exiftool(str(sidecar))
    assert {k: v for k, v in twice.items() if k.startswith("XMP-")} == {k: v for k, v in after.items() if k.startswith("XMP-")}
    assert sidecar.with_name("p1.jpg.xmp.bak").read_bytes() == original


def test_merge_refuses_what_it_cannot_read_with_certainty():
    props = {(NS_XMP, "Rating"): "3"}
    for bad in (b"<x/>", b"not xml", b'<!DOCTYPE x [<!ENTITY a "b">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'):
        with pytest.raises(SidecarError):
            merge_packet(bad, props)


def test_properties_skip_what_the_report_does_not_have():
    props = properties({"path": "a.jpg", "over_pct": float("nan"), "bad_pct": 3.0}, None, (), False)
    names = {name for _, name in props}
    assert names == {"BadPct"}
