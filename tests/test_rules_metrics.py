"""The metric catalogue rules may use (exposure_cli.rules.metrics), checked against names, words, units,
regions and report columns written out by hand.

``METRICS`` is built once at import; the test calls ``_build_catalogue()`` itself so that a change to how
the catalogue is built fails here (and mutmut, which forks after the import, can see it).
"""

from __future__ import annotations

import numpy as np
import pytest

from exposure_cli import stats
from exposure_cli.rules.metrics import METRICS, Metric, MetricFrame, _build_catalogue
from exposure_cli.stats import Thresholds


def test_the_catalogue_has_every_region_metric_and_the_image_and_exif_facts():
    catalogue = _build_catalogue()
    assert catalogue == METRICS
    assert len(catalogue) == len(stats.REGIONS) * len(stats.REGION_METRICS) + 8
    assert list(catalogue)[:2] == ["global.area_pct", "global.over_pct"]
    assert list(catalogue)[-8:] == ["image.width", "image.height", "image.megapixels", "image.aspect", "exif.iso",
                                    "exif.exposure_time", "exif.f_number", "exif.exposure_bias"]
    assert catalogue["image.width"] == Metric("image.width", "image width", "px", None, "width")
    assert catalogue["image.height"] == Metric("image.height", "image height", "px", None, "height")
    assert catalogue["image.megapixels"] == Metric("image.megapixels", "image size", "MP", None, None)
    assert catalogue["image.aspect"] == Metric("image.aspect", "image aspect ratio (width / height)", "", None, None)
    assert catalogue["exif.iso"] == Metric("exif.iso", "ISO", "", None, "exif_iso")
    assert catalogue["exif.exposure_time"] == Metric("exif.exposure_time", "exposure time", "s", None,
                                                     "exif_exposure_time")
    assert catalogue["exif.f_number"] == Metric("exif.f_number", "f-number", "", None, "exif_f_number")
    assert catalogue["exif.exposure_bias"] == Metric("exif.exposure_bias", "exposure compensation", "EV", None,
                                                     "exif_exposure_bias")


def test_region_metrics_read_their_column_with_words_for_reasons():
    catalogue = _build_catalogue()
    assert catalogue["global.area_pct"] == Metric("global.area_pct", "global area share of the image (always 100)",
                                                  "%", "global", "area_pct")
    assert catalogue["face.area_pct"] == Metric("face.area_pct", "face area share of the image", "%", "face",
                                                "face_area_pct")
    assert catalogue["global.over_pct"] == Metric("global.over_pct", "global over-exposed area", "%", "global",
                                                  "over_pct")
    assert catalogue["sky.p95_residual"] == Metric(
        "sky.p95_residual", "sky 95th percentile of the residual (most under-exposed 5 %)", "r", "sky",
        "sky_p95_residual")
    assert catalogue["person.mean_abs_residual"] == Metric(
        "person.mean_abs_residual", "person mean exposure error (either way)", "r+", "person",
        "person_mean_abs_residual")
    for region in stats.REGIONS:
        for metric in stats.REGION_METRICS:
            entry = catalogue[f"{region}.{metric}"]
            assert entry.name == f"{region}.{metric}" and entry.region == region
            assert entry.column == stats.column(region, metric) and entry.description.startswith(region + " ")


# ------------------------------------------------------------------------------------ MetricFrame


def _matrix(*over_shares: float) -> np.ndarray:
    """Histogram rows of 1000 pixels with the given share at r = −0.5 (over) and the rest at r = 0."""
    out = np.zeros((len(over_shares), stats.HIST_BINS))
    for i, share in enumerate(over_shares):
        out[i, stats.HIST_BINS // 4] = 1000 * share
        out[i, stats.HIST_BINS // 2] = 1000 * (1 - share)
    return out


def test_one_row_of_a_frame_keeps_its_histograms_and_thresholds():
    strict = Thresholds(over=0.4)
    frame = MetricFrame({"area_pct": [100.0] * 3, "status": ["ok"] * 3}, 3, Thresholds(),
                        {"global": _matrix(0.1, 0.3, 0.5)}).with_thresholds(strict)
    assert frame.metric("global.over_pct").tolist() == pytest.approx([10, 30, 50])
    one = frame.row(1)
    assert one.size == 1 and one.thresholds == strict and one.scan_thresholds == Thresholds()
    assert one.metric("global.over_pct").tolist() == pytest.approx([30])
    assert one.hist("global").shape == (1, stats.HIST_BINS)
    assert frame.row(2).metric("global.over_pct").tolist() == pytest.approx([50])


def test_rows_of_dict_pandas_and_arrow_frames_agree():
    import pandas as pd
    import pyarrow as pa

    data = {"path": ["a", "b"], "width": [10.0, 30.0], "height": [5.0, 10.0]}
    frames = [MetricFrame.from_rows([{k: v[i] for k, v in data.items()} for i in range(2)], Thresholds()),
              MetricFrame.from_dataframe(pd.DataFrame(data), Thresholds()),
              MetricFrame.from_arrow(pa.table(data), Thresholds())]
    for frame in frames:
        one = frame.row(1)
        assert one.metric("image.width").tolist() == [30.0] and one.metric("image.aspect").tolist() == [3.0]
        assert sorted(one.raw("path")) == ["b"] and one.size == 1
    assert list(frames[2]._columns) == ["path", "width", "height"]


def test_raw_and_has_column():
    frame = MetricFrame({"path": ["a", "b"]}, 2, Thresholds())
    assert frame.has_column("path") and not frame.has_column("width")
    assert frame.raw("path") == ["a", "b"] and frame.raw("width") == [None, None]


def test_arrow_histograms_of_any_column_type():
    import pyarrow as pa

    full = [1] * stats.HIST_BINS
    table = pa.table({"hist": pa.array([full, None, [1, 2]], type=pa.list_(pa.int64())),
                      "face_hist": pa.array([None, None, None], type=pa.null())})
    frame = MetricFrame.from_arrow(table, Thresholds())
    matrix = frame.hist("global")
    assert matrix.dtype == np.float64 and matrix.shape == (3, stats.HIST_BINS)
    assert matrix[0].tolist() == [1.0] * stats.HIST_BINS and not matrix[1:].any()  # missing or short: zeros
    assert frame.hist("face").tolist() == np.zeros((3, stats.HIST_BINS)).tolist()  # a column of nulls only
    assert frame.hist("sky").shape == (3, stats.HIST_BINS)  # no column at all


def test_arrow_histograms_when_every_row_is_full_and_as_large_lists():
    import pyarrow as pa

    rows = [list(range(stats.HIST_BINS)), [7] * stats.HIST_BINS]
    for typ in (pa.list_(pa.int64()), pa.large_list(pa.int64())):
        frame = MetricFrame.from_arrow(pa.table({"hist": pa.array(rows, type=typ)}), Thresholds())
        matrix = frame.hist("global")
        assert matrix.dtype == np.float64 and matrix.shape == (2, stats.HIST_BINS)
        assert matrix.tolist() == [[float(v) for v in row] for row in rows]
    mixed = pa.array([rows[0], None], type=pa.large_list(pa.int64()))
    matrix = MetricFrame.from_arrow(pa.table({"hist": mixed}), Thresholds()).hist("global")
    assert matrix[0].tolist() == [float(v) for v in rows[0]] and not matrix[1].any()


def test_histograms_from_row_lists_are_float_and_short_ones_are_zeros():
    full = list(range(stats.HIST_BINS))
    frame = MetricFrame.from_rows([{"hist": full}, {"hist": [3] * stats.HIST_BINS}], Thresholds())
    matrix = frame.hist("global")
    assert matrix.dtype == np.float64 and matrix.tolist() == [[float(v) for v in full], [3.0] * stats.HIST_BINS]
    short = MetricFrame.from_rows([{"hist": [1, 2]}, {"hist": [3, 4]}], Thresholds()).hist("global")
    assert short.shape == (2, stats.HIST_BINS) and not short.any()  # same-length short lists are not histograms
    mixed = MetricFrame.from_rows([{"hist": None}, {"hist": float("nan")}, {"hist": full}, {"hist": [1, 2]}],
                                  Thresholds()).hist("global")
    assert mixed.dtype == np.float64 and not mixed[:2].any() and not mixed[3].any()
    assert mixed[2].tolist() == [float(v) for v in full]  # rows after missing ones are still read


def test_errors_and_ok_of_every_photo():
    frame = MetricFrame({"status": ["ok", "error", "ok"], "error": [None, "boom", float("nan")]}, 3, Thresholds())
    assert frame.errors() == ["", "boom", ""] and frame.ok().tolist() == [True, False, True]
    bare = MetricFrame({"path": ["a", "b"]}, 2, Thresholds())
    assert bare.errors() == ["", ""] and bare.ok().tolist() == [True, True]


def test_presence_of_regions():
    frame = MetricFrame({"face_area_pct": [0.0, 12.5, None, float("nan"), 0.5]}, 5, Thresholds())
    present = frame.present("global")  # always there, even without an area column
    assert present.dtype == bool and present.tolist() == [True] * 5
    face = frame.present("face")
    assert face.dtype == bool and face.tolist() == [False, True, False, False, True]
    assert frame.present("sky").tolist() == [False] * 5  # no column: absent
