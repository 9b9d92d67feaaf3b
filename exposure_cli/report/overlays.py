"""Overlays: the photo with over-exposed areas tinted red and under-exposed areas tinted blue.

Pixels within the "fine" band (|r| below the threshold) are left untouched; beyond it the tint grows with
|r| (full strength at |r| ≥ 0.5). A small legend in the corner names the colours.
"""

from __future__ import annotations

import numpy as np

from ..stats import Thresholds

OVER_BGR = np.array([40, 40, 230], dtype=np.float32)  # red
UNDER_BGR = np.array([230, 90, 20], dtype=np.float32)  # blue
MAX_TINT = 0.75


def tint_weights(residual: np.ndarray, thresholds: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel tint strength (0..MAX_TINT) for over and under."""
    r = residual.astype(np.float32)
    over = np.clip((-r - thresholds.over) / max(0.5 - thresholds.over, 1e-3), 0, 1)
    under = np.clip((r - thresholds.under) / max(0.5 - thresholds.under, 1e-3), 0, 1)
    over = np.where(-r >= thresholds.over, 0.25 + 0.75 * over, 0.0) * MAX_TINT
    under = np.where(r >= thresholds.under, 0.25 + 0.75 * under, 0.0) * MAX_TINT
    return over.astype(np.float32), under.astype(np.float32)


def render_overlay(rgb: np.ndarray, residual: np.ndarray, thresholds: Thresholds | None = None,
                   legend: bool = True) -> np.ndarray:
    """Blend a residual map onto its photo.

    Args:
        rgb: float32 H×W×3 in [0, 1].
        residual: H×W map in [-1, 1] (resized to the photo if its size differs).
        thresholds: The scan's pixel thresholds (what counts as over/under).
        legend: Draw the legend.

    Returns:
        uint8 BGR image (ready for ``cv2.imwrite``).
    """
    import cv2

    thresholds = thresholds or Thresholds()
    h, w = rgb.shape[:2]
    if residual.shape != (h, w):
        residual = cv2.resize(residual.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    bgr = rgb[..., ::-1].astype(np.float32) * 255.0
    over, under = tint_weights(residual, thresholds)
    out = bgr * (1 - over - under)[..., None] + OVER_BGR * over[..., None] + UNDER_BGR * under[..., None]
    out = np.clip(out, 0, 255).astype(np.uint8)
    if legend:
        _draw_legend(out)
    return out


def _draw_legend(img: np.ndarray) -> None:
    import cv2

    h, w = img.shape[:2]
    scale = max(0.35, min(w, h) / 900)
    font = cv2.FONT_HERSHEY_SIMPLEX
    items = [("over-exposed", OVER_BGR), ("under-exposed", UNDER_BGR)]
    pad = max(3, int(6 * scale))
    box = max(6, int(14 * scale))
    line_h = box + pad
    text_w = max(cv2.getTextSize(t, font, scale, 1)[0][0] for t, _ in items)
    lw, lh = pad * 3 + box + text_w, pad + line_h * len(items)
    if lw + 2 * pad > w or lh + 2 * pad > h:
        return  # too small for a legend
    x0, y0 = w - lw - pad, h - lh - pad
    roi = img[y0 : y0 + lh, x0 : x0 + lw]
    roi[:] = (roi.astype(np.float32) * 0.35).astype(np.uint8)
    for i, (label, colour) in enumerate(items):
        y = y0 + pad + i * line_h
        cv2.rectangle(img, (x0 + pad, y), (x0 + pad + box, y + box), tuple(int(c) for c in colour), -1)
        cv2.putText(img, label, (x0 + 2 * pad + box, y + box - max(1, box // 6)), font, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
