"""Image operations for analyzers: resizing to a working resolution and edge-aware map upsampling.

A network sees each photo at a working size (long side ``long_side``); its map is brought back to the
photo's size by a guided filter with the photo's grey image as the guide, so heatmap edges follow the
photo's edges instead of the working-resolution pixel grid.
"""

from __future__ import annotations

import numpy as np

from .color import grey

#: Guided-filter radius (pixels at working resolution) and regulariser for the map upsampling.
GUIDE_RADIUS = 2
GUIDE_EPS = 1e-3


def working_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size (h, w) with the long side at `long_side`, aspect ratio kept, at least 1 pixel each."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_working_size(image: np.ndarray, long_side: int) -> np.ndarray:
    """`image` (H×W×3 float) resized so its long side is `long_side` (area when shrinking), clipped to [0, 1]."""
    import cv2

    h, w = working_size(image.shape[0], image.shape[1], long_side)
    if (h, w) != image.shape[:2]:
        interpolation = cv2.INTER_AREA if h < image.shape[0] else cv2.INTER_LINEAR
        image = cv2.resize(image, (w, h), interpolation=interpolation)
    return np.clip(image, 0.0, 1.0)


def box_filter(img: np.ndarray, radius: int) -> np.ndarray:
    """Mean over (2·radius+1)² windows, borders reflected."""
    import cv2

    return cv2.boxFilter(img, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def guided_upsample(
    low_map: np.ndarray, low_guide: np.ndarray, full_guide: np.ndarray, radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS
) -> np.ndarray:
    """Bring a map to the guide's full size with a fast guided filter (He & Sun, 2015).

    The filter fits ``map ≈ a · guide + b`` in every (2·radius+1)² window at low resolution, averages the
    coefficients, upsamples *them* bilinearly and applies them to the full-resolution guide, so the map's
    edges snap to the guide's edges while flat regions stay smooth.

    Args:
        low_map: h×w float32 map.
        low_guide: h×w float32 guide (grey image at the map's resolution).
        full_guide: H×W float32 guide at the target resolution.
        radius: Window radius at low resolution.
        eps: Regulariser; larger = smoother, less edge-following.
    """
    import cv2

    low_map = low_map.astype(np.float32)
    low_guide = low_guide.astype(np.float32)
    mean_i = box_filter(low_guide, radius)
    mean_p = box_filter(low_map, radius)
    cov_ip = box_filter(low_guide * low_map, radius) - mean_i * mean_p
    var_i = box_filter(low_guide * low_guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a = box_filter(a, radius)
    mean_b = box_filter(b, radius)
    height, width = full_guide.shape
    out = cv2.resize(mean_a, (width, height), interpolation=cv2.INTER_LINEAR)
    out *= full_guide.astype(np.float32, copy=False)  # in place: the same values as a·guide + b
    out += cv2.resize(mean_b, (width, height), interpolation=cv2.INTER_LINEAR)
    return out


def map_to_image_size(low_map: np.ndarray, small: np.ndarray, image: np.ndarray,
                      image_grey: np.ndarray | None = None) -> np.ndarray:
    """A working-size map brought to `image`'s size, clipped to [−1, 1].

    Same size: unchanged; smaller photo: area resize; larger photo: guided upsampling with `small` (the
    working-size photo) and `image` as guides. `image_grey`: ``grey(image)`` when the caller has it; it
    is the guide itself when `image` lies in [0, 1] (then it equals ``grey(clip(image, 0, 1))``).
    """
    import cv2

    height, width = image.shape[:2]
    if (height, width) == low_map.shape:
        out = low_map
    elif height * width < low_map.size:
        out = cv2.resize(low_map, (width, height), interpolation=cv2.INTER_AREA)
    else:
        if image_grey is not None and float(image.min()) >= 0.0 and float(image.max()) <= 1.0:
            guide = image_grey  # two reductions instead of a clipped copy and its grey
        else:
            guide = grey(np.clip(image, 0.0, 1.0))
        out = guided_upsample(low_map, grey(small), guide)
        return np.clip(out, -1.0, 1.0, out=out)  # a new float32 array: clipped in place
    return np.clip(out, -1.0, 1.0).astype(np.float32)


__all__ = [
    "GUIDE_EPS",
    "GUIDE_RADIUS",
    "box_filter",
    "guided_upsample",
    "map_to_image_size",
    "to_working_size",
    "working_size",
]
