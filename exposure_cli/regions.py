"""Region masks for region-aware rules: face, person, main subject, background and sky.

``compute_regions(rgb)`` runs once per photo in the scan. It works on a small copy (long side
:data:`WORK_SIDE` px) so it costs a few milliseconds whatever the photo size, and returns boolean masks at
the input size. A region that is not found is ``None`` ("not present in this photo").

How each region is found, and what it cannot do:

* **face** — frontal faces from the LBP face cascade that ships inside scikit-image
  (``skimage.data.lbp_frontal_face_cascade_filename()``; an OpenCV-format cascade). OpenCV 5's Python
  wheels no longer contain ``CascadeClassifier``, the Haar cascade files or the HOG people detector, so
  they cannot be used. Profiles, small faces and strongly rotated faces are missed: the cascade's
  smallest window is its trained 24 × 24 px, so on the 112 px copy a face must be at least about a fifth
  of the photo's long side (24 / 112), and on a photo under 112 px (not enlarged) at least 24 of its
  pixels (37 % of a 64 px thumbnail's long side). With numba installed (the ``fast`` extra) the cascade runs
  in :mod:`exposure_cli.face_cascade`, which returns scikit-image's boxes in scikit-image's order about five
  times faster; without it scikit-image runs it. Without scikit-image installed, face and person are
  ``None`` and :func:`detector_status` says why.
* **person** — a heuristic, not a detector: each face plus the torso box below it (3 face widths wide,
  6 face heights tall, clipped to the image). Only people whose face is detected are found.
* **subject** — the main subject from a spectral-residual saliency map (Hou & Zhang, CVPR 2007) computed
  in numpy on a 64-px copy, thresholded, the largest salient blobs kept; faces and persons join it.
* **background** — everything that is not subject (``None`` when there is no subject or it fills the frame).
* **sky** — only where it is easy to be sure: bright, smooth, bluish or grey pixels connected to the top
  edge, mostly in the upper part of the frame, covering 3-85 % of it. Skies cut off from the top edge,
  night skies and textured clouds are not found (``None``) rather than guessed.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ._kernels import fused_kernel
from .color import grey

#: Long side of the internal working copy.
WORK_SIDE = 112
#: Long side of the saliency working copy (spectral residual wants a small image).
SALIENCY_SIDE = 64
REGION_NAMES = ("face", "person", "subject", "background", "sky")


@functools.lru_cache(maxsize=1)
def _face_cascade() -> Any:
    try:
        from skimage import data
        from skimage.feature import Cascade
    except ImportError:
        return None
    return Cascade(data.lbp_frontal_face_cascade_filename())


@functools.lru_cache(maxsize=1)
def _fast_face_cascade() -> Any:
    """The same cascade run by :mod:`exposure_cli.face_cascade` (numba; the same boxes in the same order),
    or ``None`` without numba (the ``fast`` extra) or scikit-image (which ships the cascade file)."""
    if _face_cascade() is None:
        return None
    try:
        from .face_cascade import default_cascade
    except ImportError:  # numba missing, or a numba that refuses this numpy: scikit-image's own code runs
        return None
    return default_cascade()


def detector_status() -> dict[str, str]:
    """What each region uses on this installation (for report metadata and ``exposure rules list``)."""
    if _face_cascade() is None:
        face = "unavailable: install scikit-image for face/person regions"
    elif _fast_face_cascade() is not None:
        face = "scikit-image LBP frontal-face cascade, run by exposure_cli.face_cascade (numba)"
    else:
        face = ("scikit-image LBP frontal-face cascade, run by scikit-image "
                "(install exposure-cli[fast] for the same boxes ~5× faster)")
    return {
        "face": face,
        "person": "face + torso box heuristic" if _face_cascade() is not None else face,
        "subject": "spectral-residual saliency",
        "background": "not subject",
        "sky": "bright smooth bluish/grey region connected to the top edge",
    }


#: The face search: window scale step 1.25, every position at the two smallest scales (the step is the
#: scale rounded), windows from the cascade's 24 px up to the working copy's short side.
_FACE_SEARCH = {"scale_factor": 1.25, "step_ratio": 1}


def detect_faces(grey_small: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes ``(row, col, height, width)`` in the working copy's pixels.

    The numba kernel when numba is installed, else scikit-image's ``Cascade``: the same boxes either way.
    """
    h, w = grey_small.shape
    side = min(h, w)
    if side < 20:
        return []
    image = np.ascontiguousarray(grey_small, dtype=np.float64)
    # min_size below the cascade's 24 px window has no effect: the smallest window is 24 px
    sizes = {"min_size": (16, 16), "max_size": (side, side)}
    fast = _fast_face_cascade()
    if fast is not None:
        return [tuple(box) for box in fast.detect(image, **_FACE_SEARCH, **sizes).tolist()]
    cascade = _face_cascade()
    if cascade is None:
        return []
    found = cascade.detect_multi_scale(img=image, **_FACE_SEARCH, **sizes)
    return [(int(d["r"]), int(d["c"]), int(d["height"]), int(d["width"])) for d in found]


def _person_mask(faces: list[tuple[int, int, int, int]], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    h, w = shape
    for r, c, fh, fw in faces:
        mask[max(r, 0) : min(r + fh, h), max(c, 0) : min(c + fw, w)] = True
        top = r + fh
        left = int(c - fw)
        mask[max(top, 0) : min(top + 6 * fh, h), max(left, 0) : min(left + 3 * fw, w)] = True
    return mask


def spectral_residual_saliency(grey_image: np.ndarray) -> np.ndarray:
    """Saliency map in [0, 1] (Hou & Zhang's spectral residual), same size as the input."""
    import cv2

    g = np.asarray(grey_image, dtype=np.float32)
    h, w = g.shape
    scale = SALIENCY_SIDE / max(h, w)
    small = cv2.resize(g, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8).astype(np.float32)
    phase = np.angle(spectrum)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    saliency = np.abs(np.fft.ifft2(_exp_of_complex(residual, phase))) ** 2
    saliency = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), sigmaX=2.5)
    saliency -= saliency.min()
    peak = float(saliency.max())
    if peak > 0:
        saliency /= peak
    return cv2.resize(saliency, (w, h), interpolation=cv2.INTER_LINEAR)


def colour_contrast_saliency(rgb_small: np.ndarray) -> np.ndarray:
    """Frequency-tuned saliency (Achanta et al., CVPR 2009): distance of each blurred Lab pixel from the
    image's mean colour, in [0, 1]. It fills whole objects where the spectral residual marks their edges."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(rgb_small, dtype=np.float32), cv2.COLOR_RGB2Lab)
    blurred = cv2.GaussianBlur(lab, (0, 0), 1.5)
    sq = (blurred - _mean_colour(lab.reshape(-1, 3))) ** 2
    # the sum over the three channels in numpy's order, (L + a) + b: numpy's reduction over a length-3
    # last axis costs more than the rest of this function
    distance = np.sqrt((sq[..., 0] + sq[..., 1]) + sq[..., 2])
    peak = float(distance.max())
    return (distance / peak).astype(np.float32) if peak > 0 else np.zeros(distance.shape, np.float32)


#: Above this real part C99 ``cexpf`` scales against overflow, so :func:`_exp_of_complex` leaves it to numpy.
_EXP_SAFE = 80.0


def _exp_of_complex(real: np.ndarray, imag: np.ndarray) -> np.ndarray:
    """``np.exp(real + 1j * imag)``: in one numba pass once numba is loaded (:func:`exposure_cli.fused.complex_exp`,
    the same bits) for float32 inputs with every real part finite and below :data:`_EXP_SAFE` in size and
    every imaginary part finite, else numpy (numpy's ufunc costs ≈ 0.1 ms on the 64-px spectrum)."""
    kernel = fused_kernel("complex_exp")
    if (kernel is not None and real.dtype == np.float32 and imag.dtype == np.float32 and real.shape == imag.shape
            and real.size and float(np.abs(real).max()) < _EXP_SAFE and bool(np.isfinite(imag).all())):
        return kernel(np.ascontiguousarray(real), np.ascontiguousarray(imag))
    return np.exp(real + 1j * imag)


def _mean_colour(pixels: np.ndarray) -> np.ndarray:
    """``pixels.mean(axis=0)`` of an N×3 array: one numba pass once numba is loaded
    (:func:`exposure_cli.fused.column_means`, the same bits) for float32, else numpy."""
    kernel = fused_kernel("column_means")
    if kernel is not None and pixels.dtype == np.float32 and pixels.ndim == 2 and pixels.shape[0] > 0:
        return kernel(np.ascontiguousarray(pixels))
    return pixels.mean(axis=0)


@functools.lru_cache(maxsize=8)
def _centre_prior(shape: tuple[int, int]) -> np.ndarray:
    """The centre weighting of the saliency map (read-only; cached: a scan's photos share a few shapes)."""
    h, w = shape
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / (0.5 * h)
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / (0.5 * w)
    prior = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * 0.6**2)).astype(np.float32)
    prior.setflags(write=False)
    return prior


def _subject_mask(saliency: np.ndarray) -> np.ndarray | None:
    import cv2

    if float(saliency.max()) <= 0.05:
        return None
    level, mask = cv2.threshold((saliency * 255).astype(np.uint8), 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if level < 40 or not mask.any():  # a flat saliency map: nothing stands out
        return None
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    count, labels, component_stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = component_stats[1:, cv2.CC_STAT_AREA]
    if areas.size == 0:
        return None
    # keep the largest blob and any other blob at least a third of its size
    keep = np.flatnonzero(areas >= areas.max() / 3.0) + 1
    subject = _labels_in(labels, count, keep).astype(np.uint8)
    subject = cv2.morphologyEx(subject, cv2.MORPH_CLOSE, kernel)
    return subject.astype(bool)


def _sky_mask(rgb_small: np.ndarray, grey_small: np.ndarray) -> np.ndarray | None:
    import cv2

    h, w = grey_small.shape
    smooth = cv2.GaussianBlur(grey_small, (0, 0), 1.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    texture = cv2.blur(np.abs(gx) + np.abs(gy), (5, 5))
    r, g, b = rgb_small[..., 0], rgb_small[..., 1], rgb_small[..., 2]
    saturation = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)  # max − min over RGB
    bluish = (b >= r + 0.03) & (b >= g - 0.02) & (grey_small > 0.35)
    bright_grey = (saturation < 0.12) & (grey_small > 0.6)
    candidate = ((bluish | bright_grey) & (texture < 0.12)).astype(np.uint8)
    if not candidate[0].any():
        return None
    count, labels = cv2.connectedComponents(candidate, connectivity=4)
    top_labels = np.unique(labels[0][candidate[0] > 0])
    top_labels = top_labels[top_labels > 0]
    sky = _labels_in(labels, count, top_labels)
    area = float(sky.mean())
    if not 0.03 <= area <= 0.85:
        return None
    rows = np.nonzero(sky)[0]
    if float((rows < 0.6 * h).mean()) < 0.9:  # a sky sits in the upper part of the frame
        return None
    if int(sky[0].sum()) < 0.5 * w:  # and runs along a good part of the top edge
        return None
    return sky


def _labels_in(labels: np.ndarray, count: int, wanted: np.ndarray) -> np.ndarray:
    """``np.isin(labels, wanted)`` for the labels ``0 … count − 1`` of ``cv2.connectedComponents``, by a
    lookup table (``np.isin`` sorts or builds its own table on every call, ten times the cost here)."""
    table = np.zeros(max(int(count), 1), dtype=bool)
    table[np.asarray(wanted, dtype=np.intp)] = True
    return table[labels]


#: How far the quick per-channel standard deviation must be from a threshold before :func:`_varies` trusts
#: it. numpy's float32 ``std`` of a working copy (at most 112 × 112 pixels per channel) and OpenCV's float64
#: one differ by far less (bounded by ~2e-5 even with float32 sums accumulated one value at a time).
_STD_MARGIN = 2e-4


def _varies(small: np.ndarray, threshold: float) -> bool:
    """``float(small.std(axis=(0, 1)).max()) > threshold``, the same decision at a fraction of the cost.

    numpy's reduction over the two leading axes of an H×W×3 array is slow; OpenCV's ``meanStdDev`` gives
    the per-channel standard deviations in float64 at once. Only when its answer lies within
    :data:`_STD_MARGIN` of the threshold is numpy's own expression evaluated, so the decision is numpy's.
    """
    import cv2

    image = np.ascontiguousarray(small, dtype=np.float32)
    if image.ndim == 3 and image.shape[2] == 3 and image.size:
        _, std = cv2.meanStdDev(image)
        quick = float(np.max(std))
        if math.isfinite(quick) and abs(quick - threshold) > _STD_MARGIN:
            return quick > threshold
    return float(small.std(axis=(0, 1)).max()) > threshold


def _to_size(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    import cv2

    if mask is None:
        return None
    h, w = shape
    if mask.shape == (h, w):
        out = mask.astype(bool)
    else:
        out = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return out if out.any() else None


#: Which detectors a region needs: the sky excludes persons, the subject joins persons and avoids the sky,
#: and the background is what the subject is not — so computing a region exactly needs these others.
NEEDS = {
    "face": ("face",),
    "person": ("face", "person"),
    "sky": ("face", "person", "sky"),
    "subject": ("face", "person", "sky", "subject"),
    "background": ("face", "person", "sky", "subject", "background"),
}


def closure(names) -> tuple[str, ...]:
    """The regions that must be computed to report `names` exactly (in REGION_NAMES order)."""
    wanted = {n for name in names for n in NEEDS[name]}
    return tuple(n for n in REGION_NAMES if n in wanted)


def region_inputs(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The detectors' working copy (long side :data:`WORK_SIDE`, one area resize) and its grey image."""
    import cv2

    image = np.asarray(rgb, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
    h, w = image.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = _area_resize(image, size) if scale < 1.0 else image
    small = np.clip(small, 0.0, 1.0)
    return small, grey(small)


def _area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(image, size, interpolation=cv2.INTER_AREA)``; the same bits from the fused kernel
    (:func:`exposure_cli.fused.area_resize_rgb`) where it applies: a float32 RGB downscale that is not by a
    whole factor on both axes (OpenCV's general area resampling)."""
    import cv2

    kernel = fused_kernel("area_resize_rgb")
    out_w, out_h = size
    h, w = image.shape[:2]
    if kernel is not None and image.dtype == np.float32 and out_w <= w and out_h <= h:
        x, y = area_tables(w, out_w), area_tables(h, out_h)
        if x is not None and y is not None and not (x[3] and y[3]):
            return kernel(np.ascontiguousarray(image), out_h, out_w, x[0], x[1], x[2], *_area_rows(h, out_h))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=64)
def area_tables(source: int, target: int):
    """OpenCV's area-resampling weights along one axis of `source` pixels resized to `target`:
    ``(first, count, alpha, whole)`` — output pixel ``d`` is the weighted sum of ``count[d]`` source pixels
    from ``first[d]`` with the float32 weights ``alpha[:count[d], d]``; ``whole``: the factor is a whole
    number (OpenCV then takes its fast path, which the fused kernel does not reproduce). None when
    `target` > `source`.

    The cell of output pixel ``d`` is ``[d·s, d·s + s)`` source pixels, ``s = 1 / (target / source)`` in
    float64 as OpenCV computes it; a partly covered pixel at either end gets the covered share (when more
    than 0.001 of it is covered), the others 1 / cell width, all divided in float64 and rounded to float32."""
    if target > source or target < 1:
        return None
    scale = 1.0 / (target / source)
    whole = abs(scale - round(scale)) < 2.220446049250313e-16
    first = np.zeros(target, np.int64)
    count = np.zeros(target, np.int64)
    weights: list[list[float]] = []
    for d in range(target):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, source - f1)
        s2 = min(math.floor(f2), source - 1)
        s1 = min(math.ceil(f1), s2)
        ws: list[float] = []
        start = s1
        if s1 - f1 > 1e-3:
            start = s1 - 1
            ws.append((s1 - f1) / cell)
        ws.extend(1.0 / cell for _ in range(s1, s2))
        if f2 - s2 > 1e-3:
            ws.append(min(min(f2 - s2, 1.0), cell) / cell)
        first[d], count[d] = start, len(ws)
        weights.append(ws)
    alpha = np.zeros((max(1, int(count.max())), target), np.float32)
    for d, ws in enumerate(weights):
        alpha[: len(ws), d] = np.asarray(ws, np.float64).astype(np.float32)
    return first, count, alpha, whole


@functools.lru_cache(maxsize=64)
def _area_rows(source: int, target: int):
    """:func:`area_tables` of the rows as one entry per (source row, output row) pair, in order."""
    first, count, alpha, _ = area_tables(source, target)
    source_rows = np.concatenate([np.arange(f, f + n) for f, n in zip(first, count)]).astype(np.int64)
    output_rows = np.repeat(np.arange(first.size), count).astype(np.int64)
    weights = np.concatenate([alpha[:n, d] for d, n in enumerate(count)]).astype(np.float32)
    return source_rows, output_rows, weights


def small_regions(rgb: np.ndarray, names=REGION_NAMES) -> dict[str, np.ndarray | None]:
    """Region masks at the detectors' working size (long side :data:`WORK_SIDE`), only for `names`
    and what they depend on (:data:`NEEDS`); regions not asked for are left out of the result."""
    todo = closure(names)
    small, g = region_inputs(rgb)
    small_shape = g.shape
    out: dict[str, np.ndarray | None] = {}
    if not todo:
        return out
    faces = detect_faces(g)
    if faces:
        face = np.zeros(small_shape, dtype=bool)
        for r, c, fh, fw in faces:
            face[r : r + fh, c : c + fw] = True
        out["face"] = face
    else:
        out["face"] = None
    person = _person_mask(faces, small_shape) if faces else None
    if "person" in todo:
        out["person"] = person
    if "sky" not in todo:
        return out
    # the sky is found first: a bright sky is often the most "salient" colour, but never the main subject
    sky = _sky_mask(small, g)
    subject = None
    if "subject" in todo:
        if _varies(small, 0.01):  # a flat frame has nothing that stands out
            saliency = 0.5 * spectral_residual_saliency(g) + colour_contrast_saliency(small)
            saliency *= _centre_prior(small_shape)
            if sky is not None:
                saliency[sky] = 0.0
            subject = _subject_mask(saliency / max(float(saliency.max()), 1e-6))
    if person is not None:
        subject = person.copy() if subject is None else (subject | person)
        if sky is not None:
            sky = sky & ~person if (sky & ~person).any() else None
    out["sky"] = sky
    if "subject" in todo:
        out["subject"] = subject
        out["background"] = None if subject is None or subject.all() else ~subject
    return out


def region_code(rgb: np.ndarray, names=REGION_NAMES, shape: tuple[int, int] | None = None, upsample: bool = True):
    """All requested regions of one photo as one uint8 image: bit ``i`` set where region ``names[i]`` is.

    One nearest-neighbour resize to `shape` (default: the photo's size) instead of one per mask; with
    ``upsample=False`` none: the code at the detectors' working size, which
    :func:`exposure_cli.stats.image_stats` reads as its nearest-neighbour upsampling to the map's size.
    Returns ``(code, present)``: the uint8 code and the names whose bits are in it, in bit order.
    Regions asked for but not found are not in ``present``.
    """
    from .imageops import nearest_resize

    masks = small_regions(rgb, names)
    h, w = shape or np.asarray(rgb).shape[:2]
    present = [n for n in names if masks.get(n) is not None and masks[n].any()]
    if not present:
        return None, []
    code = np.zeros(next(iter(m for m in masks.values() if m is not None)).shape, np.uint8)
    for bit, name in enumerate(present):
        code |= masks[name].astype(np.uint8) << bit
    return (nearest_resize(code, (h, w)) if upsample else code), present


def compute_regions(rgb: np.ndarray, names=REGION_NAMES) -> dict[str, np.ndarray | None]:
    """Region masks of one photo.

    Args:
        rgb: H×W×3 float32 RGB in [0, 1].
        names: Regions to compute (default all); others are ``None``.

    Returns:
        ``face``, ``person``, ``subject``, ``background``, ``sky`` → H×W bool mask, or ``None`` when the
        region is not present (or cannot be found reliably) in this photo, or was not asked for.
    """
    h, w = np.asarray(rgb).shape[:2]
    masks = small_regions(rgb, names)
    return {name: _to_size(masks.get(name), (h, w)) if name in names else None for name in REGION_NAMES}


__all__ = ["NEEDS", "REGION_NAMES", "closure", "compute_regions", "region_code", "region_inputs", "small_regions", "detect_faces", "detector_status", "spectral_residual_saliency"]
