"""The fixed validation set: pre-rendered once from the validation photos, in the IEA40K layout.

Per validation photo (``split == "val"`` in the manifest, never seen in training):

* ``kind=original`` — the photo as shipped, label 0 everywhere (is a model quiet on good photos?);
* ``kind=sweep`` — pure global exposure shifts at EV −3, −2, −1, +1, +2, +3 (:func:`.simulator.render_ev`):
  the EV-sweep monotonicity/Spearman and the ±2 EV ROC-AUC come from these;
* ``kind=simulated`` — ``SIMULATED_PER_PHOTO`` draws of the full simulator (local fields, noise, JPEG).

Per validation HDR crop the sweep is rendered from the real radiance around the metered exposure
(EV 0 included, where the label is non-zero wherever one exposure cannot hold the scene) and the fused
ideal is the ``original``.

Images are stored with their long side at most ``LONG_SIDE`` so that evaluating a model on CPU stays
quick. The CSV's ``score`` is a label-derived proxy (``10·(1 − min(1, 2·mean|r|))``), not a human rating.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from ..decoding import limit_long_side
from .iea40k import IEA40KWriter
from .simulator import LEGACY_CONFIG, render_ev, simulate_photo, simulate_radiance

SWEEP_EVS = (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)
#: An HDR crop's sweep also holds its metered exposure: one exposure cannot hold an HDR scene.
HDR_SWEEP_EVS = SWEEP_EVS[:3] + (0.0,) + SWEEP_EVS[3:]
SIMULATED_PER_PHOTO = 2
LONG_SIDE = 384
VAL_SEED = 12345
EXTRA_COLUMNS = ("kind", "ev", "photo", "source")


class ValidationItem(NamedTuple):
    """One rendered image of the validation recipe: its id, the observed RGB image in [0, 1], its label map,
    the id of its photo's original, kind (``original``, ``sweep``, ``simulated``), EV (sweeps; "" for
    draws), photo or crop id, source, and group (``photo`` or ``hdr``)."""

    id: str
    image: np.ndarray
    residual: np.ndarray
    ref: str
    kind: str
    ev: float | str
    photo: str
    source: str
    group: str


def proxy_score(residual: np.ndarray) -> float:
    """Holistic 0–10 proxy from a label map: 10 when perfect, 0 when mean |r| ≥ 0.5."""
    return round(10.0 * (1.0 - min(1.0, 2.0 * float(np.abs(residual).mean()))), 2)


class RecipeUnit(NamedTuple):
    """A photo or HDR crop the validation recipe renders: id, source, group (``photo`` or ``hdr``), the ideal
    (H×W×3 float32 in [0, 1]; photos area-resized to the recipe's long side) and, for HDR crops, the metered
    radiance (float32) the sweeps expose."""

    id: str
    source: str
    group: str
    ideal: np.ndarray
    radiance: np.ndarray | None


def recipe_photos(corpus: Path, split: str, long_side: int = LONG_SIDE) -> Iterator[RecipeUnit]:
    """The photos of `split` as the recipe reads them, in id order (one decoded at a time)."""
    import cv2

    from .corpus import load_index

    corpus = Path(corpus)
    for p in sorted((p for p in load_index(corpus)["photos"] if p["split"] == split), key=lambda p: p["id"]):
        bgr = cv2.imread(str(corpus / p["path"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"corpus photo missing: {corpus / p['path']} (rebuild the corpus)")
        ideal = limit_long_side(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), long_side).astype(np.float32) / 255.0
        yield RecipeUnit(p["id"], p["source"], "photo", ideal, None)


def recipe_crops(corpus: Path, split: str) -> Iterator[RecipeUnit]:
    """The HDR crops of `split` as the recipe reads them, in id order (one loaded at a time)."""
    import cv2

    from .corpus import load_index

    corpus = Path(corpus)
    for c in sorted((c for c in load_index(corpus).get("hdr", []) if c["split"] == split), key=lambda c: c["id"]):
        rad = np.load(corpus / c["radiance"], allow_pickle=False).astype(np.float32)
        ideal = cv2.cvtColor(cv2.imread(str(corpus / c["ideal"]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        yield RecipeUnit(c["id"], c["source"], "hdr", ideal.astype(np.float32) / 255.0, rad)


def render_items(corpus: Path, split: str = "val", long_side: int = LONG_SIDE, seed: int = VAL_SEED
                 ) -> Iterator[ValidationItem]:
    """The validation set's renders of the photos and HDR crops of `split` in ``corpus``, in the set's order.

    ``split="val"`` with the default seed is the validation set itself; the same recipe on ``"train"``
    (another seed) is what a fitted output stage may learn from without seeing val
    (``training.fit_residual_calibration``).
    """
    cfg = dataclasses.replace(LEGACY_CONFIG, p_original=0.0)  # v1/v2 renders stay bit-identical

    for n, unit in enumerate(recipe_photos(corpus, split, long_side)):
        ideal, pid = unit.ideal, unit.id
        ref = f"{pid}.png"
        yield ValidationItem(ref, ideal, np.zeros(ideal.shape[:2], np.float32), ref, "original", 0.0, pid,
                             unit.source, "photo")
        for ev in SWEEP_EVS:
            obs, res = render_ev(ideal, ev)
            yield ValidationItem(f"{pid}_ev{ev:+.0f}", obs, res, ref, "sweep", ev, pid, unit.source, "photo")
        for k in range(SIMULATED_PER_PHOTO):
            s = simulate_photo(ideal, np.random.default_rng([seed, n, k]), cfg)
            yield ValidationItem(f"{pid}_sim{k}", s.observed, s.residual, ref, "simulated", "", pid,
                                 unit.source, "photo")

    for n, unit in enumerate(recipe_crops(corpus, split)):
        rad, ideal, cid = unit.radiance, unit.ideal, unit.id
        ref = f"{cid}.png"
        yield ValidationItem(ref, ideal, np.zeros(ideal.shape[:2], np.float32), ref, "original", 0.0, cid,
                             unit.source, "hdr")
        for ev in HDR_SWEEP_EVS:
            obs, res = render_ev(ideal, ev, linear=rad)
            yield ValidationItem(f"{cid}_ev{ev:+.0f}", obs, res, ref, "sweep", ev, cid, unit.source, "hdr")
        s = simulate_radiance(rad, ideal, np.random.default_rng([seed, 10_000 + n]), cfg)
        yield ValidationItem(f"{cid}_sim0", s.observed, s.residual, ref, "simulated", "", cid, unit.source, "hdr")


def write_validation_set(
    corpus: Path,
    out: Path | None = None,
    long_side: int = LONG_SIDE,
    seed: int = VAL_SEED,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Render the validation set of ``corpus`` (default ``corpus/val``); returns counts per kind."""
    from .corpus import load_index

    corpus = Path(corpus)
    out = Path(out) if out else corpus / "val"
    writer = IEA40KWriter(out, "val", EXTRA_COLUMNS)
    counts = {"original": 0, "sweep": 0, "simulated": 0, "photos": 0, "hdr_crops": 0}
    for item in render_items(corpus, "val", long_side, seed):
        writer.add(item.id, item.image, item.residual, ref_id=item.ref, score=proxy_score(item.residual),
                   kind=item.kind, ev=item.ev, photo=item.photo, source=item.source)
        counts[item.kind] += 1
        if item.kind == "original":
            counts["photos" if item.group == "photo" else "hdr_crops"] += 1

    writer.close()
    meta = {"long_side": long_side, "seed": seed, "sweep_evs": list(SWEEP_EVS),
            "simulated_per_photo": SIMULATED_PER_PHOTO, "counts": counts,
            "manifest_sha256": load_index(corpus).get("manifest_sha256")}
    (out / "valset.json").write_text(json.dumps(meta, indent=1) + "\n")
    log(f"validation set: {counts['photos']} photos + {counts['hdr_crops']} HDR crops → "
        f"{counts['original']} originals, {counts['sweep']} sweep images, {counts['simulated']} simulated → {out}")
    return counts


__all__ = ["LONG_SIDE", "SWEEP_EVS", "ValidationItem", "proxy_score", "render_items", "write_validation_set"]
