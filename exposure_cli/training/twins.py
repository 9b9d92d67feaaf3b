"""EV twins: the same training crop shown at a second exposure, and a loss that orders the pair.

The residual label is ``r = grey(ideal) − grey(observed)``, so for *any* new observed image derived from
a sample, ``r' = r + grey(observed) − grey(observed')`` is exact for the same ideal. A twin re-exposes
the observed crop by δ stops in linear light (``srgb(clip(linear · 2**δ))``, 8-bit quantised), so
a batch holds pairs whose ordering is known: the brighter twin is more over-exposed. The ranking term
asks the model's mean residual to move the same way as the labels' by at least half as much. This is
the property the EV-sweep bar measures (the mean residual must fall strictly as EV rises) and exactly the
one a per-pixel L1 alone leaves weak near the ends of the training EV range.

Twins are only darkened (δ < 0) when the crop has (almost) no clipped pixels: a blown highlight darkened
would become a flat grey patch that no real exposure produces.
"""

from __future__ import annotations

import torch

from ..color import residual_from_grey

#: BT.601 luma weights (exposure_cli.color.GREY_WEIGHTS), as a broadcastable tensor shape.
_GREY = (0.299, 0.587, 0.114)
#: Share of clipped pixels above which a crop is only ever brightened.
CLIPPED_SHARE = 0.005


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055)


def grey(images: torch.Tensor) -> torch.Tensor:
    """B×3×H×W → B×1×H×W BT.601 grey."""
    weights = torch.tensor(_GREY, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def make_twins(
    images: torch.Tensor,
    residuals: torch.Tensor,
    ev_range: tuple[float, float] = (0.5, 2.0),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-expose every crop by a random δ (|δ| in `ev_range`, random sign unless clipped).

    Args:
        images: B×3×H×W observed sRGB crops in [0, 1].
        residuals: B×1×H×W their labels.
        ev_range: Range of |δ| in stops.
        generator: Random source (CPU).

    Returns:
        ``(twin_images, twin_residuals, deltas)``.
    """
    b = images.shape[0]
    magnitude = torch.empty(b).uniform_(*ev_range, generator=generator)
    sign = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    clipped = (images.amax(dim=1) >= 0.995).float().mean(dim=(1, 2)) > CLIPPED_SHARE
    sign = torch.where(clipped, torch.ones_like(sign), sign)
    delta = (sign * magnitude).to(images.device, images.dtype)
    gain = torch.exp2(delta).reshape(b, 1, 1, 1)
    twins = linear_to_srgb(srgb_to_linear(images) * gain)
    twins = torch.round(twins * 255.0) / 255.0  # an 8-bit file, like every other input
    ideal_grey = residuals + grey(images)  # the label fixes the ideal's grey level: r + grey(observed)
    twin_res = residual_from_grey(ideal_grey, grey(twins))
    return twins, twin_res, delta


def ranking_loss(pred_a: torch.Tensor, pred_b: torch.Tensor, label_a: torch.Tensor, label_b: torch.Tensor,
                 min_gap: float = 0.01) -> torch.Tensor:
    """Hinge on the pair's mean residuals: the prediction gap must follow the label gap, ≥ half its size.

    Pairs whose label means differ by less than `min_gap` (e.g. both fully clipped) are ignored.
    """
    gap_label = label_b.mean(dim=(1, 2, 3)) - label_a.mean(dim=(1, 2, 3))
    gap_pred = pred_b.mean(dim=(1, 2, 3)) - pred_a.mean(dim=(1, 2, 3))
    direction = torch.sign(gap_label)
    hinge = torch.relu(0.5 * gap_label.abs() - direction * gap_pred)
    valid = (gap_label.abs() >= min_gap).to(hinge.dtype)
    return (hinge * valid).sum() / valid.sum().clamp_min(1.0)


__all__ = ["grey", "linear_to_srgb", "make_twins", "ranking_loss", "srgb_to_linear"]
