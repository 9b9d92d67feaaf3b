"""Overlays: the photo with a clipping warning painted over it, the way photographers read exposure.

Like Lightroom's and darktable's clipping warnings, over-exposed areas are painted in solid red and
under-exposed areas in solid blue; the paint's strength follows the severity: half strength where the
pixel just crosses the threshold (|r| = ``over``/``under``), rising to fully opaque at the severe threshold
(|r| ≥ ``severe``). Pixels blown to pure white in the photo itself are always painted as severe
over-exposure (and pixels crushed to pure black as severe under-exposure) — a clipped pixel has lost its
detail whatever the model thinks of its surroundings. Pixels within the "fine" band are left untouched.

``style="zebra"`` paints the same colours as diagonal stripes (like a camera's zebra pattern: ``/`` for
over, ``\\`` for under) so the photo stays visible between them, for photos whose own colours are close
to red or blue.

A legend in the corner names the colours; it is scaled with the photo (its text is about 2 % of the long
side, never below a legible 15 px) and left out only when the photo is too small to hold it.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from ..stats import Thresholds

OVER_BGR = np.array([0, 0, 255], dtype=np.float32)  # red, as Lightroom's highlight clipping warning
UNDER_BGR = np.array([255, 80, 0], dtype=np.float32)  # blue, as its shadow clipping warning
#: Strength at the threshold; it rises linearly to 1 (opaque) at the severe threshold.
MILD_STRENGTH = 0.5
#: A pixel whose three channels are all at or above this (at or below 1 − this) is blown (crushed); 250,
#: not 255, because JPEG compression leaves blown areas at 251–255.
CLIPPED = 250 / 255


class OverlayStyle(str, Enum):
    """How the warning is painted."""

    solid = "solid"
    zebra = "zebra"


def overlay_name(key: str) -> str:
    """The overlay's file name for a photo's report path: ``trip/photo.jpg`` → ``trip/photo.overlay.jpg``.

    Only ``.jpg`` is replaced; any other extension is kept so that ``photo.png`` and ``photo.jpg`` never
    share an overlay: ``photo.png`` → ``photo.png.overlay.jpg``, ``IMG_1.CR2`` → ``IMG_1.CR2.overlay.jpg``.
    """
    name = key.rsplit("/", 1)[-1]
    if name.endswith(".jpg") and len(name) > len(".jpg"):
        return key[: -len(".jpg")] + ".overlay.jpg"
    return key + ".overlay.jpg"


def warning_strength(residual: np.ndarray, thresholds: Thresholds,
                     rgb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel paint strength (0, or ``MILD_STRENGTH``..1) for over and under."""
    r = residual.astype(np.float32)
    span_over = max(thresholds.severe - thresholds.over, 1e-3)
    span_under = max(thresholds.severe - thresholds.under, 1e-3)
    over = np.where(-r >= thresholds.over,
                    MILD_STRENGTH + (1 - MILD_STRENGTH) * np.clip((-r - thresholds.over) / span_over, 0, 1), 0.0)
    under = np.where(r >= thresholds.under,
                     MILD_STRENGTH + (1 - MILD_STRENGTH) * np.clip((r - thresholds.under) / span_under, 0, 1), 0.0)
    if rgb is not None:
        # channel min/max as two element-wise passes: numpy's reduction over a length-3 last axis
        # (rgb.min(axis=2)) was 90 % of an overlay's cost
        lo = np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
        hi = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
        over = np.where(lo >= CLIPPED, 1.0, over)
        under = np.where(hi <= 1 - CLIPPED, 1.0, under)
        under = np.where(over > 0, 0.0, under)
    return over.astype(np.float32), under.astype(np.float32)


def _stripes(h: int, w: int, period: int, direction: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x + direction * y) // period) % 2 == 0


def render_overlay(rgb: np.ndarray, residual: np.ndarray, thresholds: Thresholds | None = None,
                   legend: bool = True, style: OverlayStyle | str = OverlayStyle.solid) -> np.ndarray:
    """Paint a residual map's clipping warning onto its photo.

    Args:
        rgb: float32 H×W×3 in [0, 1].
        residual: H×W map in [-1, 1] (resized to the photo if its size differs).
        thresholds: The scan's pixel thresholds (what counts as over/under, and as severe).
        legend: Draw the legend.
        style: ``solid`` or ``zebra``.

    Returns:
        uint8 BGR image (ready for ``cv2.imwrite``).
    """
    import cv2

    thresholds = thresholds or Thresholds()
    style = OverlayStyle(style)
    h, w = rgb.shape[:2]
    if residual.shape != (h, w):
        residual = cv2.resize(residual.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    over, under = warning_strength(residual, thresholds, rgb)
    if style is OverlayStyle.zebra:
        period = max(3, round(max(h, w) / 160))
        over = over * _stripes(h, w, period, 1)
        under = under * _stripes(h, w, period, -1)
    # Untinted pixels are the photo, clip(255·rgb) rounded, made in one OpenCV pass (the same values as
    # numpy's float32 product and round-half-even); the blend runs only on tinted pixels, usually a small
    # part of a decent photo. Same image as blending every pixel.
    src = np.asarray(rgb, dtype=np.float32)
    # convertScaleAbs takes |x|: negatives are clipped first, so they become 0 as in the blend
    photo = np.clip(src, 0.0, None) if float(src.min()) < 0.0 else src
    out = cv2.cvtColor(cv2.convertScaleAbs(photo, alpha=255.0), cv2.COLOR_RGB2BGR)
    tinted = np.flatnonzero((over > 0) | (under > 0))
    if tinted.size:
        o, u = over.ravel()[tinted][:, None], under.ravel()[tinted][:, None]
        bgr = src.reshape(-1, 3)[tinted][:, ::-1] * np.float32(255.0)
        blend = bgr * (1 - o - u) + OVER_BGR * o + UNDER_BGR * u
        out.reshape(-1, 3)[tinted] = np.clip(blend, 0, 255).round().astype(np.uint8)
    if legend:
        draw_legend(out)
    return out


def legend_layout(w: int, h: int) -> dict | None:
    """Where the legend goes and how big its text is, for a w×h photo (None: too small for one).

    Returns a dict with ``scale`` and ``thickness`` (for ``cv2.putText``), ``box`` (swatch side), ``pad``,
    ``line`` (line height) and ``rect`` (x0, y0, x1, y1) of the legend's background.
    """
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    target = max(15.0, 0.02 * max(w, h))  # text height in pixels
    (_, unit_h), _ = cv2.getTextSize("Xg", font, 1.0, 1)
    scale = target / unit_h
    thickness = max(1, round(target / 12))
    (text_w, text_h), baseline = cv2.getTextSize("under-exposed", font, scale, thickness)
    pad = max(3, round(target * 0.45))
    box = text_h + baseline
    line = box + pad
    lw = pad * 3 + box + text_w
    lh = pad + 2 * line
    if lw + 2 * pad > w * 0.6 or lh + 2 * pad > h * 0.45:
        return None
    x0, y0 = w - lw - pad, h - lh - pad
    return {"scale": scale, "thickness": thickness, "box": box, "pad": pad, "line": line,
            "baseline": baseline, "rect": (x0, y0, x0 + lw, y0 + lh)}


def draw_legend(img: np.ndarray) -> None:
    """Draw the legend (two lines: over-exposed, under-exposed) in the lower right corner, in place."""
    import cv2

    h, w = img.shape[:2]
    layout = legend_layout(w, h)
    if layout is None:
        return
    x0, y0, x1, y1 = layout["rect"]
    roi = img[y0:y1, x0:x1]
    roi[:] = (roi.astype(np.float32) * 0.25).astype(np.uint8)
    pad, box, line = layout["pad"], layout["box"], layout["line"]
    for i, (label, colour) in enumerate((("over-exposed", OVER_BGR), ("under-exposed", UNDER_BGR))):
        y = y0 + pad + i * line
        cv2.rectangle(img, (x0 + pad, y), (x0 + pad + box - 1, y + box - 1), tuple(int(c) for c in colour), -1)
        cv2.putText(img, label, (x0 + 2 * pad + box, y + box - layout["baseline"]), cv2.FONT_HERSHEY_SIMPLEX,
                    layout["scale"], (255, 255, 255), layout["thickness"], cv2.LINE_AA)
