"""The ``baseline`` analyzer: an honest, documented heuristic with no learning.

It knows nothing about scenes; it only looks at how light each pixel is:

* **Global term** — a well-exposed photo's mean grey level sits near ``TARGET_MEAN`` (0.45 on sRGB values),
  give or take ``TOLERANCE``. How far the photo's mean lies outside that band, times ``GLOBAL_GAIN``, is
  spread over every pixel: a photo that is far too dark as a whole gets a positive (under) residual
  everywhere.
* **Zone term** — pixels in the top zone (grey above ``HIGHLIGHT``) get a negative residual that grows to
  −1 at pure white (clipped highlights); pixels in the bottom zone (below ``SHADOW``) a positive residual
  that grows to +1 at pure black (crushed shadows). A channel clipped at 255 counts as a highlight even if
  the grey level is lower.

Its known failures are the reason the learned model exists: it calls a white shirt over-exposed and a
night sky under-exposed, and it cannot tell a dark photo of a dark scene from an under-exposed one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .._kernels import fused_kernel
from .._version import __version__
from ..color import grey, residual_from_grey
from .base import DEFAULT_WORKING_LONG_SIDE, Analyzer, AnalyzerInfo

TARGET_MEAN = 0.45
TOLERANCE = 0.1
GLOBAL_GAIN = 1.0
HIGHLIGHT = 0.85
SHADOW = 0.12


class BaselineAnalyzer(Analyzer):
    """Clipping + luminance-zone heuristic (see module docstring)."""

    def __init__(self, working_long_side: int | None = None, **_: object) -> None:
        self.working_long_side = int(working_long_side or DEFAULT_WORKING_LONG_SIDE)

    @property
    def info(self) -> AnalyzerInfo:
        return AnalyzerInfo("baseline", __version__, "", self.working_long_side)

    def analyze_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [baseline_residual(img) for img in images]

    def analyze_split(self, images: Sequence[np.ndarray], prepared=None):
        """Nothing is batched: every map is made when its callable is called (on a scan's finishing threads)."""
        from functools import partial

        return [partial(baseline_residual, img) for img in images]  # takes image_grey too


def baseline_residual(rgb: np.ndarray, image_grey: np.ndarray | None = None) -> np.ndarray:
    """Heuristic residual map of one RGB float image in [0, 1] (`image_grey`: its ``grey(rgb)``, if known).

    With numba (the ``fast`` extra) one fused pass (:func:`exposure_cli.fused.baseline_residual_map`);
    otherwise :func:`baseline_residual_numpy`. The same bits either way (``tests/test_fused.py``)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    g = grey(rgb) if image_grey is None else image_grey
    global_term = _global_term(g)
    fused = _fused_map()
    g = np.asarray(g)
    if fused is None or rgb.ndim != 3 or rgb.shape[2] != 3 or g.shape != rgb.shape[:2] or g.dtype != np.float32:
        return _residual_numpy(rgb, g, global_term)
    f32 = np.float32
    return fused(np.ascontiguousarray(rgb), np.ascontiguousarray(g), f32(CLIP_LEVEL), f32(CLIPPED_TOP), f32(HIGHLIGHT),
                 f32(1.0 - HIGHLIGHT), f32(SHADOW), f32(global_term))


def baseline_residual_numpy(rgb: np.ndarray, image_grey: np.ndarray | None = None) -> np.ndarray:
    """:func:`baseline_residual` in numpy (the reference, and the path without numba)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    g = grey(rgb) if image_grey is None else image_grey
    return _residual_numpy(rgb, g, _global_term(g))


#: A channel at or above this (of 1.0) counts as clipped at 255.
CLIP_LEVEL = 0.995
#: A pixel with a clipped channel is at least half-way into the highlight zone.
CLIPPED_TOP = HIGHLIGHT + 0.5 * (1 - HIGHLIGHT)


def _global_term(g: np.ndarray) -> float:
    offset = TARGET_MEAN - float(g.mean())
    return GLOBAL_GAIN * float(np.sign(offset)) * max(abs(offset) - TOLERANCE, 0.0)


def _fused_map():
    return fused_kernel("baseline_residual_map")


def _residual_numpy(rgb: np.ndarray, g: np.ndarray, global_term: float) -> np.ndarray:
    # The same float32/float64 operations in the same order as the plain expressions in the comments, into
    # reused buffers: each fresh full-size array costs page faults, and they were most of this function.
    # brightest = max(R, G, B)
    brightest = np.maximum(rgb[..., 0], rgb[..., 1])
    np.maximum(brightest, rgb[..., 2], out=brightest)
    # top = where(brightest >= CLIP_LEVEL, max(g, CLIPPED_TOP), g):
    # a channel clipped at 255 counts as at least half-way into the highlight zone
    clipped = brightest >= CLIP_LEVEL
    top = brightest  # reused
    np.copyto(top, g)
    np.maximum(g, CLIPPED_TOP, out=top, where=clipped)
    # over = clip((top − HIGHLIGHT) / (1 − HIGHLIGHT), 0, 1)
    over = top
    np.subtract(over, HIGHLIGHT, out=over)
    np.divide(over, 1.0 - HIGHLIGHT, out=over)
    np.clip(over, 0.0, 1.0, out=over)
    # under = clip((SHADOW − g) / SHADOW, 0, 1)
    under = np.subtract(SHADOW, g)
    np.divide(under, SHADOW, out=under)
    np.clip(under, 0.0, 1.0, out=under)
    # the heuristic's ideal grey level: lifted where the photo is too dark, lowered where it is too light
    # ideal = observed + (global_term + under − over), observed = g in float64
    shift = np.add(under, global_term, out=under)
    np.subtract(shift, over, out=shift)
    observed = g.astype(np.float64)
    return residual_from_grey(np.add(observed, shift), observed).astype(np.float32)  # the one sign (color.py)
