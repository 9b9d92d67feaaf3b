"""Contact sheets: grids of thumbnails with captions, and residual maps coloured red = over, blue = under."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def residual_to_rgb(res: np.ndarray) -> np.ndarray:
    """Residual map → RGB float image: white at 0, red towards −1 (over), blue towards +1 (under)."""
    r = np.clip(np.asarray(res, np.float32), -1.0, 1.0)
    over = np.clip(-r, 0, 1)
    under = np.clip(r, 0, 1)
    out = np.ones(r.shape + (3,), np.float32)
    out[..., 1] -= over + under  # both fade green
    out[..., 2] -= over  # over → red
    out[..., 0] -= under  # under → blue
    return np.clip(out, 0, 1)


def fit(rgb: np.ndarray, size: int) -> np.ndarray:
    """Letterbox an image into a size×size square (mid-grey background)."""
    import cv2

    h, w = rgb.shape[:2]
    s = size / max(h, w)
    small = cv2.resize(rgb.astype(np.float32), (max(1, round(w * s)), max(1, round(h * s))),
                       interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.full((size, size, 3), 0.5, np.float32)
    y0, x0 = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out


def grid(
    tiles: Sequence[np.ndarray], captions: Sequence[str], cols: int, size: int = 192, caption_h: int = 30
) -> np.ndarray:
    """Tiles (RGB float [0, 1], any size) in a grid with one or two caption lines under each → uint8 RGB."""
    import cv2

    rows = max(1, -(-len(tiles) // cols))
    cell_h = size + caption_h
    sheet = np.full((rows * cell_h, cols * size, 3), 255, np.uint8)
    for i, (tile, cap) in enumerate(zip(tiles, captions)):
        r, c = divmod(i, cols)
        y, x = r * cell_h, c * size
        sheet[y : y + size, x : x + size] = _pad(np.round(fit(tile, size - 4) * 255).astype(np.uint8), size)
        for j, line in enumerate(cap.split("\n")[:2]):
            cv2.putText(sheet, line[: size // 7], (x + 3, y + size + 12 + 13 * j), cv2.FONT_HERSHEY_SIMPLEX,
                        0.36, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def _pad(tile: np.ndarray, size: int) -> np.ndarray:
    out = np.full((size, size, 3), 255, np.uint8)
    o = (size - tile.shape[0]) // 2
    out[o : o + tile.shape[0], o : o + tile.shape[1]] = tile
    return out


def write_png(path, rgb_u8: np.ndarray) -> None:
    """Write an RGB uint8 sheet; the suffix picks the format (.png lossless, .jpg quality 90)."""
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if str(path).lower().endswith((".jpg", ".jpeg")) else []
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb_u8, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"could not write {path}")


__all__ = ["fit", "grid", "residual_to_rgb", "write_png"]


def sample_caption(params: dict, residual: np.ndarray) -> str:
    """Two short lines: what was simulated, and the label's over/under shares."""
    if params.get("kind") == "iea40k":
        head = str(params.get("img_id", "")).rsplit(".", 1)[0].split("__")[-1][-20:]
    elif params.get("original"):
        head = "original (0 EV)"
    else:
        local = "+".join(p[:4] for p in params.get("local", []))
        head = f"{params.get('kind', '')} {params.get('global_ev', 0):+.1f}EV {local}"
    over = float((residual < -0.05).mean() * 100)
    under = float((residual > 0.05).mean() * 100)
    return f"{head}\nover {over:.0f}% under {under:.0f}%"


def dataset_sheet(dataset, indices, cols: int = 6, size: int = 176) -> np.ndarray:
    """Contact sheet of dataset items: each observed image followed by its label map (red over, blue under)."""
    tiles, caps = [], []
    for i in indices:
        s = dataset.sample(int(i))
        tiles += [s.observed, residual_to_rgb(s.residual)]
        caps += [sample_caption(s.params, s.residual), f"#{i} {str(s.params.get('source_id', ''))[:22]}"]
    return grid(tiles, caps, cols, size)
