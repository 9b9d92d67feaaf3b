"""Real exposure brackets: the same scene shot by a real camera at several exposures, as labelled data.

The committed manifest (``brackets_manifest.json``, next to this module) records every scene: the public
Git repository it comes from, the commit, each frame's path and sha256, the repository's licence note, the
exposure time (and aperture, ISO) with where it came from (``exif``, ``filename``, ``list`` file, or
``estimated`` from the pixels), the scene's category (indoor / outdoor / night / backlit), the camera, and
its split. Rejected candidates are recorded too, with the reason.

:func:`build` reads the frames from bare Git mirrors (``<mirrors>/<owner>+<name>/repo``) by commit and
path, verifies every sha256, and writes::

    OUT/index.json                     train and val scenes (the lockbox is only counted here)
    OUT/<scene>/NN.png                 frames, aligned (MTB) and cropped to their common area, long side ≤
                                       1024, sorted from darkest to brightest exposure
    OUT/<scene>/ideal.png              the label ideal: Mertens exposure fusion of the aligned frames
    OUT/<scene>/labels/NN.npy          float16 residual r = grey(ideal) − grey(frame) (r < 0 over, r > 0 under)
    OUT/<scene>/stack.json             exposure facts per frame, relative EV, best frame, source
    OUT/lockbox/index.json             lockbox scenes, OUT/lockbox/<scene>/... (same layout)

The lockbox is held out for one final score: :func:`load_stacks` returns it only for an explicit
``split="lockbox"``, and no other function here enumerates it.

Why the fused ideal and not the best frame: see docs/DATA.md, "Real exposure brackets".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..color import grey, residual, srgb_to_linear

MANIFEST_VERSION = 1
DEFAULT_MANIFEST = Path(__file__).with_name("brackets_manifest.json")
#: Long side of the written frames.
LONG_SIDE = 1024
#: Share of scenes per split (percent), stratified by category.
SPLIT_PERCENT = {"train": 60, "val": 20, "lockbox": 20}
SPLITS = ("train", "val", "lockbox")
CATEGORIES = ("indoor", "outdoor", "night", "backlit")
#: Alignment check: exposure-normalised median |Δgrey| between adjacent aligned frames above this rejects
#: the stack (see :func:`alignment_error`).
MAX_ALIGNMENT_ERROR = 0.06
#: Pixels count as well exposed for EV estimation / alignment checks when their grey is in this range.
WELL_EXPOSED = (0.06, 0.92)
#: Real cameras' tone curves are steeper than sRGB in the mid-tones, so log ratios of ``srgb_to_linear``
#: values overstate an exposure step: over 94 adjacent-frame steps of the stacks with EXIF times the
#: estimate was 1.45× the true step (median; quartiles 1.26–1.62). Estimated EVs of real stacks are divided
#: by this (see docs/DATA.md, "Real exposure brackets").
CAMERA_EV_GAIN = 1.45
#: Frames whose sizes differ by more than this fraction cannot be one stack.
MAX_SIZE_MISMATCH = 0.02


class BracketError(RuntimeError):
    """A stack could not be built (missing mirror or file, sha256 mismatch, failed alignment)."""


# ------------------------------------------------------------------------------------------- reading


def mirror_git_dir(mirrors: Path, repo: str) -> Path:
    """The bare git directory of ``repo`` (``owner/name``) under ``mirrors``."""
    base = Path(mirrors) / repo.replace("/", "+") / "repo"
    if (base / ".git").is_dir():
        return base / ".git"
    if not base.is_dir():
        raise BracketError(f"no mirror of {repo} at {base} (fetch the repository first)")
    return base


def read_blob(mirrors: Path, repo: str, commit: str, path: str) -> bytes:
    """Bytes of ``path`` at ``commit`` in the mirror of ``repo``."""
    git_dir = mirror_git_dir(mirrors, repo)
    proc = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "blob", f"{commit}:{path}"],
                          capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip()
        raise BracketError(f"{repo}@{commit[:10]}: cannot read {path}: {msg}")
    return proc.stdout


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_frame(data: bytes, long_side: int = LONG_SIDE) -> np.ndarray:
    """Image bytes → uint8 RGB H×W×3, EXIF orientation applied, area-resized so max(H, W) ≤ long_side."""
    import cv2

    from ..decoding import apply_orientation, limit_long_side
    from ..exif import read_exif

    from ..decoding import declared_size, reduction_factor, sniff_format

    flag = cv2.IMREAD_COLOR
    fmt = sniff_format(data)
    size = declared_size(data, fmt) if fmt else None
    if fmt == "jpeg" and size is not None:
        # DCT-domain reduction first (exact 1/2, 1/4, 1/8 averages; never below long_side), then INTER_AREA
        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}[reduction_factor(max(size), long_side)]
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise BracketError("undecodable image")
    img = limit_long_side(img, long_side)
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(apply_orientation(rgb, read_exif(data).orientation))


# --------------------------------------------------------------------------------- exposure values


def exposure_value(time: float | None, f_number: float | None = None, iso: float | None = None) -> float | None:
    """log2 of the light a frame collected, up to a constant: time · ISO / N² (missing factors count as 1)."""
    if not time or time <= 0:
        return None
    v = math.log2(time)
    if iso and iso > 0:
        v += math.log2(iso / 100.0)
    if f_number and f_number > 0:
        v -= 2 * math.log2(f_number)
    return v


def exposure_from_name(name: str) -> float | None:
    """Exposure time in seconds from a file name such as ``IMG_1_shutter_0.008.jpg``, ``1_32.jpg`` (1/32 s),
    ``t=0.25.png`` or ``exp_1-60.jpg``; ``None`` when the name says nothing."""
    stem = Path(name).stem
    m = re.search(r"(?:shutter|exp(?:osure)?|time|t)[_=\-]?(\d+(?:\.\d+)?)(?:[_\-/](\d+(?:\.\d+)?))?$", stem, re.I)
    if m:
        a = float(m.group(1))
        return a / float(m.group(2)) if m.group(2) else a
    m = re.fullmatch(r"(\d+)_(\d+)", stem)
    if m and float(m.group(2)) > 0:
        return float(m.group(1)) / float(m.group(2))
    return None


def estimate_relative_ev(frames: Sequence[np.ndarray], min_pixels: int = 500, gain: float = 1.0) -> list[float]:
    """Relative EV of frames sorted darkest → brightest, from the pixels.

    For each adjacent pair: the median log2 ratio of linear intensities (luminance of ``srgb_to_linear``
    of the pixels) over pixels well exposed in both frames (every channel inside ``WELL_EXPOSED``). Returns the cumulative EVs (first frame 0). A pair with fewer
    than ``min_pixels`` common well-exposed pixels falls back to the ratio of their mean linear levels.
    Each step is divided by ``gain`` (1 for sRGB renderings; :data:`CAMERA_EV_GAIN` for camera JPEGs).
    """
    evs = [0.0]
    lo, hi = WELL_EXPOSED
    for a, b in zip(frames[:-1], frames[1:]):
        fa, fb = a.astype(np.float32) / 255.0, b.astype(np.float32) / 255.0
        # linear light per channel, then luminance; well exposed = every channel inside the range
        la, lb = grey(srgb_to_linear(fa)), grey(srgb_to_linear(fb))
        mask = (fa.min(-1) > lo) & (fa.max(-1) < hi) & (fb.min(-1) > lo) & (fb.max(-1) < hi)
        if int(mask.sum()) >= min_pixels:
            d = float(np.median(np.log2(lb[mask] / la[mask])))
        else:
            d = float(np.log2((lb.mean() + 1e-4) / (la.mean() + 1e-4)))
        evs.append(evs[-1] + d / gain)
    return evs


# --------------------------------------------------------------------------------------- alignment


def _grey_u8(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


#: A frame takes part in alignment only when at least this share of its pixels is neither crushed (grey < 8)
#: nor clipped (grey > 247); darker or brighter frames carry too little structure for MTB and keep the
#: shift of their neighbour (brackets are shot from a tripod or in one burst).
MIN_ALIGNABLE_SHARE = 0.25
#: Largest shift accepted between two adjacent frames, as a share of the long side; a larger one is an MTB
#: failure (periodic texture, almost no structure) and counts as 0 — the alignment check catches a stack
#: that really moved.
MAX_STEP_SHIFT = 0.03


def _alignable(g: np.ndarray) -> bool:
    return float(((g >= 8) & (g <= 247)).mean()) >= MIN_ALIGNABLE_SHARE


def align_frames(frames: Sequence[np.ndarray], max_bits: int = 5) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Align frames (sorted by exposure) with OpenCV's median-threshold-bitmap aligner
    (``cv2.createAlignMTB``) and crop all of them to the area every frame covers (no black borders).

    Each frame is matched to its neighbour towards the middle frame (adjacent exposures look most alike)
    and the shifts are chained. Frames too dark or too bright to carry structure
    (:data:`MIN_ALIGNABLE_SHARE`) and steps larger than :data:`MAX_STEP_SHIFT` keep the neighbour's shift.

    Returns:
        (aligned frames, (dx, dy) shift of each frame relative to the middle frame).
    """
    import cv2

    mtb = cv2.createAlignMTB(max_bits)
    n = len(frames)
    pivot = n // 2
    greys = [_grey_u8(f) for f in frames]
    ok = [_alignable(g) for g in greys]
    h, w = frames[0].shape[:2]
    max_step = MAX_STEP_SHIFT * max(h, w)
    shifts: list[tuple[int, int]] = [(0, 0)] * n
    for direction in (-1, 1):
        i = pivot + direction
        while 0 <= i < n:
            j = i - direction  # the neighbour towards the middle, already placed
            step = (0, 0)
            if ok[i] and ok[j]:
                s = mtb.calculateShift(greys[j], greys[i])
                if max(abs(int(s[0])), abs(int(s[1]))) <= max_step:
                    step = (int(s[0]), int(s[1]))
            shifts[i] = (shifts[j][0] + step[0], shifts[j][1] + step[1])
            i += direction
    # frame content at (x, y) of the middle frame sits at (x - dx, y - dy) in the frame
    x0 = max(0, max(dx for dx, _ in shifts))
    y0 = max(0, max(dy for _, dy in shifts))
    x1 = min(w, min(w + dx for dx, _ in shifts))
    y1 = min(h, min(h + dy for _, dy in shifts))
    if x1 - x0 < w // 2 or y1 - y0 < h // 2:
        raise BracketError(f"alignment shifts too large: {shifts}")
    out = [np.ascontiguousarray(f[y0 - dy : y1 - dy, x0 - dx : x1 - dx]) for f, (dx, dy) in zip(frames, shifts)]
    return out, shifts


def _match_histogram(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Monotone map of ``src`` values onto ``ref``'s distribution (exposure normalisation that needs no
    knowledge of the camera's tone curve)."""
    s_vals, s_idx, s_counts = np.unique(src.ravel(), return_inverse=True, return_counts=True)
    r_vals, r_counts = np.unique(ref.ravel(), return_counts=True)
    s_q = np.cumsum(s_counts) / src.size
    r_q = np.cumsum(r_counts) / ref.size
    return np.interp(s_q, r_q, r_vals)[s_idx].reshape(src.shape)


def alignment_error(frames: Sequence[np.ndarray], size: int = 256, min_share: float = 0.05) -> float:
    """Largest exposure-normalised median |Δgrey| between adjacent frames (grey in [0, 1]).

    Each pair is compared on a ``size``-pixel thumbnail (blurred: noise and JPEG blocks do not count): the
    brighter frame's grey is histogram-matched to the darker one's, and the median absolute difference is
    taken over pixels well exposed in both. Aligned stacks of a static scene score about 0.01–0.03;
    shifted or moving content scores more. Pairs with under ``min_share`` common well-exposed pixels are
    skipped; 0.0 if none is comparable.
    """
    import cv2

    worst = 0.0
    thumbs = []
    for f in frames:
        g = _grey_u8(f)
        s = size / max(g.shape)
        t = cv2.resize(g, (max(8, round(g.shape[1] * s)), max(8, round(g.shape[0] * s))), interpolation=cv2.INTER_AREA)
        thumbs.append(cv2.GaussianBlur(t.astype(np.float32) / 255.0, (0, 0), 1.0))
    lo, hi = WELL_EXPOSED
    for a, b in zip(thumbs[:-1], thumbs[1:]):
        mask = (a > lo) & (a < hi) & (b > lo) & (b < hi)
        if mask.mean() < min_share:
            continue
        bm = _match_histogram(b[mask], a[mask])
        worst = max(worst, float(np.median(np.abs(bm - a[mask]))))
    return worst


# --------------------------------------------------------------------------------------------- ideal


def mertens(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Mertens exposure fusion (``cv2.createMergeMertens``) of uint8 RGB frames → uint8 RGB, single-threaded
    (OpenCV's parallel float sums differ by a grey level between runs otherwise)."""
    import cv2

    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        fused = cv2.createMergeMertens().process(bgr)
    finally:
        cv2.setNumThreads(threads)
    out = np.round(np.clip(fused, 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def stack_labels(ideal: np.ndarray, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Residual maps r = grey(ideal) − grey(frame) (sRGB values in [0, 1]) for every frame, float32."""
    ideal_f = ideal.astype(np.float32) / 255.0
    return [residual(ideal_f, f.astype(np.float32) / 255.0) for f in frames]


# -------------------------------------------------------------------------------------------- splits


def _unit_hash(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / float(16**12)


def assign_splits(scenes: list[dict[str, Any]], percent: dict[str, int] = SPLIT_PERCENT) -> None:
    """Give every scene without a ``split`` one, in place, deterministically, stratified by category.

    Scenes are grouped (``group``, default the id; scenes of one place share a group and a split). Within a
    category, groups that have no split yet are taken in order of a hash of the group name, and each goes to
    the split furthest below its share of that category (counting scenes that already have a split), ties
    in the order train, val, lockbox. Splits already recorded never change, so adding scenes later cannot
    move a lockbox scene into training.
    """
    by_group: dict[str, list[dict[str, Any]]] = {}
    for s in scenes:
        by_group.setdefault(s.get("group") or s["id"], []).append(s)
    for cat in sorted({s["category"] for s in scenes}):
        members = [s for s in scenes if s["category"] == cat]
        counts = {k: sum(1 for s in members if s.get("split") == k) for k in percent}
        todo = sorted({s.get("group") or s["id"] for s in members if not s.get("split")}, key=_unit_hash)
        for g in todo:
            group = [s for s in by_group[g] if not s.get("split")]
            fixed = {s["split"] for s in by_group[g] if s.get("split")}
            if fixed:
                split = sorted(fixed)[0]
            else:
                total = sum(counts.values()) + len([s for s in group if s["category"] == cat])
                deficit = {k: percent[k] / 100.0 * total - counts[k] for k in percent}
                split = max(percent, key=lambda k: (round(deficit[k], 9), -list(percent).index(k)))
            for s in group:
                s["split"] = split
                if s["category"] == cat:
                    counts[split] += 1


# ---------------------------------------------------------------------------------------------- build


@dataclass
class BuildReport:
    """What :func:`build` did."""

    built: dict[str, int] = field(default_factory=dict)  # split → scenes
    frames: int = 0
    failed: list[str] = field(default_factory=list)  # "scene: reason"
    categories: dict[str, dict[str, int]] = field(default_factory=dict)  # split → category → scenes


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    return json.loads(Path(path or DEFAULT_MANIFEST).read_text())


def _stack_dir(out: Path, scene: dict[str, Any]) -> Path:
    return out / ("lockbox" if scene["split"] == "lockbox" else "") / scene["id"]


def build_stack(scene: dict[str, Any], mirrors: Path, out_dir: Path, long_side: int = LONG_SIDE,
                max_alignment_error: float = MAX_ALIGNMENT_ERROR) -> dict[str, Any]:
    """Read, verify, align, fuse and label one scene of the manifest; write it into ``out_dir``.

    Returns:
        The scene's ``stack.json`` content.

    Raises:
        BracketError: a frame is missing or its sha256 differs (naming scene and path), frames disagree in
            size, or alignment fails.
    """
    import cv2

    frames, metas = [], []
    for fr in scene["frames"]:
        data = read_blob(mirrors, scene["repo"], scene["commit"], fr["path"])
        digest = sha256_bytes(data)
        if digest != fr["sha256"]:
            raise BracketError(f"scene {scene['id']}: sha256 mismatch for {scene['repo']}:{fr['path']} "
                               f"(manifest {fr['sha256'][:16]}…, file {digest[:16]}…)")
        try:
            frames.append(decode_frame(data, long_side))
        except BracketError as exc:
            raise BracketError(f"scene {scene['id']}: {fr['path']}: {exc}") from None
        metas.append(fr)
    if len(frames) < 3:
        raise BracketError(f"scene {scene['id']}: {len(frames)} frames (need 3)")
    h, w = frames[0].shape[:2]
    for f, fr in zip(frames, metas):
        if abs(f.shape[0] - h) > MAX_SIZE_MISMATCH * h or abs(f.shape[1] - w) > MAX_SIZE_MISMATCH * w:
            raise BracketError(f"scene {scene['id']}: {fr['path']} is {f.shape[1]}×{f.shape[0]}, "
                               f"the first frame {w}×{h}")
    frames = [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]

    # order darkest → brightest: by recorded exposure where every frame has one, else by mean linear level
    evs_known = [exposure_value(fr.get("exposure_time"), fr.get("f_number"), fr.get("iso")) for fr in metas]
    known = all(v is not None for v in evs_known)
    if known:
        order = sorted(range(len(frames)), key=lambda i: (evs_known[i], i))
    else:
        level = [float(srgb_to_linear(grey(f.astype(np.float32) / 255.0)).mean()) for f in frames]
        order = sorted(range(len(frames)), key=lambda i: (level[i], i))
    frames = [frames[i] for i in order]
    metas = [metas[i] for i in order]

    aligned, shifts = align_frames(frames)
    err = alignment_error(aligned)
    if err > max_alignment_error:
        raise BracketError(f"scene {scene['id']}: misaligned after MTB (exposure-normalised median "
                           f"|Δgrey| {err:.3f} > {max_alignment_error})")
    if known:
        base = evs_known[order[0]]
        rel = [float(evs_known[i] - base) for i in order]
    else:
        rel = estimate_relative_ev(aligned, gain=scene.get("ev_gain", CAMERA_EV_GAIN))
    ideal = mertens(aligned)
    labels = stack_labels(ideal, aligned)
    mean_abs = [float(np.abs(r).mean()) for r in labels]
    best = int(np.argmin(mean_abs))

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(exist_ok=True)
    for k, (f, r) in enumerate(zip(aligned, labels)):
        cv2.imwrite(str(out_dir / f"{k:02d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        np.save(out_dir / "labels" / f"{k:02d}.npy", r.astype(np.float16))
    cv2.imwrite(str(out_dir / "ideal.png"), cv2.cvtColor(ideal, cv2.COLOR_RGB2BGR))
    info = {
        "id": scene["id"],
        "split": scene["split"],
        "category": scene["category"],
        "device": scene.get("device"),
        "width": int(aligned[0].shape[1]),
        "height": int(aligned[0].shape[0]),
        "n_frames": len(aligned),
        "best": best,
        "alignment_error": round(err, 4),
        "ideal_mean_grey": round(float(grey(ideal.astype(np.float32) / 255.0).mean()), 4),
        "source": {"repo": scene["repo"], "commit": scene["commit"], "licence": scene.get("licence", "")},
        "frames": [
            {
                "file": f"{k:02d}.png",
                "label": f"labels/{k:02d}.npy",
                "path": m["path"],
                "sha256": m["sha256"],
                "exposure_time": m.get("exposure_time"),
                "f_number": m.get("f_number"),
                "iso": m.get("iso"),
                "ev_source": m.get("ev_source") if known else "estimated",
                "relative_ev": round(rel[k], 3),
                "relative_ev_to_best": round(rel[k] - rel[best], 3),
                "shift": list(shifts[k]),
                "mean_grey": round(float(grey(aligned[k].astype(np.float32) / 255.0).mean()), 4),
                "mean_residual": round(float(labels[k].mean()), 4),
                "mean_abs_residual": round(mean_abs[k], 4),
            }
            for k, m in enumerate(metas)
        ],
    }
    (out_dir / "stack.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def build(out: Path, manifest: dict[str, Any], mirrors: Path, long_side: int = LONG_SIDE,
          scenes: Iterable[str] | None = None, strict: bool = True,
          log: Callable[[str], None] = print) -> BuildReport:
    """Build every kept scene of ``manifest`` into ``out`` (see the module docstring for the layout).

    A scene whose stack.json exists and records the same frame sha256s is not rebuilt.

    Raises:
        BracketError: with ``strict``, the first scene that fails (sha256 mismatch, missing file, ...).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(scenes) if scenes else None
    report = BuildReport()
    entries: dict[str, list[dict[str, Any]]] = {k: [] for k in SPLITS}
    for scene in manifest["scenes"]:
        if wanted is not None and scene["id"] not in wanted:
            continue
        d = _stack_dir(out, scene)
        info = None
        if (d / "stack.json").exists():
            old = json.loads((d / "stack.json").read_text())
            if [f["sha256"] for f in old["frames"]] == sorted_shas(old, scene) and old.get("split") == scene["split"]:
                info = old
        if info is None:
            try:
                info = build_stack(scene, mirrors, d, long_side)
            except BracketError as exc:
                if strict:
                    raise
                report.failed.append(str(exc))
                log(f"  failed: {exc}")
                continue
            log(f"  {scene['split']:7s} {scene['id']}: {info['n_frames']} frames, best {info['best']}, "
                f"EV {info['frames'][0]['relative_ev_to_best']:+.1f}…{info['frames'][-1]['relative_ev_to_best']:+.1f}")
        if "ideal_mean_grey" not in info:  # stacks built before the field existed
            info["ideal_mean_grey"] = round(float(grey(_read_png(d / "ideal.png").astype(np.float32) / 255.0).mean()), 4)
            (d / "stack.json").write_text(json.dumps(info, indent=1) + "\n")
        entry = {k: info[k] for k in ("id", "split", "category", "n_frames", "best", "width", "height", "device",
                                      "ideal_mean_grey")}
        entry["path"] = str(d.relative_to(out))
        entry["relative_ev_to_best"] = [f["relative_ev_to_best"] for f in info["frames"]]
        entries[scene["split"]].append(entry)
        report.frames += info["n_frames"]
    for k in SPLITS:
        report.built[k] = len(entries[k])
        report.categories[k] = {c: sum(1 for e in entries[k] if e["category"] == c) for c in CATEGORIES}
    if wanted is None:  # a full build: drop stacks of scenes no longer in the manifest or moved to another split
        keep = {_stack_dir(out, s).resolve() for s in manifest["scenes"]}
        import shutil

        for old in list(out.glob("*/stack.json")) + list(out.glob("lockbox/*/stack.json")):
            if old.parent.resolve() not in keep:
                shutil.rmtree(old.parent)
                log(f"  removed stale {old.parent.relative_to(out)}")
    index = {
        "version": MANIFEST_VERSION,
        "long_side": long_side,
        "scenes": entries["train"] + entries["val"],
        "counts": {k: report.built[k] for k in ("train", "val")},
        "lockbox": {"n_scenes": report.built["lockbox"], "note": "read only with load_stacks(root, split='lockbox')"},
    }
    (out / "lockbox").mkdir(exist_ok=True)
    _write_atomic(out / "lockbox" / "index.json",
                  json.dumps({"version": MANIFEST_VERSION, "scenes": entries["lockbox"]}, indent=1) + "\n")
    _write_atomic(out / "index.json", json.dumps(index, indent=1) + "\n")
    return report


def _write_atomic(path: Path, text: str) -> None:
    """Readers (a training run using the folder) see the old or the new file, never half of one."""
    from ..atomic import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------------- the ideal's overall level

def best_level_gain(ideal: np.ndarray, best: np.ndarray) -> float:
    """Linear gain that brings the fused ideal's overall level to the best frame's: the ratio of their mean
    linear grey over the pixels the best frame *measures* (the mid-tones ``ev_correction`` reads,
    :data:`exposure_cli.correction.LOW` … ``HIGH``; all pixels when under ``MIN_MEASURED`` are).

    The Mertens fusion lifts shadows (night scenes most: median gain 0.79–0.88 there), so a frame's offset
    from the best frame and the stops its labels ask for pull apart; re-levelled labels keep the fusion's
    *where* (each region from the frames that expose it well) and take the best frame's *how bright*."""
    from ..correction import HIGH, LOW, MIN_MEASURED

    g_best = grey(best.astype(np.float32) / 255.0)
    g_ideal = grey(ideal.astype(np.float32) / 255.0)
    mask = (g_best >= LOW) & (g_best <= HIGH)
    if mask.mean() < MIN_MEASURED:
        mask = np.ones_like(mask)
    lin_ideal = float(srgb_to_linear(g_ideal)[mask].mean())
    return float(srgb_to_linear(g_best)[mask].mean()) / max(lin_ideal, 1e-6)


def relevel_ideal(ideal: np.ndarray, gain: float) -> np.ndarray:
    """The uint8 RGB ideal times `gain` in linear light (clipped at white), back to uint8 sRGB."""
    from ..color import linear_to_srgb

    lin = srgb_to_linear(ideal.astype(np.float32) / 255.0) * np.float32(gain)
    return np.clip(np.rint(linear_to_srgb(np.clip(lin, 0.0, 1.0)) * 255.0), 0, 255).astype(np.uint8)


def relevel(src: Path, dst: Path, log: Callable[[str], None] = print) -> dict[str, int]:
    """Derive a bracket folder whose ideals are re-levelled to each stack's best frame (`best_level_gain`).

    Frames are hard-linked from `src` (copied where links are impossible); ideal, labels and the JSON files
    are written anew; every stack keeps its best frame and relative EVs (the EV targets do not move).
    ``stack.json`` records ``ideal_level: "best"`` and the gain. Returns stacks per split."""
    import shutil

    import cv2

    src, dst = Path(src), Path(dst)
    counts: dict[str, int] = {}
    for index_rel in ("index.json", "lockbox/index.json"):
        index = json.loads((src / index_rel).read_text())
        for entry in index["scenes"]:
            s_dir, d_dir = src / entry["path"], dst / entry["path"]
            info = json.loads((s_dir / "stack.json").read_text())
            (d_dir / "labels").mkdir(parents=True, exist_ok=True)
            frames = []
            for f in info["frames"]:
                target = d_dir / f["file"]
                if not target.exists():
                    try:
                        target.hardlink_to(s_dir / f["file"])
                    except OSError:
                        shutil.copyfile(s_dir / f["file"], target)
                frames.append(_read_png(target))
            fused = _read_png(s_dir / "ideal.png")
            gain = best_level_gain(fused, frames[int(info["best"])])
            ideal = relevel_ideal(fused, gain)
            cv2.imwrite(str(d_dir / "ideal.png"), cv2.cvtColor(ideal, cv2.COLOR_RGB2BGR))
            for f, frame, r in zip(info["frames"], frames, stack_labels(ideal, frames)):
                np.save(d_dir / f["label"], r.astype(np.float16))
                f["mean_residual"] = round(float(r.mean()), 4)
                f["mean_abs_residual"] = round(float(np.abs(r).mean()), 4)
            info["ideal_level"], info["ideal_gain"] = "best", round(gain, 4)
            info["ideal_mean_grey"] = round(float(grey(ideal.astype(np.float32) / 255.0).mean()), 4)
            entry["ideal_mean_grey"] = info["ideal_mean_grey"]
            _write_atomic(d_dir / "stack.json", json.dumps(info, indent=1) + "\n")
            counts[info["split"]] = counts.get(info["split"], 0) + 1
            log(f"  {info['split']:7s} {info['id']}: gain {gain:.3f}")
        index["ideal_level"] = "best"
        (dst / index_rel).parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(dst / index_rel, json.dumps(index, indent=1) + "\n")
    return counts


def sorted_shas(stack_info: dict[str, Any], scene: dict[str, Any]) -> list[str]:
    """The manifest's frame sha256s in the order the built stack has them (darkest first), for the
    up-to-date check; [] when the frame sets differ."""
    want = {f["sha256"] for f in scene["frames"]}
    have = [f["sha256"] for f in stack_info["frames"]]
    return have if set(have) == want and len(have) == len(want) else []


# ---------------------------------------------------------------------------------------- loading


@dataclass
class Stack:
    """One built scene.

    Attributes:
        id, category, split: As in the manifest.
        frames: Paths of the aligned frames (uint8 RGB PNG), darkest first; :meth:`frame` decodes one.
        ideal: Path of the fused ideal.
        labels: Paths of the residual maps (float16 .npy), one per frame.
        relative_ev: EV of each frame relative to the darkest (log2 exposure ratio).
        relative_ev_to_best: EV of each frame relative to the best frame.
        best: Index of the frame with the smallest mean |r| against the ideal.
        ev_source: Where the EVs come from: ``exif``, ``filename``, ``list`` (exact exposure facts) or
            ``estimated`` (from the pixels; its scale is uncertain by about ±20 %, see docs/DATA.md).
    """

    id: str
    category: str
    split: str
    frames: list[Path]
    ideal: Path
    labels: list[Path]
    relative_ev: list[float]
    relative_ev_to_best: list[float]
    best: int
    ev_source: str = ""
    info: dict[str, Any] = field(default_factory=dict, repr=False)
    _cache: dict[Any, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def frame(self, k: int, keep: bool = True) -> np.ndarray:
        """Frame ``k`` as uint8 RGB (cached; ``keep=False`` reads it without keeping it)."""
        key = ("f", k)
        if key in self._cache:
            return self._cache[key]
        image = _read_png(self.frames[k])
        if keep:
            self._cache[key] = image
        return image

    def label(self, k: int, keep: bool = True) -> np.ndarray:
        """Residual map of frame ``k``, float32 H×W (cached as float16; ``keep=False``: not kept)."""
        key = ("l", k)
        if key in self._cache:
            return self._cache[key].astype(np.float32)
        label = np.load(self.labels[k], allow_pickle=False)
        if keep:
            self._cache[key] = label
        return label.astype(np.float32)

    def ideal_rgb(self) -> np.ndarray:
        key = ("i",)
        if key not in self._cache:
            self._cache[key] = _read_png(self.ideal)
        return self._cache[key]


def _read_png(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_stacks(root: str | Path, split: str = "train") -> list[Stack]:
    """The built stacks of ``split`` (``train``, ``val``, ``all`` = train + val, or — only when asked by
    name — ``lockbox``), in index order. Frames are read lazily."""
    root = Path(root)
    if split not in ("train", "val", "all", "lockbox"):
        raise ValueError(f"unknown split {split!r} (train, val, all, lockbox)")
    index_path = root / "lockbox" / "index.json" if split == "lockbox" else root / "index.json"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} not found (build it with `exposure data brackets {root}`)")
    index = json.loads(index_path.read_text())
    stacks = []
    for e in index["scenes"]:
        if split != "all" and e["split"] != split:
            continue
        d = root / e["path"]
        info = json.loads((d / "stack.json").read_text())
        stacks.append(Stack(
            id=info["id"], category=info["category"], split=info["split"],
            frames=[d / f["file"] for f in info["frames"]], ideal=d / "ideal.png",
            labels=[d / f["label"] for f in info["frames"]],
            relative_ev=[f["relative_ev"] for f in info["frames"]],
            relative_ev_to_best=[f["relative_ev_to_best"] for f in info["frames"]],
            best=int(info["best"]), ev_source=info["frames"][0].get("ev_source") or "", info=info,
        ))
    return stacks


def sample_training_item(stacks: Sequence[Stack], rng: np.random.Generator, crop: int | None = 256,
                         whole_view_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A random frame of a random stack, as a square crop with its label.

    Args:
        stacks: From :func:`load_stacks`.
        rng: Random generator (stack, frame, window and flip are drawn from it, in that order).
        crop: Output side; the window is a random square of side ≥ ``crop`` (up to the frame's short side)
            area-resized to ``crop``. ``None``: the largest centred square, unresized.
        whole_view_share: Share of items whose window spans the frame's short side (the widest square
            view, the scale at which the analyzer sees a whole frame); drawn before the window only when
            > 0, so 0 keeps earlier runs' draws.

    Returns:
        (image float32 3×crop×crop in [0, 1], residual float32 1×crop×crop). Flips are horizontal only.
    """
    import cv2

    if not stacks:
        raise ValueError("no stacks to sample from")
    st = stacks[int(rng.integers(len(stacks)))]
    k = int(rng.integers(len(st.frames)))
    img, lab = st.frame(k), st.label(k)
    h, w = img.shape[:2]
    short = min(h, w)
    if crop is None:
        s = short
        y, x = (h - s) // 2, (w - s) // 2
    else:
        whole = whole_view_share > 0 and rng.random() < whole_view_share
        s = short if whole else int(rng.integers(min(crop, short), short + 1))
        y = int(rng.integers(0, h - s + 1))
        x = int(rng.integers(0, w - s + 1))
    img = img[y : y + s, x : x + s]
    lab = lab[y : y + s, x : x + s]
    if crop is not None and s != crop:
        interp = cv2.INTER_AREA if s > crop else cv2.INTER_LINEAR
        img = cv2.resize(img, (crop, crop), interpolation=interp)
        lab = cv2.resize(lab, (crop, crop), interpolation=interp)
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    image = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
    res = np.ascontiguousarray(lab[None], dtype=np.float32)
    return image, res


# -------------------------------------------------------------------------------------- recording


def frame_record(data: bytes, path: str, exposure_time: float | None = None, ev_source: str | None = None
                 ) -> dict[str, Any]:
    """A manifest frame entry: path, sha256, and exposure facts (EXIF first, else the given time / the
    file name; ``ev_source`` says which, ``estimated`` when none)."""
    from ..exif import read_exif

    ex = read_exif(data)
    rec: dict[str, Any] = {"path": path, "sha256": sha256_bytes(data)}
    if ex.exposure_time:
        rec.update(exposure_time=ex.exposure_time, f_number=ex.f_number, iso=ex.iso, ev_source="exif")
    elif exposure_time:
        rec.update(exposure_time=exposure_time, ev_source=ev_source or "list")
    elif exposure_from_name(path):
        rec.update(exposure_time=exposure_from_name(path), ev_source="filename")
    else:
        rec["ev_source"] = "estimated"
    if ex.model:
        make = (ex.make or "").strip()
        model = ex.model.strip()
        rec["device"] = model if not make or make.split()[0].lower() in model.lower() else f"{make} {model}"
    return rec


def manifest_summary(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Per source repository: commit, licence note, scenes (per split), frames, rejected by reason."""
    rows: dict[str, dict[str, Any]] = {}
    for s in manifest["scenes"]:
        r = rows.setdefault(s["repo"], {"repo": s["repo"], "commit": s["commit"], "licence": s.get("licence", ""),
                                        "scenes": 0, "frames": 0, "splits": {k: 0 for k in SPLITS}, "rejected": {}})
        r["scenes"] += 1
        r["frames"] += len(s["frames"])
        r["splits"][s["split"]] += 1
    for rej in manifest.get("rejected", []):
        r = rows.setdefault(rej["repo"], {"repo": rej["repo"], "commit": rej.get("commit", ""),
                                          "licence": rej.get("licence", ""), "scenes": 0, "frames": 0,
                                          "splits": {k: 0 for k in SPLITS}, "rejected": {}})
        r["rejected"][rej["reason"]] = r["rejected"].get(rej["reason"], 0) + 1
    return sorted(rows.values(), key=lambda r: r["repo"].lower())


__all__ = [
    "BracketError",
    "BuildReport",
    "DEFAULT_MANIFEST",
    "Stack",
    "align_frames",
    "alignment_error",
    "assign_splits",
    "best_level_gain",
    "build",
    "build_stack",
    "decode_frame",
    "estimate_relative_ev",
    "exposure_from_name",
    "exposure_value",
    "frame_record",
    "load_manifest",
    "load_stacks",
    "manifest_summary",
    "mertens",
    "relevel",
    "relevel_ideal",
    "sample_training_item",
]
