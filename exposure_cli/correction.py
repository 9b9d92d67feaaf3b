"""Stops of correction: how many stops to add to a photo (or a region of it) to reach its ideal exposure.

The residual map already says, per pixel, how much lighter or darker the ideal is on the grey channel:
``ideal_grey = observed_grey + r`` (:mod:`exposure_cli.color`). Exposure is a gain in linear light, so the
stops between the two are ``log2(linear(ideal) / linear(observed))``. That ratio is meaningless where the
photo holds no information — a clipped highlight (any brighter scene gives the same 1.0) or a crushed
shadow (any darker one gives 0) — so the estimate is the ratio of the mean linear levels of ideal and photo
over the pixels the photo still *measures* well (grey in ``[LOW, HIGH]``, mid-tones). A frame where fewer
than ``MIN_MEASURED`` of the pixels are measured (a frame shot 8 stops too dark is all noise floor, one 5
stops too bright all white) uses every pixel instead, which stays finite because the noise floor and full
well bound it; the result is clamped to ``±LIMIT`` stops.

Why this estimator: with the *true* labels of the real bracket stacks (train and val, 144 frames within
±3 EV of the best frame) it is off the known exposure offsets by 0.45 stops on average; the median of
per-pixel stops over grey 0.02…0.97 (the first version) by 0.68, the mean of per-pixel stops by 0.57 —
part of that floor is that a stack's ideal is an exposure fusion, not the best frame re-exposed.

The sign matches what a photographer dials in: **positive brightens** (the photo is under-exposed),
negative darkens. On a real bracket, the frame shot ``k`` stops below the keeper should read ``+k``.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from .color import ideal_grey, srgb_to_linear

#: Grey levels the photo measures well (mid-tones: neither near the noise floor nor near clipping).
LOW, HIGH = 0.1, 0.8
#: Below this share of measured pixels the ratio of mean levels is used instead.
MIN_MEASURED = 0.05
#: Linear floor (about one 8-bit level above black) so that an all-black frame gives a finite answer.
FLOOR = 1.0 / 4096.0
#: Largest correction reported, in stops.
LIMIT = 10.0
#: At most this many pixels enter the estimate (an even subsample): a median of 16 k values is as good as
#: one of 12 M, and the statistics stay a few milliseconds per photo.
MAX_SAMPLES = 16_384


#: Grey levels counted as clipped / crushed by the head's ``clipped`` and ``crushed`` inputs.
CLIPPED_GREY, CRUSHED_GREY = 0.98, 0.02
#: The inputs a fitted head may add to the map's stops (:func:`head_inputs`), in this order.
HEAD_INPUTS = ("clipped", "crushed", "mean_r", "level", "stops_all", "level_p10", "level_p50", "level_p90",
               "r_dark", "r_bright")
#: The grey-level percentiles behind ``level_p10`` / ``level_p50`` / ``level_p90``.
LEVEL_PERCENTILES = (10, 50, 90)


@dataclass(frozen=True)
class EVCalibration:
    """The stops-of-correction head of one weights file, recorded in its card and fitted on the *train*
    bracket stacks (``python -m exposure_cli.training.calibrate``):

    ``stops ← gain · s + offset + Σ weight_i · input_i``

    where ``s`` is the map's ratio-of-means stops and the optional inputs are the shares of clipped and
    crushed pixels, the mean residual and the log2 mean linear grey of the same pixels
    (:func:`head_inputs`). A model whose maps are too timid at the extremes gives estimates that are too
    small in proportion; the gain undoes that without touching the maps, and the inputs carry what a map
    cannot say (how far past clipping a frame is). The identity is the default (and the baseline
    analyzer's)."""

    gain: float = 1.0
    offset: float = 0.0
    #: ``(input name, weight)`` pairs; names from :data:`HEAD_INPUTS`.
    weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        unknown = [name for name, _ in self.weights if name not in HEAD_INPUTS]
        if unknown:
            raise ValueError(f"unknown stops-of-correction head input(s) {unknown}; known: {list(HEAD_INPUTS)}")

    @classmethod
    def from_card(cls, card: dict) -> "EVCalibration":
        entry = card.get("ev_correction") or {}
        weights = tuple((str(k), float(v)) for k, v in (entry.get("weights") or {}).items())
        return cls(float(entry.get("gain", 1.0)), float(entry.get("offset", 0.0)), weights)

    def apply(self, stops: float, g: np.ndarray, r: np.ndarray) -> float:
        """The head on the map's stops `stops` and the samples `g`, `r` it was read from."""
        return self.combine(stops, head_inputs(g, r) if self.weights else {})

    def combine(self, stops, inputs):
        """``gain · stops + offset + Σ weight · inputs[name]`` — for one frame, or element-wise for arrays
        of many (the fit's evaluation); `inputs` needs only the names this head weighs."""
        value = self.gain * stops + self.offset
        for name, w in self.weights:
            value = value + w * inputs[name]
        return value


def head_inputs(g: np.ndarray, r: np.ndarray, levels: "SampleLevels | None" = None) -> dict[str, float]:
    """The head's extra inputs from a region's grey levels `g` and residuals `r` (1-D, non-empty), all in
    :data:`HEAD_INPUTS` (`levels`: the same samples' :class:`SampleLevels` when the caller has it, so the
    sRGB decoding runs once):

    * ``clipped`` and ``crushed`` — shares with grey ≥ :data:`CLIPPED_GREY`, ≤ :data:`CRUSHED_GREY`;
    * ``mean_r`` — the mean residual;
    * ``level`` — log2 of the mean linear grey (floored like the stops);
    * ``stops_all`` — the map's ratio-of-means stops over *every* pixel (:func:`map_stops` reads only the
      mid-tones when enough are measured);
    * ``level_p10`` / ``level_p50`` / ``level_p90`` — log2 of the linear grey at those percentiles (floored);
    * ``r_dark`` / ``r_bright`` — the mean over all pixels of r where grey < :data:`LOW` (resp. > :data:`HIGH`),
      0 elsewhere: how much the map asks of the shadows and of the highlights."""
    g = np.asarray(g, dtype=np.float32)
    r = np.asarray(r, dtype=np.float32)
    levels = levels if levels is not None else SampleLevels(g, r)
    linear, linear_ideal = levels.linear.ravel(), levels.linear_ideal.ravel()
    p10, p50, p90 = np.percentile(g, LEVEL_PERCENTILES)
    level_at = lambda q: float(np.log2(max(float(srgb_to_linear(np.float32(q))), FLOOR)))
    return {
        "clipped": float(np.count_nonzero(g >= CLIPPED_GREY)) / g.size,
        "crushed": float(np.count_nonzero(g <= CRUSHED_GREY)) / g.size,
        "mean_r": float(np.mean(r, dtype=np.float64)),
        "level": float(np.log2(linear.mean(dtype=np.float64))),
        "stops_all": float(np.log2(linear_ideal.mean(dtype=np.float64) / linear.mean(dtype=np.float64))),
        "level_p10": level_at(p10), "level_p50": level_at(p50), "level_p90": level_at(p90),
        "r_dark": float(np.sum(r[g < LOW], dtype=np.float64)) / g.size,
        "r_bright": float(np.sum(r[g > HIGH], dtype=np.float64)) / g.size,
    }


IDENTITY = EVCalibration()


def ev_correction(observed_grey: np.ndarray, residual: np.ndarray, mask: np.ndarray | None = None,
                  calibration: EVCalibration = IDENTITY) -> float:
    """Stops to add to reach the ideal exposure (positive brightens); NaN for an empty region.

    Args:
        observed_grey: H×W grey levels of the photo in [0, 1] (BT.601 of its sRGB values).
        residual: H×W residual map of the same size (``r = grey(ideal) − grey(observed)``).
        mask: Optional boolean H×W region; ``None`` is the whole photo.
        calibration: The analyzer's fitted gain and offset (identity by default).
    """
    g = np.asarray(observed_grey, dtype=np.float32)
    r = np.asarray(residual, dtype=np.float32)
    step = sample_step(g.size)
    if mask is None:
        g, r = g[::step, ::step].ravel(), r[::step, ::step].ravel()
    else:
        m = np.asarray(mask, dtype=bool)
        if step > 1 and np.count_nonzero(m[::step, ::step]) >= MIN_SUBSAMPLED:  # a small region keeps every pixel
            g, r, m = g[::step, ::step], r[::step, ::step], m[::step, ::step]
        g, r = g[m], r[m]
    return ev_from_samples(g, r, calibration)


#: A region with fewer subsampled pixels than this is estimated from all its pixels.
MIN_SUBSAMPLED = 64


def sample_step(size: int) -> int:
    """Row/column stride of the even subsample (at most :data:`MAX_SAMPLES` pixels)."""
    return max(1, int(np.ceil(np.sqrt(size / MAX_SAMPLES))))


def ev_from_samples(g: np.ndarray, r: np.ndarray, calibration: EVCalibration = IDENTITY) -> float:
    """:func:`ev_correction` from the chosen pixels' grey levels and residuals (1-D arrays)."""
    if g.size == 0:
        return float("nan")
    levels = SampleLevels(g, r)
    inputs = head_inputs(g, r, levels) if calibration.weights else {}
    return float(np.clip(calibration.combine(levels.stops(), inputs), -LIMIT, LIMIT))


class SampleLevels:
    """The ratio-of-means estimator of :func:`map_stops`, with its per-pixel parts computed once for all the
    regions of one photo's samples.

    ``SampleLevels(g, r).stops(mask)`` is ``map_stops(g[mask], r[mask])`` and ``.ev(mask, calibration)`` is
    ``ev_from_samples(g[mask], r[mask], calibration)``, bit for bit (the same per-pixel values, gathered in
    the same order, then the same means), but the sRGB decoding — a power per pixel, most of the estimate's
    cost — runs once per photo instead of once per region. `g` and `r`: the samples' grey levels and
    residuals, any shape (the same)."""

    def __init__(self, g: np.ndarray, r: np.ndarray) -> None:
        self.g, self.r = np.asarray(g), np.asarray(r)
        ideal = np.clip(ideal_grey(self.g, self.r), 0.0, 1.0)
        self.measured = (self.g >= LOW) & (self.g <= HIGH)
        self.linear = np.maximum(srgb_to_linear(self.g), FLOOR)
        self.linear_ideal = np.maximum(srgb_to_linear(ideal), FLOOR)

    def stops(self, mask: np.ndarray | None = None) -> float:
        """The map's own stops over the samples where `mask` (boolean, their shape) is set; all if None:
        log2 of the mean linear ideal over the mean linear photo, over the measured mid-tone pixels (all
        pixels when fewer than :data:`MIN_MEASURED` are measured); NaN for no sample."""
        if mask is None:
            measured, linear, linear_ideal = self.measured.ravel(), self.linear.ravel(), self.linear_ideal.ravel()
        else:
            measured, linear, linear_ideal = self.measured[mask], self.linear[mask], self.linear_ideal[mask]
        if measured.size == 0:
            return float("nan")
        if measured.mean() >= MIN_MEASURED:
            linear, linear_ideal = linear[measured], linear_ideal[measured]
        return float(np.log2(float(linear_ideal.mean()) / float(linear.mean())))

    def ev(self, mask: np.ndarray | None = None, calibration: EVCalibration = IDENTITY) -> float:
        """:func:`ev_from_samples` of the samples where `mask` (boolean, their shape) is set; all if None."""
        if calibration.weights:  # a head with inputs reads the region's own samples
            g, r = (self.g, self.r) if mask is None else (self.g[mask], self.r[mask])
            return ev_from_samples(g.ravel(), r.ravel(), calibration)
        stops = self.stops(mask)
        if stops != stops:  # no sample
            return stops
        return float(np.clip(calibration.apply(stops, self.g, self.r), -LIMIT, LIMIT))


def map_stops(g: np.ndarray, r: np.ndarray) -> float:
    """The map's own stops (no head) from the samples' grey levels `g` and residuals `r`
    (:meth:`SampleLevels.stops`, where the estimator is written)."""
    return SampleLevels(g, r).stops()


__all__ = ["HEAD_INPUTS", "IDENTITY", "LIMIT", "EVCalibration", "ev_correction", "ev_from_samples", "head_inputs",
           "map_stops", "sample_step", "SampleLevels"]
