"""scikit-image's LBP cascade detector compiled with numba: the same boxes, in the same order, faster.

:class:`LbpCascade` reads an OpenCV-format multi-block LBP cascade (the XML file that
``skimage.feature.Cascade`` reads) and its :meth:`LbpCascade.detect_multi_scale` takes the same arguments
and returns the same list as scikit-image 0.26's ``Cascade.detect_multi_scale``. Exact means the same
arithmetic, not just the same idea:

* the integral image is summed in float64 down the rows, then along them (numpy's two ``cumsum``), then
  rounded to float32; a zero row and column on its top and left stand in for scikit-image's "skip the
  corner outside the image" branches (adding an exact zero changes no float32 sum);
* the window scales are computed by the same numpy expression, in float32; every scaled size is a float32
  product truncated to an integer, the step is a float32 product rounded half away from zero;
* windows start at rows and columns ``0, step, …`` strictly below ``image size − window size`` (the last
  position is not tried, as in scikit-image);
* a block sum is ``((S[r1, c1] + S[r0, c0]) − S[r0, c1]) − S[r1, c0]`` in float32, a neighbour block sets
  its bit when its sum is ``>=`` the centre's, a stage sums its stumps' leaf values in float32 in file
  order and fails when the sum is ``<`` its float32 threshold minus ``eps``;
* windows that pass go, in scan order (scale, row, column), into scikit-image's greedy grouping: each
  joins the cluster whose integer-mean box it overlaps most (intersection / smaller area, float32, above
  the threshold), clusters with fewer than ``min_neighbor_number`` windows are dropped, and each remaining
  cluster's integer mean is returned in cluster order.

The scikit-image 0.26 wheels are built without OpenMP, so its scan runs in that order on one thread; with
OpenMP its scales would be scanned in parallel and the grouping order could vary from run to run.

Compiled lazily: importing this module imports numba but compiles nothing; the first detection compiles
(or loads from numba's cache: ``__pycache__`` next to this file, or numba's per-user cache directory when
the package directory is read-only, or ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import functools
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._numba import kernel

_F32 = np.float32


@dataclass(frozen=True, eq=False)
class LbpCascade:
    """A multi-block LBP cascade: stages of stumps, each stump one feature and a 256-bit look-up table.

    Attributes:
        window_height: Trained window height (the smallest box the cascade can find).
        window_width: Trained window width.
        eps: Subtracted from every stage threshold (scikit-image's ``Cascade.eps``).
        stage_end: uint64, one past the index of each stage's last stump.
        stage_limit: float32 ``threshold − eps`` per stage: a window whose stage sum is below it is rejected.
        stump_feature: Feature index of each stump.
        leaves: float32 (stumps, 2): the value a stump adds when its LUT bit is 0, and when it is 1.
        luts: uint32 (stumps, 8): bit ``code`` of each stump's 256-bit table is bit ``code % 32`` of word
            ``code // 32``.
        features: int64 (features, 4): row, column, block height and block width of each feature's 3×3 grid.
    """

    window_height: int
    window_width: int
    eps: np.float32
    stage_end: np.ndarray
    stage_limit: np.ndarray
    stump_feature: np.ndarray
    leaves: np.ndarray
    luts: np.ndarray
    features: np.ndarray

    @classmethod
    def from_xml(cls, path: str | Path, eps: float = 1e-5) -> LbpCascade:
        """Parse an OpenCV LBP cascade file (the format and fields scikit-image's ``Cascade`` reads)."""
        tree = ET.parse(path)
        n_stages = int(tree.find(".//stageNum").text)
        features = []
        for node in tree.find(".//features"):
            x, y, w, h = (int(v) for v in node[0].text.split())  # <rect>x y w h</rect>
            features.append((y, x, h, w))
        stage_end, threshold, stump_feature, leaves, luts = [], [], [], [], []
        for stage in list(tree.find(".//stages"))[:n_stages]:
            n = int(stage.find("maxWeakCount").text)
            threshold.append(float(stage.find("stageThreshold").text))
            for weak in list(stage.find("weakClassifiers"))[:n]:
                # internalNodes: two unused node indices, the feature index, then 8 signed 32-bit LUT words
                nodes = [int(v) for v in weak.find("internalNodes").text.split()[2:]]
                left, right = (float(v) for v in weak.find("leafValues").text.split()[:2])
                stump_feature.append(nodes[0])
                luts.append([v & 0xFFFFFFFF for v in nodes[1:9]])
                leaves.append((right, left))  # a set bit adds the first leaf value ("left")
            stage_end.append(len(stump_feature))
        eps32 = _F32(eps)
        return cls(
            window_height=int(tree.find(".//height").text),
            window_width=int(tree.find(".//width").text),
            eps=eps32,
            stage_end=np.asarray(stage_end, np.uint64),
            # float32 − float32, as scikit-image's C does on every window
            stage_limit=np.asarray(threshold, _F32) - eps32,
            stump_feature=np.asarray(stump_feature, np.int64),
            leaves=np.asarray(leaves, _F32).reshape(-1, 2),
            luts=np.asarray(luts, np.uint32).reshape(-1, 8),
            features=np.asarray(features, np.int64).reshape(-1, 4),
        )

    def scales(self, min_size, max_size, scale_factor: float) -> np.ndarray:
        """The float32 window scales scikit-image tries for these sizes (smallest first)."""
        return _scales(self.window_height, self.window_width, tuple(min_size), tuple(max_size),
                       float(_F32(scale_factor)))

    def detect(self, img: np.ndarray, scale_factor: float, step_ratio: float, min_size, max_size,
               min_neighbor_number: int = 4, intersection_score_threshold: float = 0.5) -> np.ndarray:
        """Boxes as an int64 array of rows ``(row, col, height, width)``, in scikit-image's order.

        Args: as :meth:`detect_multi_scale`.
        """
        image = np.ascontiguousarray(img, dtype=np.float64)
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D grey image, got shape {image.shape}")
        scales = self.scales(min_size, max_size, scale_factor)
        step_ratio32 = _F32(step_ratio)
        if scales.size and not _round_half_away(scales[0] * step_ratio32) >= 1:
            raise ValueError(f"step_ratio {step_ratio} gives a step of 0 pixels")  # scikit-image loops forever
        return _detect(image, scales, step_ratio32, self.window_height, self.window_width, self.stage_end,
                       self.stage_limit, self.stump_feature, self.leaves, self.luts, self.features,
                       _F32(intersection_score_threshold), int(min_neighbor_number))

    def detect_multi_scale(self, img: np.ndarray, scale_factor: float, step_ratio: float, min_size, max_size,
                           min_neighbor_number: int = 4,
                           intersection_score_threshold: float = 0.5) -> list[dict[str, int]]:
        """Drop-in for ``skimage.feature.Cascade.detect_multi_scale`` on a 2-D image.

        Args:
            img: 2-D grey image (any real dtype; summed in float64 like scikit-image).
            scale_factor: Window growth per scale (used as float32).
            step_ratio: Window step as a multiple of the scale (used as float32).
            min_size: Smallest window ``(height, width)``.
            max_size: Largest window ``(height, width)``.
            min_neighbor_number: Windows a cluster needs to be reported.
            intersection_score_threshold: Overlap (intersection / smaller area) above which a window joins
                a cluster.

        Returns:
            ``{"r", "c", "width", "height"}`` per box, as scikit-image returns them.
        """
        boxes = self.detect(img, scale_factor, step_ratio, min_size, max_size, min_neighbor_number,
                            intersection_score_threshold)
        return [{"r": int(r), "c": int(c), "width": int(w), "height": int(h)} for r, c, h, w in boxes.tolist()]


@functools.lru_cache(maxsize=64)
def _scales(window_height: int, window_width: int, min_size: tuple, max_size: tuple,
            scale_step: float) -> np.ndarray:
    # scikit-image's own expressions and dtypes: the powers are float64, the result float32
    window = np.array((window_height, window_width))
    low = np.array(min_size, dtype=np.float32)
    high = np.array(max_size, dtype=np.float32)
    power_min = max(math.log(low[0] / window[0], scale_step), math.log(low[1] / window[1], scale_step), 0)
    power_max = min(math.log(high[0] / window[0], scale_step), math.log(high[1] / window[1], scale_step))
    scales = np.power(scale_step, np.arange(power_min, power_max), dtype=np.float32)
    scales.setflags(write=False)
    return scales


def _round_half_away(value: np.float32) -> int:
    return int(value + _F32(0.5)) if value > 0 else int(value - _F32(0.5))


@functools.lru_cache(maxsize=1)
def default_cascade() -> LbpCascade:
    """The frontal-face cascade that ships inside scikit-image (parsed once)."""
    from skimage import data

    return LbpCascade.from_xml(data.lbp_frontal_face_cascade_filename())


# ---------------------------------------------------------------------------------------------------------
# numba kernels. No fastmath: every float32 and float64 operation must happen as written, in this order.


def _kernel(**options):
    """:func:`exposure_cli._numba.kernel` for the face detector's kernels."""
    return kernel("the face detector", **options)


@_kernel()
def _padded_integral(image):
    """float32 integral image with a zero first row and column: ``out[i + 1, j + 1] = Σ image[:i+1, :j+1]``."""
    h, w = image.shape
    out = np.zeros((h + 1, w + 1), np.float32)
    down = np.zeros(w, np.float64)  # running sums down each column: numpy's cumsum(axis=0)
    for i in range(h):
        along = 0.0  # then along the row: cumsum(axis=1)
        for j in range(w):
            down[j] = down[j] + image[i, j]
            along = along + down[j]
            out[i + 1, j + 1] = np.float32(along)
    return out


@_kernel()
def _lbp_code(sat, q0, dr, dc):
    """MB-LBP code of the feature whose 4×4 grid of integral-image corners starts at ``sat[q0]``, rows
    ``dr`` and columns ``dc`` apart (unsigned indices: numba emits no negative-index wraparound)."""
    q1 = q0 + dr
    q2 = q1 + dr
    q3 = q2 + dr
    a0 = sat[q0]
    a1 = sat[q0 + dc]
    a2 = sat[q0 + dc + dc]
    a3 = sat[q0 + dc + dc + dc]
    b0 = sat[q1]
    b1 = sat[q1 + dc]
    b2 = sat[q1 + dc + dc]
    b3 = sat[q1 + dc + dc + dc]
    c0 = sat[q2]
    c1 = sat[q2 + dc]
    c2 = sat[q2 + dc + dc]
    c3 = sat[q2 + dc + dc + dc]
    d0 = sat[q3]
    d1 = sat[q3 + dc]
    d2 = sat[q3 + dc + dc]
    d3 = sat[q3 + dc + dc + dc]
    centre = ((c2 + b1) - b2) - c1
    # neighbours clockwise from the top left, bits 7 … 0; no branches: the comparisons are
    # data-dependent and would be mispredicted half the time
    return ((np.int32(((b1 + a0) - a1) - b0 >= centre) << 7)
            | (np.int32(((b2 + a1) - a2) - b1 >= centre) << 6)
            | (np.int32(((b3 + a2) - a3) - b2 >= centre) << 5)
            | (np.int32(((c3 + b2) - b3) - c2 >= centre) << 4)
            | (np.int32(((d3 + c2) - c3) - d2 >= centre) << 3)
            | (np.int32(((d2 + c1) - c2) - d1 >= centre) << 2)
            | (np.int32(((d1 + c0) - c1) - d0 >= centre) << 1)
            | np.int32(((c1 + b0) - b1) - c0 >= centre))


@_kernel()
def _leaf(leaves, luts, k, code):
    """The value stump ``k`` adds for this code: indexed by the LUT bit, not branched on it."""
    bit = (luts[k, np.uint64(code >> 5)] >> np.uint32(code & 31)) & np.uint32(1)
    return leaves[k, np.uint64(bit)]


@_kernel()
def _passes(sat, base, stage_end, stage_limit, geometry, leaves, luts):
    """Whether the window whose top-left corner is ``sat[base]`` passes every stage."""
    k = np.uint64(0)
    for stage in range(stage_limit.size):
        points = np.float32(0.0)
        end = stage_end[stage]
        while k < end:
            points += _leaf(leaves, luts, k, _lbp_code(sat, base + geometry[k, 0], geometry[k, 1], geometry[k, 2]))
            k += np.uint64(1)
        if points < stage_limit[stage]:
            return False
    return True


@_kernel(error_model="numpy")  # C division semantics, no zero checks
def _group(found, n, threshold, min_neighbors):
    """scikit-image's greedy grouping of the ``n`` windows in ``found`` (rows r, c, height, width)."""
    sums = np.zeros((max(n, 1), 4), np.int64)  # per cluster: Σr, Σc, Σheight, Σwidth
    counts = np.zeros(max(n, 1), np.int64)
    clusters = 0
    for i in range(n):
        r, c, h, w = found[i, 0], found[i, 1], found[i, 2], found[i, 3]
        best = -1
        best_score = threshold
        if i > 0:  # the first window always starts a cluster
            area = np.float32(h * w)
            for j in range(clusters):
                m = counts[j]
                mr, mc, mh, mw = sums[j, 0] // m, sums[j, 1] // m, sums[j, 2] // m, sums[j, 3] // m
                mean_area = np.float32(mh * mw)
                smaller = area if mean_area > area else mean_area
                across = max(0, min(c + w, mc + mw) - max(c, mc))
                down = max(0, min(r + h, mr + mh) - max(r, mr))
                score = np.float32(np.float32(across * down) / smaller)
                if score > best_score:
                    best = j
                    best_score = score
        if best < 0:
            best = clusters
            clusters += 1
        sums[best, 0] += r
        sums[best, 1] += c
        sums[best, 2] += h
        sums[best, 3] += w
        counts[best] += 1
    kept = 0
    for j in range(clusters):
        if counts[j] >= min_neighbors:
            kept += 1
    out = np.empty((kept, 4), np.int64)
    kept = 0
    for j in range(clusters):
        m = counts[j]
        if m >= min_neighbors:
            for k in range(4):
                out[kept, k] = sums[j, k] // m
            kept += 1
    return out


@_kernel()
def _detect(image, scales, step_ratio, window_height, window_width, stage_end, stage_limit, stump_feature,
            leaves, luts, features, threshold, min_neighbors):
    height, width = image.shape
    sat = _padded_integral(image).ravel()
    stride = width + 1
    n_stumps = stump_feature.size
    geometry = np.empty((n_stumps, 3), np.uint64)  # per stump at this scale: offset, row step, column step
    found = np.empty((64, 4), np.int64)
    n = 0
    for s in range(scales.size):
        scale = scales[s]
        step_f = scale * step_ratio  # float32, then scikit-image's round half away from zero
        step = np.int64(step_f + np.float32(0.5)) if step_f > 0 else np.int64(step_f - np.float32(0.5))
        win_h = np.int64(np.float32(window_height) * scale)
        win_w = np.int64(np.float32(window_width) * scale)
        max_row = height - win_h
        max_col = width - win_w
        if max_row <= 0 or max_col <= 0:  # windows start strictly below max_row and max_col
            continue
        for k in range(n_stumps):
            f = stump_feature[k]
            r = np.int64(np.float32(features[f, 0]) * scale)
            c = np.int64(np.float32(features[f, 1]) * scale)
            h = np.int64(np.float32(features[f, 2]) * scale)
            w = np.int64(np.float32(features[f, 3]) * scale)
            # a feature past the window's last row or column would read outside the integral image (a
            # trained cascade's features lie inside its window; scikit-image does not check)
            if r < 0 or c < 0 or h < 0 or w < 0 or r + 3 * h > win_h + 1 or c + 3 * w > win_w + 1:
                raise ValueError("a cascade feature lies outside its window")
            geometry[k, 0] = r * stride + c
            geometry[k, 1] = h * stride
            geometry[k, 2] = w
        for row in range(0, max_row, step):
            for col in range(0, max_col, step):
                if _passes(sat, np.uint64(row * stride + col), stage_end, stage_limit, geometry, leaves, luts):
                    if n == found.shape[0]:
                        grown = np.empty((2 * n, 4), np.int64)
                        for i in range(n):  # a loop: numba compiles a slice assignment seconds slower
                            for q in range(4):
                                grown[i, q] = found[i, q]
                        found = grown
                    found[n, 0] = row
                    found[n, 1] = col
                    found[n, 2] = win_h
                    found[n, 3] = win_w
                    n += 1
    return _group(found, n, threshold, min_neighbors)
