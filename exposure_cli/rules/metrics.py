"""The metric catalogue (names rules may use) and the column-wise view of report rows they are evaluated on.

Metric names are ``region.metric`` for every region in :data:`exposure_cli.stats.REGIONS` and metric in
:data:`exposure_cli.stats.REGION_METRICS` (``global.over_pct``, ``face.bad_pct``,
``subject.p95_residual`` …), plus whole-image facts (``image.width``, ``image.megapixels``) and EXIF
exposure facts (``exif.iso``, ``exif.exposure_time``, ``exif.f_number``, ``exif.exposure_bias``).

:class:`MetricFrame` holds one array per column for many photos. When a rule set asks for pixel thresholds
other than the scan's, the share metrics (``over_pct`` … ``severe_bad_pct``) are recomputed from each
region's histogram of r — the same arithmetic as :func:`exposure_cli.stats.shares_from_hist`, vectorised
over rows — so a fresh scan and ``exposure rescore`` agree exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .. import stats
from ..stats import HIST_BINS, REGION_METRICS, REGIONS, Thresholds, shares_from_hist_matrix
from .expr import format_number

#: Metrics answered from histograms when a rule set's thresholds differ from the scan's.
SHARE_METRICS = ("over_pct", "under_pct", "bad_pct", "severe_over_pct", "severe_under_pct", "severe_bad_pct")

_METRIC_WORDS = {
    "area_pct": ("area share of the image", "%"),
    "over_pct": ("over-exposed area", "%"),
    "under_pct": ("under-exposed area", "%"),
    "bad_pct": ("bad area", "%"),
    "severe_over_pct": ("severely over-exposed area", "%"),
    "severe_under_pct": ("severely under-exposed area", "%"),
    "severe_bad_pct": ("severe bad area", "%"),
    "mean_residual": ("mean exposure residual", "r"),
    "mean_abs_residual": ("mean exposure error (either way)", "r+"),
    "p05_residual": ("5th percentile of the residual (most over-exposed 5 %)", "r"),
    "p50_residual": ("median residual", "r"),
    "p95_residual": ("95th percentile of the residual (most under-exposed 5 %)", "r"),
    "ev_correction": ("stops of correction (positive: brighten by that many stops)", "EV"),
}


@dataclass(frozen=True)
class Metric:
    """One name rules may use.

    Attributes:
        name: ``region.metric`` / ``image.x`` / ``exif.x``.
        description: Words for reasons ("global over-exposed area").
        unit: ``%`` (percent of the region's pixels), ``r`` (signed residual: below 0 over, above 0
            under), ``r+`` (unsigned residual), or a plain unit ("px", "s", "EV", "").
        region: The region the metric belongs to, or ``None`` for image/EXIF facts.
        column: Report column it is read from (``None`` when derived).
    """

    name: str
    description: str
    unit: str
    region: str | None
    column: str | None


def _build_catalogue() -> dict[str, Metric]:
    catalogue: dict[str, Metric] = {}
    for region in REGIONS:
        for metric in REGION_METRICS:
            words, unit = _METRIC_WORDS[metric]
            if metric == "area_pct" and region == "global":
                words = "area share of the image (always 100)"
            catalogue[f"{region}.{metric}"] = Metric(
                f"{region}.{metric}", f"{region} {words}", unit, region, stats.column(region, metric)
            )
    facts = [
        ("image.width", "image width", "px", "width"),
        ("image.height", "image height", "px", "height"),
        ("image.megapixels", "image size", "MP", None),
        ("image.aspect", "image aspect ratio (width / height)", "", None),
        ("exif.iso", "ISO", "", "exif_iso"),
        ("exif.exposure_time", "exposure time", "s", "exif_exposure_time"),
        ("exif.f_number", "f-number", "", "exif_f_number"),
        ("exif.exposure_bias", "exposure compensation", "EV", "exif_exposure_bias"),
    ]
    for name, words, unit, column in facts:
        catalogue[name] = Metric(name, words, unit, None, column)
    return catalogue


#: Every metric name rules may use → its :class:`Metric`.
METRICS: dict[str, Metric] = _build_catalogue()


def metric_types() -> dict[str, str]:
    """Metric name → static type for the expression checker (all numbers)."""
    return {name: "num" for name in METRICS}


def format_value(value: float, unit: str) -> str:
    """A metric value as people read it: '23 %', '−0.12 (over)', '1/250 s', 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    value = float(value)
    if unit == "%":
        return f"{format_number(value)} %"
    if unit == "r":
        # never a bare sign in user-facing text: say which way
        if value < 0:
            return f"−{format_number(-value)} (over)"
        if value > 0:
            return f"{format_number(value)} (under)"
        return "0"
    if unit == "s" and 0 < value < 0.5:
        return f"1/{format_number(round(1 / value, 1))} s"
    if unit in ("px", "MP", "EV", "s"):
        return f"{format_number(value)} {unit}"
    return format_number(value)


def thresholds_equal(a: Thresholds, b: Thresholds) -> bool:
    return all(abs(getattr(a, k) - getattr(b, k)) < 1e-9 for k in ("over", "under", "severe"))


def _hist_matrix(values: Sequence[Any], size: int) -> np.ndarray:
    """Stack a column of histograms (lists/arrays, None for missing) into an N×HIST_BINS float matrix."""
    try:  # the common case: every row has a full histogram
        stacked = np.asarray(list(values), dtype=np.float64)
        if stacked.shape == (size, HIST_BINS):
            return stacked
    except (TypeError, ValueError):
        pass
    out = np.zeros((size, HIST_BINS), dtype=np.float64)
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        arr = np.asarray(value, dtype=np.float64).ravel()
        if arr.size == HIST_BINS:
            out[i] = arr
    return out


class MetricFrame:
    """Metric columns for N photos, as float64 arrays, with region presence and threshold re-answering.

    Args:
        columns: Report column name → values (array-like of length N; a pandas DataFrame works).
        size: N.
        scan_thresholds: Thresholds the share columns were computed with.
        hist_matrices: Optional region → N×HIST_BINS matrix, when the caller already has them stacked.
    """

    def __init__(
        self,
        columns: Mapping[str, Any],
        size: int,
        scan_thresholds: Thresholds,
        hist_matrices: Mapping[str, np.ndarray] | None = None,
        *,
        _shares: Mapping[str, np.ndarray] | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self._columns = columns
        self.size = int(size)
        self.scan_thresholds = scan_thresholds
        self.thresholds = thresholds or scan_thresholds
        self._hists: dict[str, np.ndarray] = dict(hist_matrices or {})
        self._cache: dict[str, np.ndarray] = {}
        self._shares = dict(_shares or {})  # "region.metric" → recomputed share array
        self._recompute = False  # True when thresholds differ from the scan's
        self._derived: dict[Thresholds, MetricFrame] = {}

    # -- construction
    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]], scan_thresholds: Thresholds) -> "MetricFrame":
        """A frame over a few row dicts (the scan scores one photo at a time through this)."""
        keys: set[str] = set()
        for row in rows:
            keys.update(row.keys())
        columns = {key: [row.get(key) for row in rows] for key in keys}
        return cls(columns, len(rows), scan_thresholds)

    @classmethod
    def from_dataframe(cls, frame: Any, scan_thresholds: Thresholds) -> "MetricFrame":
        return cls(frame, len(frame), scan_thresholds)

    @classmethod
    def from_arrow(cls, table: Any, scan_thresholds: Thresholds) -> "MetricFrame":
        """A frame over a pyarrow Table; columns convert on first use, histograms without Python lists."""
        return cls(_ArrowColumns(table), table.num_rows, scan_thresholds)

    def row(self, index: int) -> "MetricFrame":
        """A one-row frame of photo `index`, at this frame's thresholds (for explaining one photo)."""
        columns = {}
        for key in list(self._columns.keys()) if hasattr(self._columns, "keys") else list(self._columns):
            column = self._columns[key]
            try:
                value = column.iloc[index]  # pandas
            except AttributeError:
                value = column[index]
            columns[key] = [value]
        hists = {region: matrix[index : index + 1] for region, matrix in self._hists.items()}
        return MetricFrame(columns, 1, self.scan_thresholds, hists).with_thresholds(self.thresholds)

    # -- raw access
    def has_column(self, column: str) -> bool:
        return column in self._columns

    def raw(self, column: str) -> list[Any] | Any:
        return self._columns[column] if column in self._columns else [None] * self.size

    def numeric(self, column: str) -> np.ndarray:
        """A report column as float64 (missing column or unparseable values → NaN)."""
        key = "col:" + column
        if key not in self._cache:
            self._cache[key] = _to_float_array(self._columns[column], self.size) if column in self._columns else np.full(self.size, np.nan)
        return self._cache[key]

    def hist(self, region: str) -> np.ndarray:
        if region not in self._hists:
            column = stats.hist_column(region)
            if isinstance(self._columns, _ArrowColumns) and column in self._columns:
                self._hists[region] = self._columns.hist_matrix(column)
            elif column in self._columns:
                self._hists[region] = _hist_matrix(list(self._columns[column]), self.size)
            else:
                self._hists[region] = np.zeros((self.size, HIST_BINS))
        return self._hists[region]

    # -- metrics
    def metric(self, name: str) -> np.ndarray:
        """Values of a catalogue metric for every photo (float64, NaN where unknown)."""
        if name in self._shares:
            return self._shares[name]
        if self._recompute and name.partition(".")[2] in SHARE_METRICS:
            self._region_shares(name.partition(".")[0])
            return self._shares[name]
        if name in self._cache:
            return self._cache[name]
        metric = METRICS[name]
        if metric.column is not None:
            values = self.numeric(metric.column)
        elif name == "image.megapixels":
            values = self.numeric("width") * self.numeric("height") / 1e6
        elif name == "image.aspect":
            with np.errstate(all="ignore"):
                values = self.numeric("width") / self.numeric("height")
        else:  # pragma: no cover - every catalogue entry is handled above
            raise KeyError(name)
        self._cache[name] = values
        return values

    def present(self, region: str) -> np.ndarray:
        """Whether each photo has the region (global: always; others: area > 0)."""
        if region == "global":
            return np.ones(self.size, dtype=bool)
        key = "present:" + region
        if key not in self._cache:
            area = self.numeric(stats.column(region, "area_pct"))
            self._cache[key] = np.nan_to_num(area, nan=0.0) > 0
        return self._cache[key]

    def ok(self) -> np.ndarray:
        """Rows that were analysed (``status`` missing counts as ok)."""
        if "status" not in self._columns:
            return np.ones(self.size, dtype=bool)
        return np.array([str(s) != "error" for s in self._columns["status"]], dtype=bool)

    def errors(self) -> list[str]:
        values = self._columns["error"] if "error" in self._columns else [None] * self.size
        return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]

    def with_thresholds(self, thresholds: Thresholds | None) -> "MetricFrame":
        """The same photos seen through other pixel thresholds (share metrics re-answered from histograms,
        region by region as rules ask for them)."""
        if thresholds is None or thresholds_equal(thresholds, self.thresholds):
            return self
        if thresholds in self._derived:
            return self._derived[thresholds]
        derived = MetricFrame(self._columns, self.size, self.scan_thresholds, self._hists, thresholds=thresholds)
        derived._cache = {k: v for k, v in self._cache.items() if not _is_share_key(k)}
        derived._recompute = True
        self._derived[thresholds] = derived
        return derived

    def _region_shares(self, region: str) -> None:
        values = shares_from_hist_matrix(self.hist(region), self.thresholds)
        for metric, array in values.items():
            self._shares[f"{region}.{metric}"] = array


class _ArrowColumns(Mapping[str, Any]):
    """Read-only column mapping over a pyarrow Table (numbers → float arrays, others → Python lists)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._converted: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._converted:
            import pyarrow as pa

            if key not in self.table.column_names:
                raise KeyError(key)
            column = self.table.column(key)
            if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
                values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            else:
                values = column.to_pylist()
            self._converted[key] = values
        return self._converted[key]

    def __contains__(self, key: object) -> bool:
        return key in self.table.column_names

    def __iter__(self):
        return iter(self.table.column_names)

    def __len__(self) -> int:
        return len(self.table.column_names)

    def hist_matrix(self, key: str) -> np.ndarray:
        """An N×HIST_BINS matrix from a list<int> column without building Python lists (nulls → zeros)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        column = self.table.column(key).combine_chunks()
        size = len(column)
        out = np.zeros((size, HIST_BINS), dtype=np.float64)
        if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
            return _hist_matrix(column.to_pylist(), size)
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        full = lengths == HIST_BINS
        if full.all():
            return column.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(size, HIST_BINS)
        if full.any():
            chosen = column.filter(pa.array(full))
            out[full] = chosen.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, HIST_BINS)
        return out


def _is_share_key(key: str) -> bool:
    return any(key.endswith("." + m) for m in SHARE_METRICS)


def _to_float_array(values: Any, size: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape == (size,):
            return arr
    except (TypeError, ValueError):
        pass
    out = np.full(size, np.nan)
    for i, value in enumerate(values):
        try:
            out[i] = float(value) if value is not None else np.nan
        except (TypeError, ValueError):
            out[i] = np.nan
    return out


def thresholds_from_metadata(metadata: Mapping[str, Any] | None) -> Thresholds:
    """The scan's thresholds from report metadata (``{"thresholds": {...}}``), defaults when absent."""
    found = (metadata or {}).get("thresholds") or {}
    return Thresholds(**{k: float(v) for k, v in found.items() if k in ("over", "under", "severe")})
