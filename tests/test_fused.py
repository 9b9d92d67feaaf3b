"""The numba kernels of ``exposure_cli.fused`` return the bits of the numpy code they replace.

Every kernel is compared with its numpy reference on random images and on the values where a slip would
show: NaN and ±inf, ±0, exact histogram bin edges, clipped channels at the clip level and around it,
values beyond [-1, 1], single pixels. The scan's outputs do not change with the kernels, so a report
written with them equals one written with numpy (checked last, on real decoded JPEGs).
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from exposure_cli import color, fused, regions, stats  # noqa: E402
from exposure_cli.analyzers import baseline  # noqa: E402
from exposure_cli.correction import EVCalibration, SampleLevels, ev_from_samples  # noqa: E402


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_numba_fuses_no_multiply_add_here():
    """The kernels' claim of equal bits rests on numba rounding ``a·b + c`` twice, as numpy does."""

    @numba.njit
    def multiply_add(a, b, c):
        out = np.empty_like(a)
        for k in range(a.size):
            out[k] = a[k] * b[k] + c[k]
        return out

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a, b, c = (rng.standard_normal(200_000).astype(dtype) for _ in range(3))
        assert same_bits(multiply_add(a, b, c), a * b + c)


def edge_images(rng) -> list[np.ndarray]:
    images = [rng.random((97, 131, 3), dtype=np.float32), np.zeros((1, 1, 3), np.float32),
              np.ones((3, 2, 3), np.float32), np.full((8, 8, 3), 0.02, np.float32)]
    x = rng.random((60, 70, 3), dtype=np.float32)
    x[::7] = 1.0
    x[::5, ::3] = 0.0
    x[::11, :, 2] = baseline.CLIP_LEVEL  # exactly at the clip level (as float32)
    x[::13, :, 1] = np.nextafter(np.float32(baseline.CLIP_LEVEL), np.float32(0))  # just under it
    x[1::9] = np.float32(baseline.SHADOW)
    x[2::9] = np.float32(baseline.HIGHLIGHT)
    x[3::9, :, 0] = -0.0
    images.append(x)
    images.append((rng.standard_normal((40, 50, 3)) * 2).astype(np.float32))  # far outside [0, 1]
    y = rng.random((30, 40, 3), dtype=np.float32)
    y[3, 4, 1], y[5, 5], y[6, 6, 0], y[7, 7, 2] = np.nan, np.inf, -np.inf, np.nan
    images.append(y)
    return images


def test_grey_equals_numpy_bit_for_bit():
    rng = np.random.default_rng(1)
    for image in edge_images(rng):
        assert same_bits(color.grey(image), color.grey_numpy(image))
    # strided, 2-D and float64 inputs take numpy's path and keep its result
    big = rng.random((20, 30, 3))
    assert same_bits(color.grey(big[::2, ::3]), color.grey_numpy(big[::2, ::3]))
    assert same_bits(color.grey(big.astype(np.float32)), color.grey_numpy(big))


@pytest.mark.parametrize("mean_level", [0.02, 0.3, 0.45, 0.6, 0.97])
def test_baseline_map_equals_numpy_bit_for_bit(mean_level):
    rng = np.random.default_rng(int(mean_level * 100))
    for image in edge_images(rng):
        # shift the image so that the global term takes each of its branches (too dark, fine, too light)
        shifted = np.asarray(image * np.float32(mean_level / 0.5), np.float32)
        fast = baseline.baseline_residual(shifted)
        assert same_bits(fast, baseline.baseline_residual_numpy(shifted))
        g = color.grey_numpy(shifted)
        assert same_bits(baseline.baseline_residual(shifted, g), baseline.baseline_residual_numpy(shifted, g))


def test_baseline_map_with_a_float64_grey_takes_numpys_path():
    rng = np.random.default_rng(5)
    image = rng.random((20, 30, 3), dtype=np.float32)
    g64 = color.grey_numpy(image).astype(np.float64)
    assert same_bits(baseline.baseline_residual(image, g64), baseline.baseline_residual_numpy(image, g64))


def fused_joint(r: np.ndarray, code: np.ndarray | None, n_codes: int) -> np.ndarray:
    """The kernel on a code at the map's size (identity maps), or none; NaN-free maps only."""
    h, w = r.shape
    joint, nans = fused.fine_joint_histogram(r, np.zeros((0, 0), np.uint8) if code is None else code,
                                             np.arange(h), np.arange(w), n_codes, stats.FINE_BINS)
    assert nans == 0
    return joint


def reference_joint(r: np.ndarray, code: np.ndarray | None, n_codes: int) -> np.ndarray:
    idx = stats.fine_bin_index(r)
    index = idx if code is None else code.astype(np.int32) * stats.FINE_BINS + idx
    return np.bincount(index.ravel(), minlength=stats.FINE_BINS * n_codes).reshape(n_codes, stats.FINE_BINS)


def test_fine_joint_histogram_equals_bincount_of_fine_bins():
    rng = np.random.default_rng(2)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        r = rng.normal(0, 0.5, (h, w)).astype(np.float32)
        # values on every fine-bin edge, ±0, ±inf and beyond ±1
        grid = (rng.integers(-1000, 1001, (h, w)) / 1000).astype(np.float32)
        r = np.where(rng.random((h, w)) < 0.4, grid, r).astype(np.float32)
        for value, share in ((0.0, 0.05), (-0.0, 0.05), (np.inf, 0.02), (-np.inf, 0.02), (1.5, 0.02), (-3.0, 0.02)):
            r[rng.random((h, w)) < share] = value
        bits = trial % 5
        code = rng.integers(0, 1 << bits, (h, w)).astype(np.uint8) if bits else None
        got = fused_joint(r, code, 1 << bits)
        assert np.array_equal(got, reference_joint(r, code, 1 << bits))
        assert np.array_equal(stats._joint_histogram(r, code, 1 << bits), got)


def test_a_region_code_beyond_its_names_is_refused_as_before():
    r = np.zeros((4, 4), np.float32)
    code = np.full((4, 4), 5, np.uint8)  # bit 2 set, but only two regions named
    assert fused.fine_joint_histogram(r, code, np.arange(4), np.arange(4), 4, stats.FINE_BINS)[0].shape == (0, stats.FINE_BINS)
    with pytest.raises(ValueError):
        stats._joint_histogram(r, code, 4)


def test_sample_levels_give_ev_from_samples_of_each_region():
    rng = np.random.default_rng(4)
    head = EVCalibration(1.1, -0.2, (("clipped", 0.3), ("mean_r", -0.5)))
    for trial in range(80):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        g = (rng.random((h, w), dtype=np.float32) ** rng.uniform(0.3, 3)).astype(np.float32)
        if trial % 7 == 0:
            g[:] = 0.0  # nothing measured: every pixel is used
        r = rng.normal(0, 0.3, (h, w)).astype(np.float32)
        levels = SampleLevels(g, r)
        calibration = (EVCalibration(), EVCalibration(0.96, -0.28), head)[trial % 3]
        for mask in (None, rng.random((h, w)) < 0.3, rng.random((h, w)) < 0.01, np.zeros((h, w), bool)):
            got = levels.ev(mask, calibration)
            want = (ev_from_samples(g.ravel(), r.ravel(), calibration) if mask is None
                    else ev_from_samples(g[mask], r[mask], calibration))
            assert got == want or (np.isnan(got) and np.isnan(want))


def test_column_means_equal_numpys_mean_over_rows():
    rng = np.random.default_rng(3)
    cases = [rng.random((n, 3), dtype=np.float32) * scale for n, scale in ((1, 1.0), (2, 100.0), (9408, 100.0),
                                                                           (40_000, 1.0), (777, 1e6))]
    cases.append((rng.standard_normal((5000, 3)) * 50).astype(np.float32))
    lab = cv2_lab(rng.random((84, 112, 3), dtype=np.float32))
    cases.append(lab.reshape(-1, 3))
    odd = rng.random((300, 3), dtype=np.float32)
    odd[5, 0], odd[7, 1], odd[9, 2], odd[11, 1] = np.nan, np.inf, -np.inf, -0.0
    cases.append(odd)
    cases.append(rng.random((1000, 5), dtype=np.float32))  # any number of columns
    for x in cases:
        assert same_bits(fused.column_means(x), x.mean(axis=0)), x.shape


def cv2_lab(rgb: np.ndarray) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)


def test_complex_exp_equals_numpys_exp_of_a_complex64():
    rng = np.random.default_rng(4)
    special_real = [0.0, -0.0, 1e-30, -1e-30, 1e-45, -79.99, 79.99, 1.0]
    special_imag = [0.0, -0.0, np.pi, -np.pi, 1e-40, -1e-40, 1e-30, 2.0]
    real = np.concatenate([rng.standard_normal(60_000) * 3, rng.uniform(-79.9, 79.9, 20_392),
                           special_real]).astype(np.float32)
    imag = np.concatenate([rng.uniform(-np.pi, np.pi, 60_000), rng.uniform(-50, 50, 20_392),
                           special_imag]).astype(np.float32)
    real, imag = real.reshape(400, 201), imag.reshape(400, 201)
    got = fused.complex_exp(real, imag)
    assert got.dtype == np.complex64
    assert same_bits(got, np.exp(real + 1j * imag))


def test_exp_of_complex_leaves_large_and_odd_arguments_to_numpy():
    """Past the real parts where C99 cexpf scales against overflow, and for NaN or ±inf, the numba kernel is
    not the same function: the caller gives numpy's answer there, and the kernel's everywhere else."""
    real = np.array([[0.5, 1.5, -0.25], [1.0, 2.0, 3.0]], np.float32)
    imag = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    assert same_bits(regions._exp_of_complex(real, imag), fused.complex_exp(real, imag))
    odd_cases = []
    for value in (85.0, -85.0, np.nan, np.inf):
        odd_real = real.copy()
        odd_real[0, 1] = value
        odd_cases.append((odd_real, imag))
    for value in (np.nan, np.inf):
        odd_imag = imag.copy()
        odd_imag[1, 1] = value
        odd_cases.append((real, odd_imag))
    with np.errstate(all="ignore"):
        for r, i in odd_cases:
            assert same_bits(regions._exp_of_complex(r, i), np.exp(r + 1j * i))


def test_saliency_maps_and_region_codes_are_the_same_with_and_without_the_kernels(monkeypatch):
    pytest.importorskip("cv2")
    skimage_data = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(5)
    images = [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea(), skimage_data.rocket()]
    images = [np.asarray(i, np.float32) / 255.0 for i in images] + [rng.random((90, 120, 3), dtype=np.float32),
                                                                    np.full((40, 60, 3), 0.5, np.float32)]

    def outputs():
        out = []
        for image in images:
            small, g = regions.region_inputs(image)
            code, names = regions.region_code(image)
            out.append((regions.spectral_residual_saliency(g).tobytes(),
                        regions.colour_contrast_saliency(small).tobytes(),
                        None if code is None else code.tobytes(), tuple(names)))
        return out

    assert regions.fused_kernel("complex_exp") is not None  # numba is loaded (imported above)
    fast = outputs()
    monkeypatch.setattr(regions, "fused_kernel", lambda name: None)
    assert fast == outputs()


def test_scan_rows_are_the_same_with_and_without_the_kernels(tmp_path, monkeypatch):
    """A baseline scan of real JPEGs, with regions: every statistic equal with the numpy paths."""
    cv2 = pytest.importorskip("cv2")
    import pyarrow.parquet as pq
    import skimage.data

    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.pipeline import scan

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate((skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea())):
        big = cv2.resize(image, (1200, 900), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(photos / f"p{i}.jpg"), np.ascontiguousarray(big[..., ::-1]))

    def rows(out):
        scan([photos], analyzer=create_analyzer("baseline", working_long_side=320), out=out, regions="all")
        table = pq.read_table(next(out.glob("*.parquet"))).to_pylist()
        drop = {"scan_id", "scanned_at", "duration_ms", "mtime", "ctime"}
        return sorted(({k: v for k, v in row.items() if k not in drop and "time" not in k} for row in table),
                      key=lambda row: row["path"])

    with_kernels = rows(tmp_path / "fast")
    monkeypatch.setattr(color, "_fused_grey", lambda: None)
    monkeypatch.setattr(baseline, "_fused_map", lambda: None)
    monkeypatch.setattr(stats, "_fused_histogram", lambda: None)
    monkeypatch.setattr(regions, "fused_kernel", lambda name: None)
    with_numpy = rows(tmp_path / "numpy")
    assert len(with_kernels) == 3 and all(row["status"] == "ok" for row in with_kernels)
    assert with_kernels == with_numpy


def test_without_numba_every_caller_takes_its_numpy_path():
    """An installation without the ``fast`` extra: no kernel, the same numbers from numpy."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        sys.modules["numba"] = None  # import numba -> ImportError
        import numpy as np
        from exposure_cli._kernels import fused_kernel
        from exposure_cli import color, stats
        from exposure_cli.analyzers import baseline
        assert fused_kernel("grey_image") is None
        image = np.random.default_rng(0).random((30, 40, 3), dtype=np.float32)
        assert color.grey(image).tobytes() == color.grey_numpy(image).tobytes()
        assert baseline.baseline_residual(image).tobytes() == baseline.baseline_residual_numpy(image).tobytes()
        row = stats.image_stats(baseline.baseline_residual(image), None, stats.Thresholds(), grey=color.grey(image))
        print(round(row["mean_residual"], 6))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with_numba = stats.image_stats(baseline.baseline_residual(
        np.random.default_rng(0).random((30, 40, 3), dtype=np.float32)), None, stats.Thresholds())
    assert float(done.stdout.strip()) == round(with_numba["mean_residual"], 6)


def test_fine_joint_histogram_on_long_rows():
    # one row at a time, counted four at a time: rows of every remainder, with runs of one value
    # (neighbours in the same bin)
    rng = np.random.default_rng(5)
    for n in (2047, 2048, 2049, 6146, 10243, 40_001):
        r = rng.uniform(-1.2, 1.2, n).astype(np.float32)
        r[: n // 3] = np.float32(0.25)
        r[n // 2 : n // 2 + 7] = -0.0
        r = np.ascontiguousarray(r.reshape(1, n))
        for bits in (0, 1, 3):
            code = rng.integers(0, 1 << bits, r.shape).astype(np.uint8) if bits else None
            got = fused_joint(r, code, 1 << bits)
            assert got.dtype == np.int64 and got.sum() == n
            assert np.array_equal(got, reference_joint(r, code, 1 << bits))


def test_area_resize_equals_opencvs_area_resampling():
    import cv2

    from exposure_cli import regions

    rng = np.random.default_rng(6)
    sizes = [((750, 1000), (112, 84)), ((375, 500), (112, 84)), ((333, 777), (112, 48)), ((97, 300), (112, 36)),
             ((113, 112), (111, 112)), ((300, 97), (36, 112)), ((112, 450), (112, 28)), ((5, 7), (3, 2)),
             ((640, 480), (84, 112)), ((1, 9), (2, 1))]
    for (h, w), (out_w, out_h) in sizes:
        for image in (rng.random((h, w, 3), dtype=np.float32),
                      np.where(rng.random((h, w, 3)) < 0.3, 0.0, 1.0).astype(np.float32),
                      (rng.integers(0, 256, (h, w, 3)) * np.float32(1 / 255)).astype(np.float32)):
            want = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
            x, y = regions.area_tables(w, out_w), regions.area_tables(h, out_h)
            if x[3] and y[3]:
                continue  # OpenCV's whole-factor fast path: the kernel is not used there
            got = fused.area_resize_rgb(image, out_h, out_w, x[0], x[1], x[2], *regions._area_rows(h, out_h))
            assert got.shape == want.shape
            assert np.array_equal(got.view(np.int32), want.view(np.int32)), ((h, w), (out_w, out_h))
            # and the regions' own call, whichever path it takes
            assert np.array_equal(regions._area_resize(image, (out_w, out_h)).view(np.int32), want.view(np.int32))


def test_area_resize_leaves_whole_factors_and_upscales_to_opencv():
    from exposure_cli import regions

    assert regions.area_tables(1000, 125)[3] and not regions.area_tables(1000, 112)[3]
    assert regions.area_tables(100, 200) is None
    import cv2

    image = np.random.default_rng(7).random((80, 120, 3), dtype=np.float32)
    for size in ((60, 40), (30, 20), (240, 160), (120, 30)):
        assert np.array_equal(regions._area_resize(image, size), cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def test_a_small_region_code_counts_as_its_nearest_upsampling():
    import cv2

    rng = np.random.default_rng(8)
    for (h, w), (ch, cw) in (((750, 1000), (84, 112)), ((97, 131), (84, 112)), ((40, 30), (40, 30)),
                             ((84, 112), (84, 112)), ((1, 500), (1, 56)), ((333, 250), (112, 84))):
        r = rng.uniform(-1.1, 1.1, (h, w)).astype(np.float32)
        bits = 3
        small = rng.integers(0, 1 << bits, (ch, cw)).astype(np.uint8)
        full = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        want = reference_joint(r, full, 1 << bits)
        assert np.array_equal(stats._joint_histogram(r, small, 1 << bits), want)
        assert np.array_equal(stats._joint_histogram(r, full, 1 << bits), want)


def test_nearest_index_is_opencvs_nearest_neighbour():
    import cv2

    from exposure_cli.imageops import nearest_index

    rng = np.random.default_rng(9)
    for _ in range(400):
        sh, sw = (int(v) for v in rng.integers(1, 130, 2))
        dh, dw = (int(v) for v in rng.integers(1, 1300, 2))
        small = rng.integers(0, 255, (sh, sw)).astype(np.uint8)
        want = cv2.resize(small, (dw, dh), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(small[nearest_index(sh, dh)][:, nearest_index(sw, dw)], want)


def test_the_histogram_refuses_nan_with_its_count_on_both_paths():
    r = np.zeros((30, 40), np.float32)
    r[3, 5] = r[29, 39] = np.nan
    small = np.ones((3, 4), np.uint8)
    for code in (None, small):
        with pytest.raises(ValueError, match=r"contains NaN \(2 of 1200 values\)"):
            stats._joint_histogram(r, code, 2)
    joint, nans = fused.fine_joint_histogram(r, small, np.arange(30) // 10, np.arange(40) // 10, 2, stats.FINE_BINS)
    assert nans >= 1


def test_image_stats_read_a_small_code_as_its_upsampling_on_both_paths(monkeypatch):
    import cv2

    rng = np.random.default_rng(10)
    h, w = 300, 400
    r = np.clip(rng.normal(0, 0.4, (h, w)), -1, 1).astype(np.float32)
    g = rng.random((h, w), dtype=np.float32)
    small = np.zeros((84, 112), np.uint8)
    small[10:40, 20:60] |= 1  # a region
    small[5:7, 100:103] |= 2  # a tiny one: fewer than 64 subsampled pixels, read from the full mask
    full = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    for thresholds in (stats.Thresholds(), stats.Thresholds(over=0.1234)):  # the second reads full masks
        want = stats.image_stats(r, None, thresholds, grey=g, region_code=(full, ["face", "sky"]))
        for fused_on in (True, False):
            if not fused_on:
                monkeypatch.setattr(stats, "_fused_histogram", lambda: None)
            got = stats.image_stats(r, None, thresholds, grey=g, region_code=(small, ["face", "sky"]))
            assert got.keys() == want.keys()
            for key, value in want.items():
                assert np.array_equal(np.asarray(got[key]), np.asarray(value), equal_nan=True), key
        monkeypatch.undo()
