"""Colour conventions shared by every module.

The exposure residual lives on the *grey* channel of display-referred (sRGB-encoded) values, exactly as
IEA40K stores it: ``r = grey(ideal) - grey(observed)`` in [-1, 1]. ``r < 0`` means brighter than ideal
(over-exposed), ``r > 0`` darker than ideal (under-exposed). Grey is ITU-R BT.601 luma, the weights OpenCV
uses for ``COLOR_RGB2GRAY``, so labels computed here match grey images computed by OpenCV.
"""

from __future__ import annotations

import numpy as np

from ._kernels import fused_kernel

#: BT.601 luma weights for R, G, B (OpenCV's RGB→GRAY).
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def grey(rgb: np.ndarray) -> np.ndarray:
    """Grey level of an RGB image (H×W×3, any float range) → H×W float32.

    A C-contiguous H×W×3 image goes through one fused pass when numba is installed
    (:func:`exposure_cli.fused.grey_image`, the same bits); anything else through :func:`grey_numpy`."""
    rgb = np.asarray(rgb, dtype=np.float32)
    fused = _fused_grey()
    if fused is not None and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags.c_contiguous and rgb.size:
        return fused(rgb, GREY_WEIGHTS[0], GREY_WEIGHTS[1], GREY_WEIGHTS[2])
    return grey_numpy(rgb)


def grey_numpy(rgb: np.ndarray) -> np.ndarray:
    """:func:`grey` in numpy (the reference, and the path without numba)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb[..., 0] * GREY_WEIGHTS[0] + rgb[..., 1] * GREY_WEIGHTS[1] + rgb[..., 2] * GREY_WEIGHTS[2]


def _fused_grey():
    return fused_kernel("grey_image")


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function (IEC 61966-2-1); input and output in [0, 1]."""
    srgb = np.clip(np.asarray(srgb, dtype=np.float32), 0.0, 1.0)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """sRGB transfer function; input clipped to [0, 1]."""
    linear = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.where(
        linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1.0 / 2.4) - 0.055
    ).astype(np.float32)


def residual_from_grey(ideal_grey, observed_grey):
    """The one place the residual's sign is written: ``grey(ideal) − grey(observed)``, clipped to [-1, 1].

    Works on numpy arrays and torch tensors alike (both have ``.clip``), so the simulator, the EV twins
    of training and the statistics share it. ``r < 0``: over-exposed; ``r > 0``: under-exposed.
    """
    return (ideal_grey - observed_grey).clip(-1.0, 1.0)


def residual(ideal_rgb: np.ndarray, observed_rgb: np.ndarray) -> np.ndarray:
    """Exposure residual in the IEA40K convention: grey(ideal) − grey(observed), clipped to [-1, 1]."""
    return residual_from_grey(grey(ideal_rgb), grey(observed_rgb)).astype(np.float32)


#: The side of zero an over-exposed pixel's residual lies on (observed lighter than ideal): −1.0. Read off
#: :func:`residual_from_grey` itself, so whatever interprets residuals (statistics, rules) follows the one sign.
OVER_SIGN = float(np.sign(residual_from_grey(np.float32(0.0), np.float32(1.0))))
#: The side of an under-exposed pixel's residual (observed darker than ideal): +1.0.
UNDER_SIGN = -OVER_SIGN


def ideal_grey(observed_grey, r):
    """The ideal grey level a residual implies: the inverse of :func:`residual_from_grey` (unclipped)."""
    return observed_grey + UNDER_SIGN * r
