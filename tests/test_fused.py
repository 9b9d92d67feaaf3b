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

from exposure_cli import color, fused, stats  # noqa: E402
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
        got = fused.fine_joint_histogram(r, code if code is not None else np.zeros((0, 0), np.uint8),
                                         1 << bits, stats.FINE_BINS)
        assert np.array_equal(got, reference_joint(r, code, 1 << bits))
        assert np.array_equal(stats._joint_histogram(r, code, 1 << bits), got)


def test_a_region_code_beyond_its_names_is_refused_as_before():
    r = np.zeros((4, 4), np.float32)
    code = np.full((4, 4), 5, np.uint8)  # bit 2 set, but only two regions named
    assert fused.fine_joint_histogram(r, code, 4, stats.FINE_BINS).shape == (0, stats.FINE_BINS)
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
