"""``exposure eval``: how well an analyzer's residual maps agree with labelled data.

Reads any IEA40K-layout set (:mod:`exposure_cli.data.iea40k`) — the real dataset, or our fixed
validation set written by ``exposure data build`` — runs analyzers from the registry and reports:

* **map agreement** (every image): MAE, SSIM and PSNR between predicted and labelled maps. Maps live in
  [−1, 1], so SSIM and PSNR use a data range of 2;
* **EV sweeps** (rows with ``kind=sweep``/``original`` and an ``ev`` column): per photo, the mean predicted
  residual at each EV; the share of photos where it falls *strictly* as EV rises (brighter → more "over"),
  and the mean Spearman ρ between EV and that mean (−1 is perfect);
* **detection** at ±2 EV: ROC-AUC of "under" (−2 EV) against fine (originals) scored by the mean predicted
  residual, and of "over" (+2 EV) against fine scored by its negation;
* **quiet on good photos**: mean |r| predicted on the unmodified originals (label 0).

Metrics that the data cannot support (no sweep columns in a plain IEA40K CSV) are ``None``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .data.iea40k import IEA40KRecord, read_records

#: The comparison row every evaluation includes.
BASELINE = "baseline"
#: Sweep EVs whose images count as "under" / "over" in the ROC-AUC.
AUC_EV = 2.0


class AnalyzerUnavailable(ValueError):
    """An analyzer could not be created (e.g. no weights found); the message says why."""


@dataclass
class EvalResult:
    """Metrics of one analyzer on one set (``None`` where the set has no rows for a metric)."""

    model: str
    weights: str = ""
    images: int = 0
    mae: float | None = None
    ssim: float | None = None
    psnr: float | None = None
    sweep_photos: int = 0
    sweep_monotonic_share: float | None = None
    sweep_spearman: float | None = None
    auc_under: float | None = None
    auc_over: float | None = None
    originals_mean_abs: float | None = None
    seconds: float = 0.0
    per_kind_mae: dict[str, float] = field(default_factory=dict)
    #: Bias per exposure step of the sweeps: ``{"photo"|"hdr": [{"ev", "images", "mean_pred", "mean_label"}]}``.
    sweep_bias: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    #: One dict per image (only when asked for): its CSV columns plus predicted and labelled means and MAE.
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("per_image")
        return d


# --------------------------------------------------------------------------------------- map metrics


#: SSIM settings (Wang et al. 2004, as scikit-image documents for reproducing the paper): an 11×11
#: Gaussian window with σ = 1.5, population (not sample) covariance, K1 = 0.01, K2 = 0.03. scikit-image
#: averages over the interior only (the 5-pixel border where the window would leave the map is cropped).
SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "K1": 0.01, "K2": 0.03}
#: PSNR of identical maps is +inf; it is capped so averages stay finite.
PSNR_CAP_DB = 100.0


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    """Mean SSIM from scikit-image with :data:`SSIM_SETTINGS`; NaN for maps under 11 pixels a side."""
    from skimage.metrics import structural_similarity

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if min(a.shape) < 11:
        return float("nan")
    return float(structural_similarity(a, b, data_range=data_range, **SSIM_SETTINGS))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    """PSNR in dB from scikit-image, capped at :data:`PSNR_CAP_DB` (identical maps give the cap)."""
    from skimage.metrics import peak_signal_noise_ratio

    with np.errstate(divide="ignore"):
        value = peak_signal_noise_ratio(np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=data_range)
    return float(min(PSNR_CAP_DB, value))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation from SciPy; NaN when either side is constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """ROC-AUC from scikit-learn: the chance a random positive scores above a random negative (ties half)."""
    if len(positive) == 0 or len(negative) == 0:
        return None
    from sklearn.metrics import roc_auc_score

    labels = [1] * len(positive) + [0] * len(negative)
    return float(roc_auc_score(labels, list(positive) + list(negative)))


# --------------------------------------------------------------------------------------- evaluation


def _ev(rec: IEA40KRecord) -> float | None:
    v = rec.extra.get("ev", "")
    try:
        return float(v) if v not in ("", None) else None
    except ValueError:
        return None


def _fit_to(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if pred.shape == shape:
        return pred
    import cv2

    return cv2.resize(pred.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def analyzed_records(analyzer: Any, records: list[IEA40KRecord], batch_size: int = 8,
                     progress: Callable[[int, int], None] | None = None):
    """Run ``analyzer`` over ``records`` in batches; yield ``(record, image, map, label)`` for each, the map
    resized to its label's shape (float32). ``progress(done, total)`` is called after every batch."""
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        images = [r.load_image() for r in batch]
        for rec, image, pred in zip(batch, images, analyzer.analyze_batch(images)):
            label = rec.load_residual()
            yield rec, image, _fit_to(np.asarray(pred, np.float32), label.shape), label
        if progress:
            progress(min(start + batch_size, len(records)), len(records))


def evaluate_analyzer(
    analyzer: Any,
    records: list[IEA40KRecord],
    name: str,
    weights: str = "",
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    per_image: bool = False,
) -> EvalResult:
    """Run ``analyzer`` over ``records`` and compute every metric the records support.

    With ``per_image`` the result also lists every image's numbers (:attr:`EvalResult.per_image`).
    """
    t0 = time.perf_counter()
    maes, ssims, psnrs, means, abs_means, label_means = [], [], [], [], [], []
    rows: list[dict[str, Any]] = []
    kind_mae: dict[str, list[float]] = {}
    for rec, _, pred, label in analyzed_records(analyzer, records, batch_size, progress):
        mae = float(np.abs(pred - label).mean())
        maes.append(mae)
        ssims.append(ssim(pred, label))
        psnrs.append(psnr(pred, label))
        means.append(float(pred.mean()))
        abs_means.append(float(np.abs(pred).mean()))
        label_means.append(float(label.mean()))
        kind_mae.setdefault(rec.extra.get("kind", "") or "all", []).append(mae)
        if per_image:
            rows.append({"model": name, "img_id": rec.img_id, **rec.extra, "pred_mean": means[-1],
                         "pred_mean_abs": abs_means[-1], "label_mean": float(label.mean()), "mae": mae})
    res = EvalResult(model=name, weights=weights, images=len(records), per_image=rows)
    if records:
        res.mae, res.ssim, res.psnr = float(np.mean(maes)), float(np.mean(ssims)), float(np.mean(psnrs))
        res.per_kind_mae = {k: float(np.mean(v)) for k, v in sorted(kind_mae.items())}

    # sweeps: per photo, EV → mean predicted residual (originals count as EV 0 for photos without an EV-0 render)
    by_photo: dict[str, dict[float, float]] = {}
    originals, originals_abs, under, over = [], [], [], []
    for rec, m, m_abs in zip(records, means, abs_means):
        kind, ev, photo = rec.extra.get("kind", ""), _ev(rec), rec.extra.get("photo", "")
        if kind == "original":
            originals.append(m)
            originals_abs.append(m_abs)
        if kind in ("sweep", "original") and ev is not None and photo:
            curve = by_photo.setdefault(photo, {})
            if kind == "sweep" or ev not in curve:
                curve[ev] = m
        if kind == "sweep" and ev == -AUC_EV:
            under.append(m)
        if kind == "sweep" and ev == AUC_EV:
            over.append(m)
    curves = [c for c in by_photo.values() if len(c) >= 3]
    if curves:
        mono, rhos = 0, []
        for c in curves:
            evs = sorted(c)
            vals = [c[e] for e in evs]
            mono += all(b < a for a, b in zip(vals, vals[1:]))
            rho = spearman(evs, vals)
            if not math.isnan(rho):
                rhos.append(rho)
        res.sweep_photos = len(curves)
        res.sweep_monotonic_share = mono / len(curves)
        res.sweep_spearman = float(np.mean(rhos)) if rhos else None
    res.sweep_bias = sweep_bias(records, means, label_means)
    res.auc_under = roc_auc(under, originals)
    res.auc_over = roc_auc([-m for m in over], [-m for m in originals])
    res.originals_mean_abs = float(np.mean(originals_abs)) if originals_abs else None
    res.seconds = time.perf_counter() - t0
    return res


def _is_hdr(rec: IEA40KRecord) -> bool:
    return "hdr" in (rec.extra.get("source", "") or rec.img_id.split("__")[0])


def sweep_bias(records: list[IEA40KRecord], means: list[float], label_means: list[float]) -> dict[str, list[dict[str, float]]]:
    """Mean predicted vs mean labelled residual at each EV of the sweeps, photos and HDR views apart.

    A model that shrinks under-exposure towards zero shows it here (predicted below labelled at −3 EV)
    even when its MAE looks fine.
    """
    cells: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for rec, m, lab in zip(records, means, label_means):
        ev = _ev(rec)
        if rec.extra.get("kind", "") != "sweep" or ev is None:
            continue
        cells.setdefault(("hdr" if _is_hdr(rec) else "photo", ev), []).append((m, lab))
    out: dict[str, list[dict[str, float]]] = {}
    for (group, ev), vals in sorted(cells.items()):
        arr = np.array(vals)
        out.setdefault(group, []).append({"ev": ev, "images": len(vals), "mean_pred": float(arr[:, 0].mean()),
                                          "mean_label": float(arr[:, 1].mean())})
    return out


def evaluate(
    data: Path,
    models: Sequence[tuple[str, str | None]],
    split: str = "val",
    device: str = "cpu",
    working_long_side: int | None = None,
    limit: int | None = None,
    include_baseline: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    per_image: bool = False,
) -> dict[str, Any]:
    """Evaluate analyzers on an IEA40K-layout set.

    Args:
        data: The set's folder (e.g. ``corpus/val``), or a corpus folder that contains ``val/``.
        models: (analyzer name, weights path or None) pairs.
        split: Which CSV to read.
        device: Passed to analyzers that use one.
        working_long_side: Passed to analyzers when given.
        limit: Evaluate only the first N records (quick looks).
        include_baseline: Add the ``baseline`` analyzer as a comparison row when it is not listed.
        per_image: Also return ``per_image``: one row per (analyzer, image) with the image's CSV columns,
            mean predicted and labelled residual, mean |predicted| and MAE.
    """
    from .analyzers import create_analyzer

    data = Path(data)
    if not any(data.glob("*.csv")) and (data / "val").is_dir():
        data = data / "val"
    records = read_records(data, split)
    if limit:
        records = records[:limit]
    runs = list(models)
    if include_baseline and BASELINE not in [m for m, _ in runs]:
        runs.append((BASELINE, None))
    results = []
    for name, weights in runs:
        options: dict[str, Any] = {"device": device}
        if weights:
            options["weights"] = str(weights)
        if working_long_side:
            options["working_long_side"] = int(working_long_side)
        try:
            analyzer = create_analyzer(name, **options)
        except (OSError, RuntimeError, ValueError) as exc:  # missing/invalid weights, bad options
            raise AnalyzerUnavailable(f"cannot create analyzer {name!r}: {exc}") from exc
        try:
            cb = (lambda done, total, _n=name: progress(_n, done, total)) if progress else None
            results.append(evaluate_analyzer(analyzer, records, name, str(weights or ""), progress=cb,
                                             per_image=per_image))
        finally:
            analyzer.close()
    return {
        "data": str(data),
        "split": split,
        "images": len(records),
        # the MAE of an all-zero map ("everything well exposed"): the floor any useful model must beat
        "zero_map_mae": float(np.mean([np.abs(r.load_residual()).mean() for r in records])) if records else None,
        "kinds": sorted({r.extra.get("kind", "") for r in records} - {""}),
        "results": [r.to_dict() for r in results],
        **({"per_image": [row for r in results for row in r.per_image]} if per_image else {}),
    }


#: Table columns: (key, header, format, higher is better?)
COLUMNS = (
    ("mae", "MAE↓", "{:.4f}"),
    ("ssim", "SSIM↑", "{:.3f}"),
    ("psnr", "PSNR↑", "{:.2f}"),
    ("sweep_monotonic_share", "mono↑", "{:.0%}"),
    ("sweep_spearman", "ρ(→−1)", "{:+.3f}"),
    ("auc_under", "AUCu↑", "{:.3f}"),
    ("auc_over", "AUCo↑", "{:.3f}"),
    ("originals_mean_abs", "|r|orig↓", "{:.4f}"),
)


def format_value(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return fmt.format(value)


__all__ = [
    "AnalyzerUnavailable",
    "BASELINE",
    "COLUMNS",
    "EvalResult",
    "evaluate",
    "evaluate_analyzer",
    "format_value",
    "psnr",
    "roc_auc",
    "spearman",
    "ssim",
]
