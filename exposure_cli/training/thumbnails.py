"""Thumbnail views: a training crop shown as the analyzer shows a small photo.

A photo smaller than ``imageops.NATIVE_MIN_LONG_SIDE`` is upscaled for the network (its thumbnail copy),
so the network sees a smooth image whose detail is that of the few pixels the photo has. A thumbnail view
reproduces that on a training crop: shrink it by a factor ``u`` (area, like a camera or an export making
the thumbnail), then enlarge it back bilinearly (what ``imageops.to_working_size`` does). A 64 px photo read
through a 320 px copy is ``u = 0.2``; through a 512 px copy ``u = 0.125``.

The label follows exactly: ``r = grey(ideal) − grey(observed)`` is linear in both images, and resizing is
linear, so the label of the resized observed image is the same resize of ``r`` (the ideal seen at the
thumbnail's resolution) — the per-pixel truth a map of the small photo can be held to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Default range of the shrink factor u (a 64 px photo through a 320 px copy is 0.2, a 128 px one 0.4).
SCALE_RANGE = (0.15, 0.5)


def thumbnail_view(images: torch.Tensor, residuals: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Shrink B×C×H×W `images` and B×1×H×W `residuals` by `scale` (area) and enlarge them back (bilinear)."""
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    h, w = images.shape[-2:]
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    if small == (h, w):
        return images, residuals

    def down_up(x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=small, mode="area")
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

    return down_up(images).clamp(0.0, 1.0), down_up(residuals)


def thumbnail_views(
    images: torch.Tensor,
    residuals: torch.Tensor,
    share: float,
    generator: torch.Generator | None = None,
    scale_range: tuple[float, float] = SCALE_RANGE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace about `share` of a batch's crops by thumbnail views, each with its own log-uniform scale.

    Returns ``(images, residuals, scales)``; ``scales`` is 1 for the crops left as they were. The inputs are
    not modified.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    lo, hi = scale_range
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi <= 1, got {scale_range}")
    b = images.shape[0]
    scales = torch.ones(b, dtype=torch.float64)
    if share == 0.0 or b == 0:
        return images, residuals, scales
    chosen = torch.rand(b, generator=generator) < share
    if not bool(chosen.any()):
        return images, residuals, scales
    draws = torch.rand(b, generator=generator, dtype=torch.float64)
    images, residuals = images.clone(), residuals.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        scale = math.exp(math.log(lo) + float(draws[i]) * (math.log(hi) - math.log(lo)))
        view, label = thumbnail_view(images[i:i + 1], residuals[i:i + 1], scale)
        images[i:i + 1], residuals[i:i + 1] = view, label
        scales[i] = scale
    return images, residuals, scales


__all__ = ["SCALE_RANGE", "thumbnail_view", "thumbnail_views"]
