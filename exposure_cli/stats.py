"""Per-image and per-region statistics of a residual map ("measure once, score many").

Everything a rule or a report needs is computed here once per image and stored as report columns. The
fixed-bin histogram of ``r`` per region is what lets ``exposure rescore`` answer new pixel thresholds
without the photos or the model.

Column names come from :func:`column` only: the ``global`` region has no prefix (``over_pct``), every other
region is prefixed (``face_over_pct``). Rule metrics are spelled ``region.metric`` (``face.over_pct``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from ._kernels import fused_kernel
from .color import OVER_SIGN, UNDER_SIGN

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
    "ev_correction",
)


@dataclass(frozen=True)
class Thresholds:
    """When a pixel counts as over/under-exposed, in units of r (grey-level difference ÷ 255).

    A pixel is *over* when ``r <= -over`` and *under* when ``r >= under`` (the sides are
    ``color.OVER_SIGN`` and ``color.UNDER_SIGN``); *severe* uses ``severe`` for both sides.
    Defaults: 0.1 ≈ 25 grey levels, 0.3 ≈ 77 grey levels.
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
    fine = np.bincount(fine_bin_index(np.asarray(values).ravel()), minlength=FINE_BINS)
    return fine.reshape(HIST_BINS, FINE_BINS // HIST_BINS).sum(axis=1).astype(np.int64)


def shares_from_hist_matrix(hist: np.ndarray, thresholds: Thresholds) -> dict[str, np.ndarray]:
    """Over/under/bad/severe percentages answered from histograms alone, for many rows at once.

    Args:
        hist: N×HIST_BINS counts (one histogram per row).
        thresholds: The pixel thresholds to answer.

    Thresholds on a bin edge are exact; others are linearly interpolated inside their bin (pixels are
    assumed uniform within the 0.025-wide bin). Rows with an empty histogram give NaN.
    """
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != HIST_BINS:
        raise ValueError(f"expected an N×{HIST_BINS} histogram matrix, got shape {h.shape}")
    total = h.sum(axis=1)
    cdf = np.concatenate([np.zeros((h.shape[0], 1)), np.cumsum(h, axis=1)], axis=1)

    # values < x (x >= 0) or <= x (x < 0): histogram() puts a value on a negative edge in the bin below it
    def below(x: float) -> np.ndarray:
        pos = (min(max(x, -1.0), 1.0) + 1.0) * (HIST_BINS / 2.0)
        i = int(np.floor(pos + 1e-9))
        if i >= HIST_BINS:
            return total
        frac = max(0.0, pos - i)
        if frac < 1e-6:
            return cdf[:, i]
        return cdf[:, i] + frac * h[:, i]

    def beyond(side: float, t: float) -> np.ndarray:  # pixels at least t away from 0 on `side`
        return below(-t) if side < 0 else total - below(t)

    over, under = beyond(OVER_SIGN, thresholds.over), beyond(UNDER_SIGN, thresholds.under)
    s_over, s_under = beyond(OVER_SIGN, thresholds.severe), beyond(UNDER_SIGN, thresholds.severe)
    with np.errstate(all="ignore"):
        pct = np.where(total > 0, 100.0 / np.where(total > 0, total, 1.0), np.nan)
    return {
        "over_pct": over * pct,
        "under_pct": under * pct,
        "bad_pct": (over + under) * pct,
        "severe_over_pct": s_over * pct,
        "severe_under_pct": s_under * pct,
        "severe_bad_pct": (s_over + s_under) * pct,
    }


def shares_from_hist(hist: np.ndarray, thresholds: Thresholds) -> dict[str, float]:
    """:func:`shares_from_hist_matrix` for one histogram."""
    matrix = np.asarray(hist, dtype=np.float64).reshape(1, HIST_BINS)
    return {k: float(v[0]) for k, v in shares_from_hist_matrix(matrix, thresholds).items()}


#: Statistics are computed from a fine histogram (FINE_BINS bins of width 0.001 over [-1, 1]): one
#: bincount per region instead of sorting and masking float maps. Shares are exact for thresholds on the
#: 0.001 grid (others are compared exactly on the map); means and percentiles are exact to ±0.0005.
FINE_BINS = 2000
_FINE_PER_COARSE = FINE_BINS // HIST_BINS


def fine_bin_index(residual: np.ndarray) -> np.ndarray:
    """Fine-bin index (int32) of every value, same edge convention as :func:`histogram`.

    Bins are closed towards the far ends, so a value on an edge lands on the side that ``r <= -t`` and
    ``r >= t`` count it on. Nudging every value by 0.001 of a bin away from zero before truncating does
    that in one pass, and also absorbs float32 rounding of values that sit on an edge.
    """
    # The same float32 operations in the same order as ``v * 1000 + copysign(1e-3, v) + 1000`` then
    # ``astype(int32)``, computed in place: two full-size buffers instead of four (the int32 index reuses
    # the nudge's buffer; float32 and int32 have the same size).
    r = np.asarray(residual, dtype=np.float32)
    pos = np.clip(r, -1.0, 1.0, out=np.empty_like(r))
    nudge = np.copysign(np.float32(1e-3), pos, out=np.empty_like(pos))
    pos *= np.float32(FINE_BINS / 2.0)
    pos += nudge
    pos += np.float32(FINE_BINS / 2.0)
    idx = nudge.view(np.int32)
    np.copyto(idx, pos, casting="unsafe")  # the cast astype(np.int32) does, into the nudge's buffer
    np.clip(idx, 0, FINE_BINS - 1, out=idx)
    return idx


def _on_fine_grid(t: float) -> bool:
    return abs(t * 1000 - round(t * 1000)) < 1e-6


def _stats_from_fine(h: np.ndarray, n_total: int, thresholds: Thresholds,
                     values: np.ndarray | None) -> dict[str, object]:
    n = int(h.sum())
    out: dict[str, object] = {"area_pct": 100.0 * n / max(n_total, 1)}
    if n == 0:
        out.update({m: float("nan") for m in REGION_METRICS if m != "area_pct"})
        out["hist"] = np.zeros(HIST_BINS, dtype=np.int64)
        return out
    cdf = np.cumsum(h)

    def at_most(neg_t: float) -> float:  # count of r <= -t
        if _on_fine_grid(neg_t) or values is None:
            k = int(round((1.0 + neg_t) * FINE_BINS / 2.0))
            return float(cdf[k - 1]) if k > 0 else 0.0
        return float(np.count_nonzero(values <= neg_t))

    def at_least(t: float) -> float:  # count of r >= t
        if _on_fine_grid(t) or values is None:
            k = int(round((1.0 + t) * FINE_BINS / 2.0))
            return float(n - (cdf[k - 1] if k > 0 else 0.0))
        return float(np.count_nonzero(values >= t))

    def beyond(side: float, t: float) -> float:  # pixels at least t away from 0 on `side`
        return at_most(-t) if side < 0 else at_least(t)

    over, under = beyond(OVER_SIGN, thresholds.over), beyond(UNDER_SIGN, thresholds.under)
    s_over, s_under = beyond(OVER_SIGN, thresholds.severe), beyond(UNDER_SIGN, thresholds.severe)
    centres = (np.arange(FINE_BINS, dtype=np.float64) + 0.5) / (FINE_BINS / 2.0) - 1.0
    pct = 100.0 / n
    hf = h.astype(np.float64)

    def quantile(q: float) -> float:
        target = q * n
        i = int(np.searchsorted(cdf, target, side="left"))
        i = min(i, FINE_BINS - 1)
        below = float(cdf[i - 1]) if i > 0 else 0.0
        frac = (target - below) / max(float(h[i]), 1.0)
        return float(-1.0 + (i + min(max(frac, 0.0), 1.0)) / (FINE_BINS / 2.0))

    out.update(
        over_pct=over * pct,
        under_pct=under * pct,
        bad_pct=(over + under) * pct,
        severe_over_pct=s_over * pct,
        severe_under_pct=s_under * pct,
        severe_bad_pct=(s_over + s_under) * pct,
        mean_residual=float(hf @ centres / n),
        mean_abs_residual=float(hf @ np.abs(centres) / n),
        p05_residual=quantile(0.05),
        p50_residual=quantile(0.50),
        p95_residual=quantile(0.95),
        ev_correction=float("nan"),  # needs the photo's grey levels: image_stats(..., grey=...)
        hist=h.reshape(HIST_BINS, _FINE_PER_COARSE).sum(axis=1).astype(np.int64),
    )
    return out


def region_stats(residual: np.ndarray, mask: np.ndarray | None, thresholds: Thresholds) -> dict[str, object]:
    """All metrics of one region. ``mask=None`` means the whole image. Empty regions give NaNs."""
    r = np.asarray(residual, dtype=np.float32)
    idx = fine_bin_index(r)
    return _region_from_index(r, idx, mask, thresholds)


def _region_from_index(r, idx, mask, thresholds):
    exact_needed = not all(_on_fine_grid(t) for t in (thresholds.over, thresholds.under, thresholds.severe))
    if mask is None:
        h = np.bincount(idx.ravel(), minlength=FINE_BINS)
        values = r.ravel() if exact_needed else None
    else:
        m = np.asarray(mask, dtype=bool)
        h = np.bincount(idx[m], minlength=FINE_BINS)
        values = r[m] if exact_needed else None
    return _stats_from_fine(h, r.size, thresholds, values)


def _joint_histogram(r: np.ndarray, code: np.ndarray | None, n_codes: int) -> np.ndarray:
    """``(n_codes, FINE_BINS)`` int64: row ``c`` counts the fine bins (:func:`fine_bin_index`) of the pixels
    whose region code is ``c`` (all pixels in row 0 when `code` is None). `code` may be smaller than `r`:
    it is then read as its nearest-neighbour upsampling to `r`'s size (:func:`imageops.nearest_resize`).
    One fused pass with numba (:func:`exposure_cli.fused.fine_joint_histogram`, the same counts, and the
    small code never upsampled), else numpy's ``bincount``.

    Raises:
        ValueError: `r` contains NaN (see :func:`image_stats`), or a code is ``>= n_codes``.
    """
    from .imageops import nearest_index, nearest_resize

    fused = _fused_histogram()
    if (fused is not None and r.ndim == 2 and r.size < 2**31
            and (code is None or (code.ndim == 2 and code.dtype == np.uint8 and code.size))):
        h, w = r.shape
        if code is None:
            code_in, rows, cols = np.zeros((0, 0), np.uint8), nearest_index(1, h), nearest_index(1, w)
        else:
            code_in, rows, cols = code, nearest_index(code.shape[0], h), nearest_index(code.shape[1], w)
        joint, nans = fused(np.ascontiguousarray(r), np.ascontiguousarray(code_in), rows, cols, n_codes, FINE_BINS)
        if nans:
            _refuse_nan(r)
        if joint.shape[0] == n_codes:
            return joint
    _refuse_nan(r)
    idx = fine_bin_index(r)
    if code is None:
        return np.bincount(idx.ravel(), minlength=FINE_BINS).reshape(1, FINE_BINS)
    joint_index = nearest_resize(code, r.shape).astype(np.int32)
    joint_index *= FINE_BINS
    joint_index += idx
    return np.bincount(joint_index.ravel(), minlength=FINE_BINS * n_codes).reshape(n_codes, FINE_BINS)


def _refuse_nan(r: np.ndarray) -> None:
    # NaN has no bin: fine_bin_index would count it as r = -1 (severely over-exposed)
    nans = np.isnan(r)
    if nans.any():
        raise ValueError(f"residual map contains NaN ({int(np.count_nonzero(nans))} of {r.size} values); "
                         "an analyzer must give a number in [-1, 1] for every pixel")


def _fused_histogram():
    return fused_kernel("fine_joint_histogram")


def image_stats(
    residual: np.ndarray,
    masks: Mapping[str, np.ndarray | None] | None,
    thresholds: Thresholds,
    grey: np.ndarray | None = None,
    ev_calibration=None,
    region_code: tuple[np.ndarray | None, Sequence[str]] | None = None,
    computed: Sequence[str] | None = None,
) -> dict[str, object]:
    """Report columns for every region in REGIONS.

    Args:
        residual: H×W map in [-1, 1] (±inf and values beyond ±1 count in the end bins).
        masks: region name → boolean H×W mask (``global`` may be omitted). A region that is missing or
            ``None`` (other than global) is absent for this photo: its area is 0 and metrics are NaN.
        thresholds: Pixel thresholds.
        grey: The photo's H×W grey levels; needed for ``ev_correction`` (stops to add,
            :mod:`exposure_cli.correction`), which is NaN without it.
        ev_calibration: The analyzer's :class:`~exposure_cli.correction.EVCalibration` (identity if None).
        region_code: Instead of `masks`: ``(code, names)`` from :func:`exposure_cli.regions.region_code`,
            a uint8 image whose bit ``i`` marks region ``names[i]`` (one pass instead of one per mask). At
            the map's size, or smaller (``region_code(…, upsample=False)``): it then stands for its
            nearest-neighbour upsampling to the map's size, which is made only if a full mask is needed.
        computed: Regions that were looked for. Others were *not computed* (the rule sets in use do not
            read them): their ``area_pct`` is NaN rather than 0 (0 means "looked for, not found").

    Raises:
        ValueError: the residual map contains NaN (invalid input; a scan turns it into an error row for
            that photo, "analysis failed: ValueError: residual map contains NaN …").
    """
    from .correction import IDENTITY, SampleLevels, ev_from_samples, sample_step
    from .imageops import nearest_index, nearest_resize

    calibration = ev_calibration or IDENTITY
    r = np.asarray(residual, dtype=np.float32)
    if region_code is not None:
        code, names = region_code
        names = list(names) if code is not None else []
    else:
        masks = dict(masks or {})
        names = [name for name in REGIONS[1:] if masks.get(name) is not None and np.any(masks[name])]
        code = None
        if names:
            code = np.zeros(r.shape, np.uint8)
            for bit, name in enumerate(names):
                code |= np.asarray(masks[name], dtype=np.uint8) << bit
    exact_needed = not all(_on_fine_grid(t) for t in (thresholds.over, thresholds.under, thresholds.severe))
    hists: dict[str, np.ndarray] = {}
    # One histogram for every region: each pixel's fine bin, offset by which regions it belongs to.
    joint = _joint_histogram(r, code if names else None, 1 << len(names))
    if names:
        hists["global"] = joint.sum(axis=0)
        combos = np.arange(1 << len(names))
        for bit, name in enumerate(names):
            h = joint[(combos >> bit) & 1 == 1].sum(axis=0)
            if h.any():
                hists[name] = h
    else:
        hists["global"] = joint[0]
    bit_of = {name: bit for bit, name in enumerate(names)}
    # The code may be smaller than the map (the detectors' working size): read through nearest-neighbour
    # indexes, upsampled only where a full mask is read (both are the identity for a full-size code).
    small_code = code

    def full_code() -> np.ndarray:
        nonlocal code
        if code.shape != r.shape:
            code = nearest_resize(small_code, r.shape)
        return code

    def subsampled_code(step: int) -> np.ndarray:
        return small_code[nearest_index(small_code.shape[0], r.shape[0])[::step]][
            :, nearest_index(small_code.shape[1], r.shape[1])[::step]]

    def region_mask(region: str) -> np.ndarray:
        return (full_code() >> bit_of[region]) & 1 == 1

    # ev_correction: the even subsample of ``correction.ev_correction``, taken once for every region
    if grey is not None:
        g = np.asarray(grey, dtype=np.float32)
        step = sample_step(g.size)
        g_sub, r_sub = g[::step, ::step], r[::step, ::step]
        code_sub = subsampled_code(step) if names else None
        levels = SampleLevels(g_sub, r_sub)  # once for every region
    row: dict[str, object] = {}
    for region in REGIONS:
        h = hists.get(region)
        if h is None:
            stats = _stats_from_fine(np.zeros(FINE_BINS, np.int64), r.size, thresholds, None)
            if computed is not None and region not in computed and region != "global":
                stats["area_pct"] = float("nan")
        else:
            values = None
            if exact_needed:
                values = r.ravel() if region == "global" else r[region_mask(region)]
            stats = _stats_from_fine(h, r.size, thresholds, values)
        ev = float("nan")
        if grey is not None and h is not None:
            if region == "global":
                ev = levels.ev(None, calibration)
            else:
                m_sub = (code_sub >> bit_of[region]) & 1 == 1
                if step > 1 and np.count_nonzero(m_sub) >= 64:
                    ev = levels.ev(m_sub, calibration)
                else:
                    m = region_mask(region)
                    ev = ev_from_samples(g[m], r[m], calibration)
        stats["ev_correction"] = ev
        for metric, value in stats.items():
            row[column(region, metric)] = value
    return row


def all_stat_columns() -> list[str]:
    cols: list[str] = []
    for region in REGIONS:
        cols.extend(region_columns(region))
    return cols
