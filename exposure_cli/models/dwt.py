"""Exact, invertible one-level 2-D Haar wavelet transform.

The orthonormal Haar transform splits every 2×2 block ``[[a, b], [c, d]]`` into four coefficients::

    LL = (a + b + c + d) / 2      lightness (twice the block mean)
    LH = (a + b - c - d) / 2      horizontal edges (top row vs bottom row)
    HL = (a - b + c - d) / 2      vertical edges (left column vs right column)
    HH = (a - b - c + d) / 2      diagonal detail

The matrix is its own inverse, so :func:`haar_idwt` applied to :func:`haar_dwt` gives the input back up to
float rounding. Both are pure tensor reshapes and sums (no convolution weights, nothing to learn), so they
run on any device and dtype and are differentiable.
"""

from __future__ import annotations

import torch


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-level Haar DWT.

    Args:
        x: B×C×H×W tensor with even H and W.

    Returns:
        ``(low, high)``: low is B×C×H/2×W/2 (the LL band), high is B×3C×H/2×W/2 holding the LH, HL and HH
        bands, grouped band-major (all channels' LH, then all HL, then all HH).
    """
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"haar_dwt needs even height and width, got {tuple(x.shape[-2:])}")
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    low = (a + b + c + d) * 0.5
    lh = (a + b - c - d) * 0.5
    hl = (a - b + c - d) * 0.5
    hh = (a - b - c + d) * 0.5
    return low, torch.cat([lh, hl, hh], dim=1)


def haar_idwt(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_dwt`: ``haar_idwt(*haar_dwt(x)) == x`` up to rounding.

    Args:
        low: B×C×h×w LL band.
        high: B×3C×h×w LH, HL, HH bands in the order :func:`haar_dwt` returns them.

    Returns:
        B×C×2h×2w tensor.
    """
    channels = low.shape[1]
    if high.shape[1] != 3 * channels:
        raise ValueError(f"high bands need {3 * channels} channels for {channels} low channels, got {high.shape[1]}")
    lh, hl, hh = high[:, :channels], high[:, channels : 2 * channels], high[:, 2 * channels :]
    a = (low + lh + hl + hh) * 0.5
    b = (low + lh - hl - hh) * 0.5
    c = (low - lh + hl - hh) * 0.5
    d = (low - lh - hl + hh) * 0.5
    batch, _, h, w = low.shape
    # Interleave the four phases back into 2×2 blocks: stack → (B, C, h, 2, w, 2) → (B, C, 2h, 2w).
    top = torch.stack([a, b], dim=-1)  # B, C, h, w, 2 (columns)
    bottom = torch.stack([c, d], dim=-1)
    blocks = torch.stack([top, bottom], dim=3)  # B, C, h, 2 (rows), w, 2
    return blocks.reshape(batch, channels, 2 * h, 2 * w)


class HaarDWT(torch.nn.Module):
    """Module wrapper of :func:`haar_dwt` (no parameters)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return haar_dwt(x)


class HaarIDWT(torch.nn.Module):
    """Module wrapper of :func:`haar_idwt` (no parameters)."""

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return haar_idwt(low, high)


__all__ = ["HaarDWT", "HaarIDWT", "haar_dwt", "haar_idwt"]
