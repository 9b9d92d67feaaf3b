"""Image operations for analyzers: resizing to a working resolution and edge-aware map upsampling.

A network sees each photo at a working size: photos larger than the working resolution (long side
``long_side``) are shrunk to it; smaller photos keep their own size (:func:`analysis_size`; upscaled only
to ``min_long_side``, see docs/MODEL.md "Small images"). The network pads to a multiple of
:data:`NETWORK_MULTIPLE`, so photos of one padded size (:func:`padded_size`) batch together. A map is
brought back to the photo's size by a guided filter with the photo's grey image as the guide, so heatmap
edges follow the photo's edges instead of the working-resolution pixel grid.
"""

from __future__ import annotations

import functools
from typing import Union

import numpy as np

from .color import grey

#: The network's spatial multiple: inputs are padded (replicate, bottom/right) up to it and cropped back.
NETWORK_MULTIPLE = 32
#: Photos with a long side from this up to the working resolution are analysed at their own size; smaller
#: ones are upscaled to THUMBNAIL_LONG_SIDE, because below it the maps measurably suffer. Chosen by
#: measurement, not by a weights file (docs/MODEL.md, "Small images").
NATIVE_MIN_LONG_SIDE = 256
#: Long side a photo smaller than NATIVE_MIN_LONG_SIDE is upscaled to when its weights card names no copy:
#: the small-images rule measured 64 px thumbnails read best through a 512 copy (docs/MODEL.md, "Small
#: images"), whatever the working size. The shipped card gives a copy per size band (``thumbnail_bands``).
THUMBNAIL_LONG_SIDE = 512

#: A thumbnail copy — how a photo smaller than NATIVE_MIN_LONG_SIDE is enlarged for the network: one long
#: side for every such photo (an int), or size bands ``((from_long_side, copy_long_side), …)`` ascending,
#: where a photo takes the copy of the last band starting at or below its long side (the first band's when
#: it is smaller than every start) and a copy of 0 means "its own size". The small-images rule chooses it
#: per weights file (docs/MODEL.md, "Small images"); None means the working size.
ThumbnailCopy = Union[int, tuple[tuple[int, int], ...], None]

#: Guided-filter radius (pixels at working resolution) and regulariser for the map upsampling.
GUIDE_RADIUS = 2
GUIDE_EPS = 1e-3


@functools.lru_cache(maxsize=64)
def nearest_index(source: int, target: int) -> np.ndarray:
    """Which of `source` pixels each of `target` pixels takes along one axis in
    ``cv2.resize(…, interpolation=cv2.INTER_NEAREST)``: ``min(floor(i · (1 / (target / source))),
    source − 1)`` in float64, as OpenCV computes it (int64, read-only; tested against OpenCV)."""
    index = np.minimum(np.floor(np.arange(target) * (1.0 / (target / source))), source - 1).astype(np.int64)
    index.flags.writeable = False
    return index


def nearest_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST)`` of a 2-D array to `shape` ``(h, w)``."""
    import cv2

    h, w = shape
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST)


def working_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size (h, w) with the long side at `long_side`, aspect ratio kept, at least 1 pixel each."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def thumbnail_copy(value: object) -> ThumbnailCopy:
    """A :data:`ThumbnailCopy` from an int, None, or a list of ``[from_long_side, copy_long_side]`` pairs (a
    weights card's JSON), checked: starts positive and strictly ascending, copies 0 (own size) or ≥ 32."""
    if value is None or isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value is not None and int(value) < 32:
            raise ValueError(f"a thumbnail copy's long side must be at least 32, got {value}")
        return None if value is None else int(value)
    try:
        bands = tuple((int(lo), int(copy)) for lo, copy in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as e:
        raise ValueError(f"thumbnail bands must be [from_long_side, copy_long_side] pairs, got {value!r}") from e
    if not bands:
        raise ValueError("thumbnail bands must not be empty")
    starts = [lo for lo, _ in bands]
    if starts[0] < 1 or any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"thumbnail bands must start at ascending positive long sides, got {starts}")
    if any(copy != 0 and copy < 32 for _, copy in bands):
        raise ValueError(f"a thumbnail band's copy must be 0 (own size) or at least 32 px, got {bands}")
    return bands


def thumbnail_long_side_for(longest: int, thumbnail: ThumbnailCopy) -> int | None:
    """The copy's long side for a photo whose long side is `longest` (0: its own size; None: none set)."""
    if thumbnail is None or isinstance(thumbnail, int):
        return thumbnail
    copy = thumbnail[0][1]
    for lo, band_copy in thumbnail:
        if longest >= lo:
            copy = band_copy
    return copy


def describe_thumbnail(thumbnail: ThumbnailCopy) -> str:
    """`thumbnail` as report metadata: ``"512"``, or bands as ``"512; 160 px+: 320; 224 px+: own"``."""
    if thumbnail is None or isinstance(thumbnail, int):
        return str(thumbnail)
    parts = [f"{lo} px+: {copy or 'own'}" for lo, copy in thumbnail]
    return "; ".join(parts)


def analysis_size(height: int, width: int, long_side: int,
                  native_min_long_side: int = NATIVE_MIN_LONG_SIDE,
                  thumbnail_long_side: ThumbnailCopy = None) -> tuple[int, int]:
    """Size (h, w) the network sees for a `height`×`width` photo.

    Larger than `long_side`: shrunk so the long side is `long_side`. From `native_min_long_side` up to
    `long_side`: its own size. Smaller than `native_min_long_side`: to its thumbnail copy — one long side,
    or the copy of its size band (:data:`ThumbnailCopy`; 0 keeps its own size), None: `long_side`.
    ``native_min_long_side > long_side`` restores "always `long_side`". Aspect ratio kept.
    """
    longest = max(height, width)
    if int(native_min_long_side) <= longest <= int(long_side):
        return int(height), int(width)
    if longest < int(native_min_long_side) <= int(long_side) and thumbnail_long_side:
        copy = thumbnail_long_side_for(longest, thumbnail_long_side)
        if copy == 0:
            return int(height), int(width)
        if copy:
            return working_size(height, width, int(copy))
    return working_size(height, width, long_side)


def padded_size(height: int, width: int, multiple: int = NETWORK_MULTIPLE) -> tuple[int, int]:
    """(h, w) rounded up to the network's multiple: the shape the network computes on."""
    return -(-int(height) // multiple) * multiple, -(-int(width) // multiple) * multiple


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` (H×W×C) padded bottom/right by edge replication to `height`×`width` — what the network
    does to its input itself, so a padded photo gives the same map, cropped back, as the photo alone."""
    pad_h, pad_w = height - image.shape[0], width - image.shape[1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"cannot pad {image.shape[:2]} to {(height, width)}")
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2), mode="edge")


def to_working_size(image: np.ndarray, long_side: int, native_min_long_side: int | None = None,
                    thumbnail_long_side: ThumbnailCopy = None) -> np.ndarray:
    """`image` (H×W×3 float) resized for the network (area when shrinking), clipped to [0, 1].

    Without `native_min_long_side` the long side becomes exactly `long_side`; with it,
    :func:`analysis_size` decides (photos from that size up to `long_side` keep their size, smaller ones go
    to `thumbnail_long_side`).
    """
    import cv2

    if native_min_long_side is None:
        h, w = working_size(image.shape[0], image.shape[1], long_side)
    else:
        h, w = analysis_size(image.shape[0], image.shape[1], long_side, native_min_long_side, thumbnail_long_side)
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
    "NATIVE_MIN_LONG_SIDE",
    "THUMBNAIL_LONG_SIDE",
    "NETWORK_MULTIPLE",
    "ThumbnailCopy",
    "analysis_size",
    "describe_thumbnail",
    "thumbnail_copy",
    "thumbnail_long_side_for",
    "pad_to",
    "padded_size",
    "box_filter",
    "guided_upsample",
    "map_to_image_size",
    "nearest_index",
    "nearest_resize",
    "to_working_size",
    "working_size",
]
