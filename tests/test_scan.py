import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import photo_like, write_image
from exposure_cli.cli import app
from exposure_cli.pipeline import ScanError, analyze_image, scan
from exposure_cli.report.schema import base_columns, rule_columns
from exposure_cli.report.writers import read_report

runner = CliRunner()
FAST = ["--model", "baseline", "--no-regions"]


def run(*args, input=None):
    return runner.invoke(app, list(args), catch_exceptions=False, input=input)


def test_scan_writes_one_row_per_input_with_errors_as_rows(photo_dir, tmp_path):
    out = tmp_path / "out"
    res = run("scan", str(photo_dir), "--out", str(out), *FAST, "-q")
    assert res.exit_code == 0, res.output
    df, meta = read_report(out / "report.parquet")
    assert list(df["path"]) == ["empty.png", "home/broken.jpg", "home/flat.png", "trip/bright.jpg",
                                "trip/dark.jpg", "trip/well.jpg"]
    by = df.set_index("path")
    assert by.loc["empty.png", "status"] == "error" and "empty file" in by.loc["empty.png", "error"]
    assert by.loc["home/broken.jpg", "status"] == "error"
    assert (by.loc[["trip/well.jpg", "trip/dark.jpg", "home/flat.png"], "status"] == "ok").all()
    # the baseline is crude but must get the direction right
    assert by.loc["trip/dark.jpg", "mean_residual"] > by.loc["trip/well.jpg", "mean_residual"] > by.loc["trip/bright.jpg", "mean_residual"]
    assert by.loc["trip/bright.jpg", "over_pct"] > by.loc["trip/well.jpg", "over_pct"]
    assert by.loc["trip/well.jpg", "width"] == 320 and by.loc["trip/well.jpg", "analyzer"] == "baseline"
    assert meta["analyzer"]["name"] == "baseline" and meta["thresholds"]["over"] == 0.1


def test_fail_on_error_sets_exit_code(photo_dir, tmp_path):
    res = run("scan", str(photo_dir), "--out", str(tmp_path / "o"), *FAST, "-q", "--fail-on-error")
    assert res.exit_code == 1


@pytest.mark.parametrize("fmt,name", [("csv", "report.csv"), ("jsonl", "report.jsonl")])
def test_formats_have_the_same_columns(photo_dir, tmp_path, fmt, name):
    out = tmp_path / fmt
    assert run("scan", str(photo_dir), "--out", str(out), "--format", fmt, *FAST, "-q").exit_code == 0
    df, meta = read_report(out / name)
    assert list(df.columns) == base_columns() + rule_columns(["default"])  # the default rule set applies
    assert len(df) == 6 and meta["analyzer"]["name"] == "baseline"


def test_stream_csv_to_stdout_from_stdin_paths(photo_dir):
    files = "\n".join(str(p) for p in sorted(photo_dir.rglob("*.jpg")))
    res = run("scan", "-", "--out", "-", "--format", "csv", *FAST, "-q", input=files)
    assert res.exit_code == 0
    lines = res.stdout.strip().splitlines()
    assert lines[0].split(",")[:3] == ["path", "status", "error"]
    assert len(lines) == 1 + 4


def test_overlays_and_maps_mirror_the_tree(photo_dir, tmp_path):
    import cv2

    out = tmp_path / "out"
    assert run("scan", str(photo_dir), "--out", str(out), *FAST, "-q", "--overlays", "--maps").exit_code == 0
    overlay = cv2.imread(str(out / "overlays" / "trip" / "bright.overlay.jpg"))
    assert overlay is not None and overlay.shape[:2] == (240, 320)
    # the over-exposed photo is painted red somewhere, the dark one blue somewhere
    b, g, r = overlay[..., 0].astype(int), overlay[..., 1].astype(int), overlay[..., 2].astype(int)
    assert ((r - b) > 80).mean() > 0.05
    dark = cv2.imread(str(out / "overlays" / "trip" / "dark.overlay.jpg")).astype(int)
    assert ((dark[..., 0] - dark[..., 2]) > 80).mean() > 0.05
    m = np.load(out / "maps" / "trip" / "well.jpg.npy", allow_pickle=False)
    assert m.dtype == np.float16 and m.shape == (240, 320)
    df, _ = read_report(out)
    assert df.set_index("path").loc["trip/well.jpg", "map_path"] == "maps/trip/well.jpg.npy"
    assert not (out / "overlays" / "empty.png.overlay.jpg").exists()


def test_existing_output_needs_resume_or_overwrite(photo_dir, tmp_path):
    out = tmp_path / "out"
    assert run("scan", str(photo_dir), "--out", str(out), *FAST, "-q").exit_code == 0
    again = run("scan", str(photo_dir), "--out", str(out), *FAST, "-q")
    assert again.exit_code == 1 and "--resume" in again.output
    assert run("scan", str(photo_dir), "--out", str(out), *FAST, "-q", "--overwrite").exit_code == 0
    changed = run("scan", str(photo_dir), "--out", str(out), *FAST, "-q", "--resume", "--over-threshold", "0.2")
    assert changed.exit_code == 1 and "thresholds" in changed.output


def test_resume_skips_done_and_adds_new(photo_dir, tmp_path):
    out = tmp_path / "out"
    first = scan([photo_dir], out=out, model="baseline", regions=False)
    assert first.processed == 6
    write_image(photo_dir / "new.jpg", photo_like(seed=9))
    second = scan([photo_dir], out=out, model="baseline", regions=False, resume=True)
    assert (second.processed, second.skipped) == (1, 6)
    df, _ = read_report(out)
    assert len(df) == 7 and df["path"].is_unique


def test_usage_errors_exit_2(photo_dir, tmp_path):
    assert runner.invoke(app, ["scan", str(photo_dir), "--device", "tpu"]).exit_code == 2
    assert runner.invoke(app, ["scan", str(photo_dir), "--model", "basline", "--out", str(tmp_path / "x")]).exit_code == 2
    assert runner.invoke(app, ["scan", str(photo_dir), "--fail-under", "x=1"]).exit_code == 2


def test_unknown_model_suggests(photo_dir, tmp_path):
    res = runner.invoke(app, ["scan", str(photo_dir), "--model", "basline", "--out", str(tmp_path / "x")])
    assert "did you mean 'baseline'" in res.output


def test_nothing_written_outside_out_and_inputs_untouched(photo_dir, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in photo_dir.rglob("*")}
    out = tmp_path / "out"
    scan([photo_dir], out=out, model="baseline", regions=False, overlays=True, maps=True)
    assert {p: p.stat().st_mtime_ns for p in photo_dir.rglob("*")} == before
    assert set(tmp_path.iterdir()) == {photo_dir, out}


def test_out_inside_scanned_tree_is_not_scanned(photo_dir):
    out = photo_dir / "audit"
    scan([photo_dir], out=out, model="baseline", regions=False, overlays=True)
    res = scan([photo_dir], out=out, model="baseline", regions=False, overlays=True, resume=True)
    assert res.total == 6  # overlays written into the tree were not picked up as inputs


def test_lock_refuses_a_second_scan(photo_dir, tmp_path):
    import fcntl

    out = tmp_path / "out"
    (out / ".exposure").mkdir(parents=True)
    with open(out / ".exposure" / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write("pid 999")
        fh.flush()
        with pytest.raises(ScanError, match="another scan"):
            scan([photo_dir], out=out, model="baseline", regions=False)


def test_analyze_image_api():
    rgb = photo_like(50, 70).astype(np.float32) / 255
    r = analyze_image(rgb, model="baseline")
    assert r.shape == (50, 70) and r.dtype == np.float32 and -1 <= r.min() <= r.max() <= 1
    # uint8 input is the same photo
    assert np.allclose(analyze_image(np.round(rgb * 255).astype(np.uint8), model="baseline"), r, atol=0.01)


def _chelsea_thumbnail_means(model):
    """Mean r of the sample cat at 160×120 px, re-exposed by −2 … +2 EV in linear light."""
    import cv2

    from exposure_cli import __file__ as package_file
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.color import linear_to_srgb, srgb_to_linear

    photo = cv2.imread(str(Path(package_file).parent / "samples" / "chelsea.jpg"))
    rgb = cv2.resize(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB).astype(np.float32) / 255, (160, 120),
                     interpolation=cv2.INTER_AREA)
    analyzer = create_analyzer(model, device="cpu") if model == "eat" else create_analyzer(model)
    return [float(analyze_image(linear_to_srgb(srgb_to_linear(rgb) * 2.0**ev), analyzer=analyzer).mean())
            for ev in (-2, -1, 0, 1, 2)]


@pytest.mark.parametrize("model", ["baseline", "eat"])
def test_analyze_image_reads_darker_copies_more_under_and_brighter_ones_more_over(model):
    """Direction and size, not only shape: the same photo at −2 … +2 EV (in linear light)."""
    means = _chelsea_thumbnail_means(model)
    assert all(a > b for a, b in zip(means, means[1:])), means  # strictly more "over" as it brightens
    assert means[0] > 0.1 and means[-1] < -0.15, means  # two stops off reads clearly under / over


@pytest.mark.parametrize("model", [
    "baseline",
    # The stage-7 weights missed this (+0.076 at 160×120 px, a strict xfail until 2026-12-04); the stage-31
    # weights read +0.0496 through their 512 px copy, within the bar by a hair. The stage-46 weights shipped
    # since 2026-12-05 read +0.0635 through the 224 px copy the small-images rule chose for them at 160 px
    # (+0.048 through 512; docs/MODEL.md stage 47): a strict xfail again, with its numbers.
    pytest.param("eat", marks=pytest.mark.xfail(strict=True, reason=(
        "stage-46 weights: the well-exposed 160×120 cat reads +0.0635 through their 224 px copy (bar 0.05; "
        "stage-31 weights +0.0496, stage-7 +0.076); docs/MODEL.md stage 47"))),
])
def test_analyze_image_reads_a_well_exposed_thumbnail_as_well_exposed(model):
    means = _chelsea_thumbnail_means(model)
    assert abs(means[2]) < 0.05, means  # the original photo is close to well exposed


def test_version_and_help():
    assert run("--version").stdout.startswith("exposure-cli ")
    res = run("scan", "--help")
    assert res.exit_code == 0 and "Examples" in res.stdout


def test_every_command_has_help_with_examples():
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        sub = getattr(cmd, "commands", None)
        for c in (sub.values() if sub else [cmd]):
            text = (c.help or "") + (c.epilog or "")
            assert "Examples" in text or "Example" in text, f"{name} {c.name} has no examples"


def _journal_paths(out: Path) -> set[str]:
    from exposure_cli.outdir import Journal

    return {row["path"] for row in Journal(out).rows()}


def _kill_after_rows(photo_dir: Path, out: Path, rows: int, timeout: float = 120.0) -> set[str]:
    """Start a scan (resuming when `out` exists), SIGKILL it once its journal holds `rows` photos.

    Returns the photos journalled when it died.
    """
    cmd = [sys.executable, "-m", "exposure_cli", "scan", str(photo_dir), "--out", str(out), *FAST, "-q",
           "--batch-size", "1", "--workers", "1"]
    if out.exists():
        cmd.append("--resume")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / ".exposure" / "journal.jsonl"
    deadline = time.monotonic() + timeout

    def lines() -> int:
        try:
            return journal.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    try:
        while lines() < rows and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return _journal_paths(out)


def test_killed_scan_resumes_without_loss_or_duplicates(tmp_path):
    photos = tmp_path / "many"
    for i in range(40):
        write_image(photos / f"{i:02d}.png", photo_like(200, 260, seed=i, gain=0.3 + i / 10))
    reference = scan([photos], out=tmp_path / "ref", model="baseline", regions=False)
    ref, _ = read_report(reference.report_path)
    out = tmp_path / "killed"
    done_before = 0
    for rows in (5, 15, 25):
        done = _kill_after_rows(photos, out, rows)
        # killed mid-scan: some photos were journalled, others were still missing, and each resumed run
        # went on from where the previous one died
        assert rows <= len(done) < 40, (rows, len(done))
        assert len(done) > done_before
        assert not (out / "report.parquet").exists()
        done_before = len(done)
    finished = subprocess.run([sys.executable, "-m", "exposure_cli", "scan", str(photos), "--out", str(out), *FAST,
                               "-q", "--resume"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    got, _ = read_report(out / "report.parquet")
    assert list(got["path"]) == list(ref["path"])
    for col in ("over_pct", "under_pct", "mean_residual"):
        assert np.allclose(got[col], ref[col])


def test_compile_option_wraps_the_network_lazily():
    torch = pytest.importorskip("torch")
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.weights import shipped_weights_dir

    if shipped_weights_dir() is None:
        pytest.skip("no shipped weights in this checkout")
    analyzer = create_analyzer("eat", device="cpu", compile=True)
    assert isinstance(analyzer.model, torch._dynamo.eval_frame.OptimizedModule)  # compiled at first call


def _freeze_counts_during_scan(photo_dir, out, **kw):
    import gc

    seen = []
    scan([photo_dir], out=out, model="baseline", regions="none",
         progress=lambda *_: seen.append(gc.get_freeze_count()), **kw)
    return seen


def test_scan_keeps_the_objects_it_found_out_of_the_collector_and_hands_them_back(photo_dir, tmp_path):
    import gc

    assert gc.get_freeze_count() == 0
    before = len(gc.get_objects())
    seen = _freeze_counts_during_scan(photo_dir, tmp_path / "o")
    # while the scan runs, what existed when it started is frozen (a full collection does not walk it) ...
    assert seen and min(seen) >= before // 2
    # ... and afterwards the process collects it as before
    assert gc.get_freeze_count() == 0
    # also when the scan fails
    class Stop(Exception):
        pass

    def stop(*_):
        raise Stop

    with pytest.raises(Stop):
        scan([photo_dir], out=tmp_path / "o2", model="baseline", regions="none", progress=stop)
    assert gc.get_freeze_count() == 0


def test_scan_leaves_a_callers_own_gc_freeze_alone(photo_dir, tmp_path):
    import gc

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        seen = _freeze_counts_during_scan(photo_dir, tmp_path / "o")
        assert seen and gc.get_freeze_count() >= 0.9 * frozen  # not unfrozen by the scan (freed ones leave it)
    finally:
        gc.unfreeze()


def test_concurrent_scans_unfreeze_once_the_last_one_ends(photo_dir, tmp_path):
    import gc
    import threading

    from exposure_cli.pipeline import long_lived_objects_frozen

    entered, release = threading.Event(), threading.Event()

    def hold():
        with long_lived_objects_frozen():
            entered.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert entered.wait(30)
        _freeze_counts_during_scan(photo_dir, tmp_path / "o")
        assert gc.get_freeze_count() > 0  # the other one is still running
    finally:
        release.set()
        t.join(30)
    assert gc.get_freeze_count() == 0
