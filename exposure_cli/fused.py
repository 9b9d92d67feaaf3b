"""Per-pixel numpy passes fused into one numba loop each (the ``fast`` extra), equal bit for bit.

Each kernel here does the float32 / float64 operations of a numpy function elsewhere in the package, in the
same order, one pixel at a time, so it returns the same bits in one pass over the image instead of a dozen
(every full-size temporary costs a pass over memory and, when fresh, page faults). The numpy function stays
the reference and the path without numba; ``tests/test_fused.py`` compares the two on random and edge
values (and ``tests/test_fused.py`` checks that numba fuses no multiply-add on this machine). Scalars that numpy would cast to the array's float32 (NEP 50: a Python float next to a float32
array is "weak") are cast to float32 here before the loop.

Importing this module imports numba (``ImportError`` without it); nothing compiles until a kernel's first
call (or it loads from numba's cache).
"""

from __future__ import annotations

import math

import numpy as np

from ._numba import kernel


@kernel("the grey image")
def grey_image(rgb, w_red, w_green, w_blue):
    """:func:`exposure_cli.color.grey` of a C-contiguous float32 H×W×3 image: ``(R·w_red + G·w_green) +
    B·w_blue`` in float32, as numpy evaluates the expression (no fused multiply-add)."""
    h, w, _ = rgb.shape
    n = h * w
    flat = rgb.reshape(n * 3)
    out = np.empty(n, np.float32)
    for k in range(n):
        out[k] = (flat[3 * k] * w_red + flat[3 * k + 1] * w_green) + flat[3 * k + 2] * w_blue
    return out.reshape(h, w)


@kernel("the baseline analyzer's map", error_model="numpy")
def baseline_residual_map(rgb, g, clip_level, clipped_top, highlight, highlight_span, shadow, global_term):
    """:func:`exposure_cli.analyzers.baseline.baseline_residual`'s per-pixel part for C-contiguous float32
    ``rgb`` (H×W×3) and ``g`` (H×W, its grey) and float32 scalars:
    ``clip(f64(g) + f64(under + global_term − over) − f64(g), −1, 1)`` as float32.

    Written with selects rather than branches so that LLVM vectorises the loop. Every select is numpy's
    choice for every value, NaN included (``np.maximum`` and ``np.clip`` propagate NaN)."""
    h, w = g.shape
    n = h * w
    flat_rgb = rgb.reshape(n * 3)
    flat_g = g.reshape(n)
    out = np.empty(n, np.float32)
    zero, one = np.float32(0.0), np.float32(1.0)
    for k in range(n):
        grey = flat_g[k]
        red, green, blue = flat_rgb[3 * k], flat_rgb[3 * k + 1], flat_rgb[3 * k + 2]
        brightest = _maximum(_maximum(red, green), blue)
        # np.maximum(g, clipped_top, out=top, where=brightest >= clip_level), top = g elsewhere
        top = _maximum(grey, clipped_top) if brightest >= clip_level else grey
        over = _clip((top - highlight) / highlight_span, zero, one)
        under = _clip((shadow - grey) / shadow, zero, one)
        shift = (under + global_term) - over
        observed = np.float64(grey)
        out[k] = np.float32(_clip((observed + np.float64(shift)) - observed, -1.0, 1.0))
    return out.reshape(h, w)


@kernel("the statistics' histogram", error_model="numpy")
def fine_joint_histogram(r, code, rows, cols, n_codes, bins):
    """:func:`exposure_cli.stats.fine_bin_index` of every value of the C-contiguous float32 H×W map `r`
    and one ``np.bincount`` of ``code · bins + index``: int64 ``(n_codes, bins)``, and the number of NaN
    values met (the counts are not valid then: a NaN has no bin).

    `code` is uint8, every value below `n_codes`, given at any size with its nearest-neighbour maps: the
    code of pixel ``(y, x)`` is ``code[rows[y], cols[x]]`` (``cv2.resize(code, (W, H), INTER_NEAREST)``
    with the maps of :func:`exposure_cli.imageops.nearest_index`; ``arange`` maps for a code at the map's
    size), so a region code found on a small copy is never upsampled. A ``(0, 0)`` `code`: every pixel in
    row 0. A code ``>= n_codes`` gives a ``(0, bins)`` array (the caller's numpy path then says what is
    wrong). `r` has fewer than 2³¹ values (the counts are int32 until the end).

    One image row at a time: its codes expanded from the small code's row (once per distinct source
    row), then its joint indices in one loop that LLVM vectorises (selects only: the clips, ``copysign``
    for the nudge — the same float32 operations as ``fine_bin_index``), then the counting into four
    interleaved histograms: neighbouring pixels often share a bin, and counting them into one would make
    each increment wait for the last."""
    h, w = r.shape
    has_code = code.size > 0
    if has_code:
        highest = np.uint8(0)
        for value in code.ravel():
            highest = max(highest, value)
        if np.int64(highest) >= n_codes:
            return np.zeros((0, bins), np.int64), 0
    half = np.float32(bins / 2.0)
    small = np.float32(1e-3)
    low, high = np.float32(-1.0), np.float32(1.0)
    last = np.int32(bins - 1)
    stride = np.int32(bins)
    counts = np.zeros((4, n_codes * bins), np.int32)
    index = np.empty(w, np.int32)
    row_code = np.zeros(w, np.int32)
    source_row = -1
    for y in range(h):
        if has_code and rows[y] != source_row:
            source_row = rows[y]
            if code.shape[1] == w:  # a code at the map's width: the map is the identity
                for x in range(w):
                    row_code[x] = np.int32(code[source_row, x]) * stride
            else:
                for x in range(w):
                    row_code[x] = np.int32(code[source_row, cols[x]]) * stride
        line = r[y]
        nans = 0
        for x in range(w):
            value = line[x]
            nans += value != value
            pos = low if value < low else value  # np.clip(r, -1, 1) of a value that is not NaN
            pos = high if pos > high else pos
            # np.copysign(1e-3, pos): the sign bit of pos, -0.0 included; then ``astype(int32)`` truncates
            b = np.int32(((pos * half) + np.float32(math.copysign(small, pos))) + half)
            index[x] = row_code[x] + (last if b > last else b)
        if nans:
            return np.zeros((0, bins), np.int64), nans
        quads = w // 4
        for i in range(quads):
            counts[0, index[4 * i]] += 1
            counts[1, index[4 * i + 1]] += 1
            counts[2, index[4 * i + 2]] += 1
            counts[3, index[4 * i + 3]] += 1
        for i in range(4 * quads, w):
            counts[0, index[i]] += 1
    out = np.empty((n_codes, bins), np.int64)
    for c in range(n_codes):
        for b in range(bins):
            k = c * bins + b
            out[c, b] = (np.int64(counts[0, k]) + np.int64(counts[1, k])) + (np.int64(counts[2, k]) + np.int64(counts[3, k]))
    return out, 0


@kernel("the regions' working copy", error_model="numpy")
def area_resize_rgb(src, out_h, out_w, x_first, x_count, x_alpha, y_source, y_target, y_alpha):
    """``cv2.resize(src, (out_w, out_h), interpolation=cv2.INTER_AREA)`` of a C-contiguous float32 H×W×3
    image, for a downscale by a factor that is not a whole number on both axes (OpenCV's general area
    resampling, not its whole-factor fast path), bit for bit.

    The tables come from :func:`exposure_cli.regions.area_tables`: output column ``d`` sums
    ``x_count[d]`` source columns from ``x_first[d]`` with the weights ``x_alpha[:, d]`` (in that order,
    starting from 0); output row ``y_target[j]`` sums ``y_alpha[j] ×`` those row sums of source row
    ``y_source[j]`` (its first one a product, not a sum). Same float32 operations in the same order as
    OpenCV, which does them one running sum per output column; here four output columns run side by side
    (their sums do not depend on each other), which is what makes it faster."""
    w_count = x_first.size
    out = np.empty((out_h, out_w, 3), np.float32)
    rowsum = np.empty((out_w, 3), np.float32)
    acc = np.zeros((out_w, 3), np.float32)
    longest = x_alpha.shape[0]
    zero = np.float32(0.0)
    previous = -1
    for j in range(y_source.size):
        target, beta = y_target[j], y_alpha[j]
        row = src[y_source[j]]
        d = 0
        while d + 4 <= w_count:
            a0 = zero; a1 = zero; a2 = zero; b0 = zero; b1 = zero; b2 = zero
            c0 = zero; c1 = zero; c2 = zero; e0 = zero; e1 = zero; e2 = zero
            s0, s1, s2, s3 = x_first[d], x_first[d + 1], x_first[d + 2], x_first[d + 3]
            n0, n1, n2, n3 = x_count[d], x_count[d + 1], x_count[d + 2], x_count[d + 3]
            for p in range(longest):
                if p < n0:
                    w = x_alpha[p, d]
                    a0 = a0 + row[s0 + p, 0] * w; a1 = a1 + row[s0 + p, 1] * w; a2 = a2 + row[s0 + p, 2] * w
                if p < n1:
                    w = x_alpha[p, d + 1]
                    b0 = b0 + row[s1 + p, 0] * w; b1 = b1 + row[s1 + p, 1] * w; b2 = b2 + row[s1 + p, 2] * w
                if p < n2:
                    w = x_alpha[p, d + 2]
                    c0 = c0 + row[s2 + p, 0] * w; c1 = c1 + row[s2 + p, 1] * w; c2 = c2 + row[s2 + p, 2] * w
                if p < n3:
                    w = x_alpha[p, d + 3]
                    e0 = e0 + row[s3 + p, 0] * w; e1 = e1 + row[s3 + p, 1] * w; e2 = e2 + row[s3 + p, 2] * w
            rowsum[d, 0], rowsum[d, 1], rowsum[d, 2] = a0, a1, a2
            rowsum[d + 1, 0], rowsum[d + 1, 1], rowsum[d + 1, 2] = b0, b1, b2
            rowsum[d + 2, 0], rowsum[d + 2, 1], rowsum[d + 2, 2] = c0, c1, c2
            rowsum[d + 3, 0], rowsum[d + 3, 1], rowsum[d + 3, 2] = e0, e1, e2
            d += 4
        while d < w_count:
            a0 = zero; a1 = zero; a2 = zero
            s0 = x_first[d]
            for p in range(x_count[d]):
                w = x_alpha[p, d]
                a0 = a0 + row[s0 + p, 0] * w; a1 = a1 + row[s0 + p, 1] * w; a2 = a2 + row[s0 + p, 2] * w
            rowsum[d, 0], rowsum[d, 1], rowsum[d, 2] = a0, a1, a2
            d += 1
        if target != previous:
            if previous >= 0:
                out[previous] = acc
            for d in range(out_w):
                for c in range(3):
                    acc[d, c] = beta * rowsum[d, c]
            previous = target
        else:
            for d in range(out_w):
                for c in range(3):
                    acc[d, c] = acc[d, c] + beta * rowsum[d, c]
    if previous >= 0:
        out[previous] = acc
    return out


@kernel("the saliency's mean colour")
def column_means(x):
    """``x.mean(axis=0)`` of a C-contiguous float32 N×C array (N ≥ 1): numpy sums a reduction over the
    leading axis one row at a time in float32, then divides by the count in float64 (the count is an
    ``intp``) and rounds to float32."""
    n, c = x.shape
    acc = np.zeros(c, np.float32)
    for i in range(n):
        for j in range(c):
            acc[j] += x[i, j]
    out = np.empty(c, np.float32)
    for j in range(c):
        out[j] = np.float32(np.float64(acc[j]) / np.float64(n))
    return out


@kernel("the spectral residual's exponential")
def complex_exp(real, imag):
    """``np.exp(real + 1j * imag)`` of two C-contiguous float32 arrays of one shape, as complex64.

    numpy builds ``real + 1j · imag`` in complex64 — real part ``real + (0·imag − 1·0)``, imaginary part
    ``0 + (0·0 + 1·imag)`` — and takes C99 ``cexpf``: ``expf(x)·cosf(y) + i·expf(x)·sinf(y)`` in float32
    for a finite ``x`` below the float's overflow scaling. Only for such arguments is this the same
    function: the caller keeps numpy for anything else (see ``regions.spectral_residual_saliency``)."""
    n = real.size
    flat_real = real.reshape(n)
    flat_imag = imag.reshape(n)
    out = np.empty(n, np.complex64)
    zero, one = np.float32(0.0), np.float32(1.0)
    for k in range(n):
        y = flat_imag[k]
        x = flat_real[k] + (zero * y - one * zero)
        y = zero + (zero * zero + one * y)
        e = math.exp(x)
        out[k] = complex(e * math.cos(y), e * math.sin(y))
    return out.reshape(real.shape)


@kernel("the fused kernels")
def _maximum(a, b):
    """``np.maximum`` of two values: ``a`` when ``a >= b`` or ``a`` is NaN, else ``b``."""
    return a if (a >= b or a != a) else b


@kernel("the fused kernels")
def _clip(x, low, high):
    """``np.clip`` of one value: ``min(max(x, low), high)`` as numpy takes them (NaN stays NaN; a value
    equal to a bound gives the bound)."""
    y = low if x <= low else x
    return high if y >= high else y


__all__ = ["area_resize_rgb", "baseline_residual_map", "column_means", "complex_exp", "fine_joint_histogram", "grey_image"]
