"""Real exposure brackets: manifest → bare git mirror → verified, aligned, fused, labelled stacks; splits."""

from __future__ import annotations

import copy
import io
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from exposure_cli.color import linear_to_srgb
from exposure_cli.data.brackets import (
    CAMERA_EV_GAIN,
    BracketError,
    assign_splits,
    build,
    estimate_relative_ev,
    exposure_from_name,
    exposure_value,
    frame_record,
    load_stacks,
    sample_training_item,
)

TIMES = (1 / 100, 1 / 25, 4 / 25)  # 2 EV apart


def scene_radiance(h: int = 192, w: int = 256, seed: int = 0) -> np.ndarray:
    """A generated scene: non-periodic multi-scale log-normal texture (structure for MTB), a 3-stop
    illumination ramp and a bright window (what a bracket is for)."""
    import cv2

    rng = np.random.default_rng(seed)
    tex = np.zeros((h, w), np.float32)
    for sigma, amp in ((1.0, 0.15), (4.0, 0.35), (16.0, 0.5)):
        n = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
        tex += amp * n / (n.std() + 1e-6)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    illum = np.exp2(-1.5 + 3.0 * (x / w))
    tint = rng.uniform(0.7, 1.1, 3).astype(np.float32)
    rgb = (np.exp2(1.6 * tex) * illum)[..., None] * tint
    rgb[20:60, 180:240] *= 6.0  # a bright window
    return (rgb * 1.5).astype(np.float32)


def render(radiance: np.ndarray, t: float) -> np.ndarray:
    return np.round(linear_to_srgb(radiance * (t * 4.0)) * 255).astype(np.uint8)


def jpeg_with_exif(rgb: np.ndarray, exposure_time: float) -> bytes:
    from fractions import Fraction

    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    t = Fraction(exposure_time).limit_denominator(100_000)
    exif = Image.Exif()
    exif[0x0110] = "TestCam 1"
    # EXIF sub-IFD, RATIONAL values as cameras write them: ExposureTime, FNumber, ISO
    exif[0x8769] = {0x829A: IFDRational(t.numerator, t.denominator), 0x829D: IFDRational(4, 1), 0x8827: 100}
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(cwd), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def make_mirror(tmp_path: Path, files: dict[str, bytes], repo: str = "someone/brackets") -> tuple[Path, str]:
    """A bare mirror ``<mirrors>/someone+brackets/repo`` holding ``files``; returns (mirrors, commit)."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    for path, data in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(data)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "stacks", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    mirrors = tmp_path / "mirrors"
    dest = mirrors / repo.replace("/", "+") / "repo"
    dest.parent.mkdir(parents=True)
    git("clone", "-q", "--bare", str(work), str(dest), cwd=tmp_path)
    return mirrors, commit


@pytest.fixture(scope="module")
def stacks_repo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("brackets")
    files: dict[str, bytes] = {}
    scenes = []
    for k, (cat, split) in enumerate([("indoor", "train"), ("outdoor", "val"), ("night", "lockbox")]):
        rad = scene_radiance(seed=k)
        frames = []
        for j, t in enumerate(TIMES):
            path = f"hw1/scene{k}/IMG_{j}.jpg"
            files[path] = jpeg_with_exif(render(rad, t), t)
            frames.append(frame_record(files[path], path))
        scenes.append({"id": f"test__scene{k}", "repo": "someone/brackets", "category": cat, "split": split,
                       "licence": "no licence stated", "frames": frames[::-1]})  # unsorted on purpose
    # a stack without exposure facts: PNG frames, one shifted by (3, 2) pixels
    rad = scene_radiance(seed=7)
    frames = []
    for j, t in enumerate(TIMES):
        img = render(rad, t)
        if j == 0:
            img = np.roll(img, (2, 3), axis=(0, 1))
        path = f"hw1/nexif/{j}.png"
        files[path] = png_bytes(img)
        frames.append(frame_record(files[path], path))
    # rendered with the exact sRGB curve: no camera tone-curve correction (ev_gain 1)
    scenes.append({"id": "test__noexif", "repo": "someone/brackets", "category": "backlit", "split": "train",
                   "licence": "no licence stated", "frames": frames, "ev_gain": 1.0})
    mirrors, commit = make_mirror(tmp, files)
    for s in scenes:
        s["commit"] = commit
    manifest = {"version": 1, "scenes": scenes, "rejected": []}
    out = tmp / "out"
    report = build(out, manifest, mirrors, log=lambda s: None)
    return {"tmp": tmp, "mirrors": mirrors, "commit": commit, "manifest": manifest, "out": out, "report": report}


def _stack_json(out: Path, sid: str, lockbox: bool = False) -> dict:
    return json.loads((out / ("lockbox" if lockbox else "") / sid / "stack.json").read_text())


def test_frame_record_reads_exif_and_names() -> None:
    rec = frame_record(jpeg_with_exif(np.zeros((16, 16, 3), np.uint8), 1 / 30), "a/IMG_1.jpg")
    assert rec["ev_source"] == "exif" and rec["exposure_time"] == pytest.approx(1 / 30)
    assert rec["iso"] == 100 and rec["f_number"] == 4.0 and rec["device"] == "TestCam 1"
    rec = frame_record(png_bytes(np.zeros((16, 16, 3), np.uint8)), "x/IMG_1146_shutter_0.00025.png")
    assert rec["ev_source"] == "filename" and rec["exposure_time"] == pytest.approx(0.00025)
    rec = frame_record(png_bytes(np.zeros((16, 16, 3), np.uint8)), "x/3.png")
    assert rec["ev_source"] == "estimated" and "exposure_time" not in rec
    assert exposure_from_name("1_128.jpg") == pytest.approx(1 / 128)
    assert exposure_from_name("DSC_0058.png") is None
    # ISO and aperture count: twice the ISO = one stop more light, one stop of aperture = one stop less
    assert exposure_value(0.01, 4.0, 200) - exposure_value(0.01, 4.0, 100) == pytest.approx(1.0)
    assert exposure_value(0.01, 5.657, 100) - exposure_value(0.01, 4.0, 100) == pytest.approx(-1.0, abs=1e-3)


def test_ev_from_exif_sorted_darkest_first(stacks_repo: dict) -> None:
    info = _stack_json(stacks_repo["out"], "test__scene0")
    assert [f["ev_source"] for f in info["frames"]] == ["exif"] * 3
    assert [f["relative_ev"] for f in info["frames"]] == pytest.approx([0.0, 2.0, 4.0], abs=1e-3)
    assert [f["path"] for f in info["frames"]] == [f"hw1/scene0/IMG_{j}.jpg" for j in range(3)]
    means = [f["mean_grey"] for f in info["frames"]]
    assert means == sorted(means)


def test_estimated_ev_close_to_truth_and_alignment(stacks_repo: dict) -> None:
    info = _stack_json(stacks_repo["out"], "test__noexif")
    assert [f["ev_source"] for f in info["frames"]] == ["estimated"] * 3
    assert [f["relative_ev"] for f in info["frames"]] == pytest.approx([0.0, 2.0, 4.0], abs=0.1)
    # camera JPEGs: the measured tone-curve gain divides each estimated step
    frames = [render(scene_radiance(seed=7), t) for t in TIMES]
    assert estimate_relative_ev(frames, gain=CAMERA_EV_GAIN) == pytest.approx(
        [0.0, 2.0 / CAMERA_EV_GAIN, 4.0 / CAMERA_EV_GAIN], abs=0.05)
    # the darkest frame was rolled by (dy, dx) = (2, 3): MTB finds it relative to the middle frame
    dx, dy = info["frames"][0]["shift"]
    assert abs(dx + 3) <= 1 and abs(dy + 2) <= 1  # MTB is exact to about a pixel
    assert info["frames"][1]["shift"] == [0, 0]
    assert info["alignment_error"] < 0.03


def test_labels_sign_best_frame_and_files(stacks_repo: dict) -> None:
    out = stacks_repo["out"]
    for sid in ("test__scene0", "test__scene1", "test__noexif"):
        info = _stack_json(out, sid)
        assert info["best"] == 1
        assert [f["relative_ev_to_best"] for f in info["frames"]] == pytest.approx([-2.0, 0.0, 2.0], abs=0.25)
        labels = [np.load(out / sid / f["label"]) for f in info["frames"]]
        assert all(lab.dtype == np.float16 and lab.shape == (info["height"], info["width"]) for lab in labels)
        assert float(labels[0].mean()) > 0.05  # darker than the ideal → under → r > 0
        assert float(labels[2].mean()) < -0.05  # brighter → over → r < 0
        assert abs(float(labels[1].mean())) < abs(float(labels[0].mean()))
        assert (out / sid / "ideal.png").exists() and (out / sid / "02.png").exists()


def test_sha256_mismatch_names_scene_and_path(stacks_repo: dict, tmp_path: Path) -> None:
    manifest = copy.deepcopy(stacks_repo["manifest"])
    scene = manifest["scenes"][0]
    scene["frames"][1]["sha256"] = "0" * 64
    with pytest.raises(BracketError, match=r"test__scene0.*sha256 mismatch.*hw1/scene0/IMG_1\.jpg"):
        build(tmp_path / "o", manifest, stacks_repo["mirrors"], log=lambda s: None)
    # a tampered file in a later commit of the mirror fails the same way
    mirrors = stacks_repo["mirrors"]
    git_dir = mirrors / "someone+brackets" / "repo"
    work = tmp_path / "clone"
    git("clone", "-q", str(git_dir), str(work), cwd=tmp_path)
    data = bytearray((work / "hw1/scene0/IMG_2.jpg").read_bytes())
    data[-10] ^= 0xFF
    (work / "hw1/scene0/IMG_2.jpg").write_bytes(bytes(data))
    git("commit", "-q", "-am", "tamper", cwd=work)
    git("push", "-q", str(git_dir), "HEAD:refs/heads/tampered", cwd=work)
    manifest = copy.deepcopy(stacks_repo["manifest"])
    manifest["scenes"][0]["commit"] = git("rev-parse", "HEAD", cwd=work)
    with pytest.raises(BracketError, match=r"test__scene0.*hw1/scene0/IMG_2\.jpg"):
        build(tmp_path / "o2", manifest, mirrors, log=lambda s: None)
    # --no-strict builds the rest and reports the failure
    report = build(tmp_path / "o3", manifest, mirrors, strict=False, log=lambda s: None)
    assert len(report.failed) == 1 and "IMG_2.jpg" in report.failed[0]
    assert report.built["train"] == 1 and report.built["val"] == 1


def test_misaligned_stack_is_rejected(stacks_repo: dict, tmp_path: Path) -> None:
    files = {}
    frames = []
    for j, t in enumerate(TIMES):
        rad = scene_radiance(seed=0 if j != 1 else 5)
        img = render(rad, t)
        if j == 1:
            img = img[::-1, ::-1].copy()  # another scene, upside down
        path = f"s/{j}.jpg"
        files[path] = jpeg_with_exif(img, t)
        frames.append(frame_record(files[path], path))
    mirrors, commit = make_mirror(tmp_path, files)
    manifest = {"scenes": [{"id": "bad", "repo": "someone/brackets", "commit": commit, "category": "indoor",
                            "split": "train", "frames": frames}]}
    with pytest.raises(BracketError, match="bad: misaligned"):
        build(tmp_path / "o", manifest, mirrors, log=lambda s: None)


def test_lockbox_only_by_name(stacks_repo: dict) -> None:
    out = stacks_repo["out"]
    index = json.loads((out / "index.json").read_text())
    assert "test__scene2" not in json.dumps(index["scenes"])
    assert index["lockbox"]["n_scenes"] == 1
    assert {s.id for s in load_stacks(out)} == {"test__scene0", "test__noexif"}
    assert {s.id for s in load_stacks(out, "val")} == {"test__scene1"}
    assert {s.id for s in load_stacks(out, "all")} == {"test__scene0", "test__noexif", "test__scene1"}
    lock = load_stacks(out, split="lockbox")
    assert [s.id for s in lock] == ["test__scene2"] and lock[0].category == "night"
    assert stacks_repo["report"].built == {"train": 2, "val": 1, "lockbox": 1}
    with pytest.raises(ValueError):
        load_stacks(out, "test")


def test_sample_training_item(stacks_repo: dict) -> None:
    stacks = load_stacks(stacks_repo["out"], "train")
    st = stacks[0]
    assert st.best == 1 and len(st.frames) == len(st.labels) == 3
    assert st.relative_ev_to_best[st.best] == 0.0
    assert {s.id: s.ev_source for s in stacks} == {"test__scene0": "exif", "test__noexif": "estimated"}
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        image, res = sample_training_item(stacks, rng, 64)
        assert image.shape == (3, 64, 64) and res.shape == (1, 64, 64)
        assert image.dtype == np.float32 and res.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and -1.0 <= res.min() and res.max() <= 1.0
        seen.add(round(float(res.mean()), 2))
    assert len(seen) > 5  # different stacks / frames / windows
    a = sample_training_item(stacks, np.random.default_rng(3), 64)
    b = sample_training_item(stacks, np.random.default_rng(3), 64)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # the label belongs to the frame: a full uncropped window equals r of that frame (up to float16)
    image, res = sample_training_item([st], np.random.default_rng(1), None)
    assert res.shape[1:] == image.shape[1:] == (min(st.frame(0).shape[:2]),) * 2


def test_assign_splits_deterministic_stratified_and_stable() -> None:
    cats = ["indoor"] * 10 + ["night"] * 10 + ["outdoor"] * 5
    scenes = [{"id": f"s{i:02d}", "category": c} for i, c in enumerate(cats)]
    scenes[1]["group"] = scenes[2]["group"] = "same-place"
    a = copy.deepcopy(scenes)
    b = copy.deepcopy(scenes)[::-1]
    assign_splits(a)
    assign_splits(b)
    assert {s["id"]: s["split"] for s in a} == {s["id"]: s["split"] for s in b}
    by = {s["id"]: s["split"] for s in a}
    assert by["s01"] == by["s02"]
    for cat, n in (("indoor", 10), ("night", 10)):
        counts = {k: sum(1 for s in a if s["category"] == cat and s["split"] == k) for k in ("train", "val", "lockbox")}
        assert counts["train"] >= 5 and counts["val"] >= 1 and counts["lockbox"] >= 1, counts
    # adding scenes never moves a recorded split
    more = copy.deepcopy(a) + [{"id": f"n{i}", "category": "night"} for i in range(5)]
    assign_splits(more)
    assert all(s["split"] == by[s["id"]] for s in more if s["id"] in by)
    assert {s["split"] for s in more if s["id"].startswith("n")} <= {"train", "val", "lockbox"}


def test_shipped_manifest_is_consistent() -> None:
    from exposure_cli.data.brackets import DEFAULT_MANIFEST, load_manifest

    m = load_manifest(DEFAULT_MANIFEST)
    ids = [s["id"] for s in m["scenes"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 20
    reserved = ("memorial", "grandcanal", "corridor", "oldhouse", "rovinia", "searock", "secretbeach")
    for s in m["scenes"]:
        assert len(s["commit"]) == 40 and s["split"] in ("train", "val", "lockbox")
        assert s["category"] in ("indoor", "outdoor", "night", "backlit")
        assert s["repo"].lower() not in ("ningning1317/vfx2018", "yi-chen-lee/digivfx_hw1")
        assert len(s["frames"]) >= 3
        for f in s["frames"]:
            assert len(f["sha256"]) == 64 and f["ev_source"] in ("exif", "filename", "list", "estimated")
            assert not any(r in f["path"].lower() for r in reserved), f["path"]
    for r in m["rejected"]:
        assert r["reason"] in ("reserved", "duplicate", "misaligned", "too few frames", "not a bracket", "incomplete")
    # scenes of one group share a split
    groups: dict[str, set[str]] = {}
    for s in m["scenes"]:
        groups.setdefault(s.get("group") or s["id"], set()).add(s["split"])
    assert all(len(v) == 1 for v in groups.values())


class _GradientStack:
    """One frame whose grey level is its row number: a window's rows show how much of the frame it spans."""

    def __init__(self, height: int = 200, width: int = 300) -> None:
        rows = np.repeat(np.arange(height, dtype=np.uint8)[:, None], width, axis=1)
        self.image = np.repeat(rows[:, :, None], 3, axis=2)
        self.frames = [self.image]

    def frame(self, k: int) -> np.ndarray:
        return self.image

    def label(self, k: int) -> np.ndarray:
        return np.zeros(self.image.shape[:2], np.float32)


def test_whole_view_share_cuts_the_frames_widest_square_view() -> None:
    stack = _GradientStack()
    rng = np.random.default_rng(0)
    for _ in range(20):  # every window spans the short side: from the top row to the bottom row
        image, _ = sample_training_item([stack], rng, 64, whole_view_share=1.0)
        assert image[0, 0].mean() < 3 / 255 and image[0, -1].mean() > 196 / 255
    spans = []
    rng = np.random.default_rng(0)
    for _ in range(20):  # the default: random windows of 64 px up to the short side
        image, _ = sample_training_item([stack], rng, 64)
        spans.append(float(image[0, -1].mean() - image[0, 0].mean()))
    assert min(spans) < 0.5 * max(spans)
    # share 0 draws exactly what runs before the option drew (no extra random number)
    a = sample_training_item([stack], np.random.default_rng(5), 64)
    b = sample_training_item([stack], np.random.default_rng(5), 64, whole_view_share=0.0)
    assert np.array_equal(a[0], b[0])


def test_relevel_matches_the_best_frames_level_and_keeps_frames_best_and_evs(stacks_repo: dict, tmp_path: Path) -> None:
    from exposure_cli.color import grey, srgb_to_linear
    from exposure_cli.data.brackets import best_level_gain, relevel, relevel_ideal

    src, dst = stacks_repo["out"], tmp_path / "best"
    counts = relevel(src, dst, log=lambda s: None)
    assert counts == {"train": 2, "val": 1, "lockbox": 1}
    assert json.loads((dst / "index.json").read_text())["ideal_level"] == "best"
    for sid, lockbox in (("test__scene0", False), ("test__scene1", False), ("test__noexif", False), ("test__scene2", True)):
        old, new = _stack_json(src, sid, lockbox), _stack_json(dst, sid, lockbox)
        assert new["best"] == old["best"] and new["ideal_level"] == "best"
        assert [f["relative_ev_to_best"] for f in new["frames"]] == [f["relative_ev_to_best"] for f in old["frames"]]
        d = dst / ("lockbox" if lockbox else "") / sid
        s = src / ("lockbox" if lockbox else "") / sid
        assert (d / "00.png").read_bytes() == (s / "00.png").read_bytes()
        best = (cv2.imread(str(d / new["frames"][new["best"]]["file"]))[..., ::-1]).astype(np.float32) / 255.0
        ideal = cv2.imread(str(d / "ideal.png"))[..., ::-1].astype(np.float32) / 255.0
        g_best, g_ideal = grey(best), grey(ideal)
        mid = (g_best >= 0.1) & (g_best <= 0.8)
        # the re-levelled ideal has the best frame's mean linear level over its mid-tones (8-bit rounding aside)
        assert srgb_to_linear(g_ideal)[mid].mean() == pytest.approx(srgb_to_linear(g_best)[mid].mean(), rel=0.02)
        assert new["ideal_gain"] == pytest.approx(
            best_level_gain(cv2.imread(str(s / "ideal.png"))[..., ::-1], (best * 255).round().astype(np.uint8)), abs=1e-3)
        # labels follow the new ideal: grey(ideal) − grey(frame), and the best frame's mean residual ≈ 0 in linear terms
        lab = np.load(d / new["frames"][0]["label"]).astype(np.float32)
        frame0 = cv2.imread(str(d / "00.png"))[..., ::-1].astype(np.float32) / 255.0
        assert np.abs(lab - (g_ideal - grey(frame0))).max() < 2e-3
        assert new["frames"][0]["mean_residual"] == pytest.approx(float(lab.mean()), abs=1e-3)
    # the gain itself: an ideal twice as bright in linear light as the frame gets 0.5
    frame = np.full((8, 8, 3), 100, np.uint8)
    brighter = relevel_ideal(frame, 2.0)
    assert best_level_gain(brighter, frame) == pytest.approx(0.5, rel=0.02)
    assert np.abs(relevel_ideal(brighter, best_level_gain(brighter, frame)).astype(int) - 100).max() <= 1


def test_relevel_command_refuses_to_overwrite_its_source(stacks_repo: dict) -> None:
    from typer.testing import CliRunner

    from exposure_cli.cli import app

    result = CliRunner().invoke(app, ["data", "relevel", str(stacks_repo["out"]), str(stacks_repo["out"])])
    assert result.exit_code != 0 and "new folder" in result.output


def test_stack_overlays_report_the_stops_exposure_eval_reports(stacks_repo: dict, tmp_path: Path) -> None:
    """The docs' overlay tables (docs/model/stacks.md) quote ``ev_correction`` per frame: it must be the number
    the product and ``exposure eval`` report — through the weights' stops-of-correction head, not the raw map
    stops (the tool used to leave the head out, so its column disagreed with the eval by the head's gain and
    offset)."""
    from exposure_cli.stack_evaluation import evaluate_stacks
    from exposure_cli.training.overlays import write_stack_overlays

    out = stacks_repo["out"]
    written = write_stack_overlays(out, "val", None, tmp_path / "ov")
    rows = [line.split("|") for line in (tmp_path / "ov" / "stacks.md").read_text().splitlines()
            if line.startswith("| [stack_")]
    assert len(written) == len(rows) == 3  # darkest, best, brightest of the one val stack
    tool = {cells[1].strip().split("](")[0].lstrip("["): float(cells[5]) for cells in rows}

    result = evaluate_stacks(out, [("eat", None)], split="val")
    scene = next(r for r in result["results"] if r["model"] == "eat")["per_scene"][0]
    stack = load_stacks(out, "val")[0]
    for k in sorted({0, stack.best, len(stack.frames) - 1}):
        assert tool[f"stack_{stack.id}_{k:02d}.jpg"] == pytest.approx(scene["ev_correction"][k], abs=0.011)
    # and the head is not the identity for the shipped weights, so the check above can tell the two apart
    from exposure_cli.analyzers import create_analyzer

    head = create_analyzer("eat").ev_calibration
    assert (head.gain, head.offset) != (1.0, 0.0)


def test_per_stack_results_carry_the_flags_the_counts_add_up(stacks_repo: dict) -> None:
    """``per_scene`` holds each stack's darkest / brightest flags, so a paired comparison of two models
    (tools/stack_count_bootstrap.py) can be made from the JSON: they sum to the summary's counts."""
    from exposure_cli.stack_evaluation import evaluate_stacks

    result = evaluate_stacks(stacks_repo["out"], [("baseline", None)], split="val")
    for r in result["results"]:
        for key in ("darkest_flagged", "brightest_flagged"):
            assert all(isinstance(s[key], bool) for s in r["per_scene"])
            assert sum(s[key] for s in r["per_scene"]) == r[key]
        assert sum(s["pick"] == s["best"] for s in r["per_scene"]) == r["best_pick"]


def test_eval_command_prints_the_per_category_table(stacks_repo: dict) -> None:
    from typer.testing import CliRunner

    from exposure_cli.cli import app

    out = stacks_repo["out"]
    result = CliRunner().invoke(app, ["eval", str(out), "--split", "train", "--model", "baseline"],
                                catch_exceptions=False, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "per scene category" in result.output
    lines = [line for line in result.output.splitlines() if line.strip().startswith(("baseline", "mean-grey"))]
    # the two train stacks are indoor and backlit: one row per model and category, besides the main table's
    assert sum("indoor" in line for line in lines) == 2 and sum("backlit" in line for line in lines) == 2
    data = CliRunner().invoke(app, ["eval", str(out), "--split", "train", "--model", "baseline", "--format", "json"],
                              catch_exceptions=False)
    import json as _json

    rows = next(r for r in _json.loads(data.output)["results"] if r["model"] == "baseline")["per_category"]
    assert sorted(r["category"] for r in rows) == ["backlit", "indoor"]


def test_stack_overlays_of_thumbnails_read_the_shrunk_frames(stacks_repo: dict, tmp_path: Path) -> None:
    """--long-side shrinks every frame before the analyzer reads it, and shows the tiles enlarged."""
    import cv2

    from exposure_cli.training.overlays import write_stack_overlays

    written = write_stack_overlays(stacks_repo["out"], "val", None, tmp_path / "ov", long_side=64)
    assert len(written) == 3
    for path in written:
        tile_height = cv2.imread(str(path)).shape[0] - 26  # the caption band
        # a frame 64 px on its long side, enlarged 4 ×: the tile is a multiple of 4, at most 256 and larger than 64
        assert tile_height % 4 == 0 and 64 < tile_height <= 4 * 64
    assert "--long-side 64" in (tmp_path / "ov" / "stacks.md").read_text()
