"""Per-image and per-region statistics of a residual map ("measure once, score many").

Everything a rule or a report needs is computed here once per image and stored as report columns. The
fixed-bin histogram of ``r`` per region is what lets ``exposure rescore`` answer new pixel thresholds
without the photos or the model.

Column names come from :func:`column` only: the ``global`` region has no prefix (``over_pct``), every other
region is prefixed (``face_over_pct``). Rule metrics are spelled ``region.metric`` (``face.over_pct``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

#: Histogram of r: HIST_BINS equal bins over [-1, 1]. Bin width 0.025 puts every multiple of 0.025
#: (0.05, 0.1, 0.15, 0.2, 0.25, 0.3 …) on a bin edge, so common thresholds are answered exactly.
HIST_BINS = 80
HIST_EDGES = np.linspace(-1.0, 1.0, HIST_BINS + 1)

#: Regions in report order. ``global`` always exists; the others may be absent for a photo.
REGIONS = ("global", "face", "person", "subject", "background", "sky")

#: Per-region metric names, in column order (``hist`` is the list column).
REGION_METRICS = (
    "area_pct",
    "over_pct",
    "under_pct",
    "bad_pct",
    "severe_over_pct",
    "severe_under_pct",
    "severe_bad_pct",
    "mean_residual",
    "mean_abs_residual",
    "p05_residual",
    "p50_residual",
    "p95_residual",
)


@dataclass(frozen=True)
class Thresholds:
    """When a pixel counts as over/under-exposed, in units of r (grey-level difference ÷ 255).

    A pixel is *over* when ``r <= -over`` and *under* when ``r >= under``; *severe* uses ``severe`` for
    both sides. Defaults: 0.1 ≈ 25 grey levels, 0.3 ≈ 77 grey levels.
    """

    over: float = 0.1
    under: float = 0.1
    severe: float = 0.3

    def __post_init__(self) -> None:
        for name in ("over", "under", "severe"):
            value = getattr(self, name)
            if not (0.0 < float(value) <= 1.0):
                raise ValueError(f"threshold {name}={value} must be in (0, 1]")

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def column(region: str, metric: str) -> str:
    """Report column for a region metric: ``column('global','over_pct') == 'over_pct'``."""
    return metric if region == "global" else f"{region}_{metric}"


def hist_column(region: str) -> str:
    return column(region, "hist")


def region_columns(region: str) -> list[str]:
    return [column(region, m) for m in REGION_METRICS] + [hist_column(region)]


def histogram(values: np.ndarray) -> np.ndarray:
    """Fixed-bin histogram of residual values (int64 counts, HIST_BINS long)."""
    # Bins are closed towards the far ends: (e_i, e_{i+1}] below zero, [e_i, e_{i+1}) from zero up, so a
    # value exactly on an edge sits on the side that "r <= -t" and "r >= t" count it on.
    v = np.clip(np.asarray(values, dtype=np.float64).ravel(), -1.0, 1.0)
    pos = (v + 1.0) * (HIST_BINS / 2.0)
    snapped = np.where(np.abs(pos - np.round(pos)) < 1e-4, np.round(pos), pos)
    idx = np.where(v < 0, np.ceil(snapped) - 1, np.floor(snapped)).astype(np.int64)
    idx = np.clip(idx, 0, HIST_BINS - 1)
    return np.bincount(idx, minlength=HIST_BINS)


def shares_from_hist(hist: np.ndarray, thresholds: Thresholds) -> dict[str, float]:
    """Over/under/bad/severe percentages answered from a histogram alone.

    Thresholds on a bin edge are exact; others are linearly interpolated inside their bin (pixels are
    assumed uniform within the 0.025-wide bin).
    """
    h = np.asarray(hist, dtype=np.float64)
    total = h.sum()
    if total <= 0:
        return {m: float("nan") for m in ("over_pct", "under_pct", "bad_pct", "severe_over_pct",
                                           "severe_under_pct", "severe_bad_pct")}
    cdf = np.concatenate([[0.0], np.cumsum(h)])  # cdf[i] = count of values below edge i

    def below(x: float) -> float:  # values < x (x >= 0) or <= x (x < 0), interpolated inside a bin
        pos = (np.clip(x, -1.0, 1.0) + 1.0) * (HIST_BINS / 2.0)
        i = int(np.floor(pos + 1e-9))
        if i >= HIST_BINS:
            return float(total)
        frac = max(0.0, pos - i)
        if frac < 1e-6:
            return float(cdf[i])
        return float(cdf[i] + frac * h[i])

    over = _at_most(below, -thresholds.over)
    under = total - below(thresholds.under)
    s_over = _at_most(below, -thresholds.severe)
    s_under = total - below(thresholds.severe)
    pct = 100.0 / total
    return {
        "over_pct": over * pct,
        "under_pct": under * pct,
        "bad_pct": (over + under) * pct,
        "severe_over_pct": s_over * pct,
        "severe_under_pct": s_under * pct,
        "severe_bad_pct": (s_over + s_under) * pct,
    }


def _at_most(below, x: float) -> float:
    # r <= -t for a negative edge x: histogram() puts a value equal to a negative edge in the bin below it.
    return below(x)


def region_stats(residual: np.ndarray, mask: np.ndarray | None, thresholds: Thresholds) -> dict[str, object]:
    """All metrics of one region. ``mask=None`` means the whole image. Empty regions give NaNs."""
    r = np.asarray(residual, dtype=np.float32)
    values = r.ravel() if mask is None else r[np.asarray(mask, dtype=bool)]
    n = values.size
    out: dict[str, object] = {"area_pct": 100.0 * n / max(r.size, 1)}
    if n == 0:
        out.update({m: float("nan") for m in REGION_METRICS if m != "area_pct"})
        out["hist"] = np.zeros(HIST_BINS, dtype=np.int64)
        return out
    over = values <= -thresholds.over
    under = values >= thresholds.under
    s_over = values <= -thresholds.severe
    s_under = values >= thresholds.severe
    pct = 100.0 / n
    p05, p50, p95 = np.percentile(values, [5, 50, 95])
    out.update(
        over_pct=float(over.sum() * pct),
        under_pct=float(under.sum() * pct),
        bad_pct=float((over.sum() + under.sum()) * pct),
        severe_over_pct=float(s_over.sum() * pct),
        severe_under_pct=float(s_under.sum() * pct),
        severe_bad_pct=float((s_over.sum() + s_under.sum()) * pct),
        mean_residual=float(values.mean(dtype=np.float64)),
        mean_abs_residual=float(np.abs(values).mean(dtype=np.float64)),
        p05_residual=float(p05),
        p50_residual=float(p50),
        p95_residual=float(p95),
        hist=histogram(values),
    )
    return out


def image_stats(
    residual: np.ndarray,
    masks: Mapping[str, np.ndarray | None] | None,
    thresholds: Thresholds,
) -> dict[str, object]:
    """Report columns for every region in REGIONS.

    Args:
        residual: H×W map in [-1, 1].
        masks: region name → boolean H×W mask (``global`` may be omitted). A region that is missing or
            ``None`` (other than global) is absent for this photo: its area is 0 and metrics are NaN.
        thresholds: Pixel thresholds.
    """
    masks = dict(masks or {})
    row: dict[str, object] = {}
    for region in REGIONS:
        if region == "global":
            stats = region_stats(residual, None, thresholds)
        else:
            mask = masks.get(region)
            if mask is None:
                mask = np.zeros(residual.shape, dtype=bool)
            stats = region_stats(residual, mask, thresholds)
        for metric, value in stats.items():
            row[column(region, metric)] = value
    return row


def all_stat_columns() -> list[str]:
    cols: list[str] = []
    for region in REGIONS:
        cols.extend(region_columns(region))
    return cols
