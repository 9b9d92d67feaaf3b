"""The unit of work of a scan: decoded photos in, report rows (+ overlay and map files) out.

:class:`BatchProcessor` is shared by every engine (:mod:`exposure_cli.engines`): the local engine's
threads and the Ray engine's actors run this very code, so their rows are the same. :func:`decode_item`
decodes one input and never raises; :class:`Batcher` groups decoded photos by shape.

This module imports neither the pipeline (:mod:`exposure_cli.pipeline`, which orchestrates a scan) nor the
engines, so every engine can import it.
"""

from __future__ import annotations

import errno
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .analyzers import Analyzer
from .atomic import atomic_write
from .color import grey
from .decoding import DEFAULT_MAX_PIXELS, DecodedImage, DecodeError, decode_bytes, decode_file, max_file_bytes
from .discovery import InputFile
from .errors import ScanError
from .imageops import nearest_resize
from .outdir import FINGERPRINT_KEY, output_path
from .report.schema import DEFAULT_RULES, ReportFormat
from .stats import Thresholds, image_stats

#: Kept for callers that imported it; the detectors work on one small copy (regions.WORK_SIDE).
REGION_LONG_SIDE = 512

@dataclass
class ScanOptions:
    """Everything a scan needs besides its inputs. Defaults are the CLI's defaults."""

    out: Path | str | None = None
    format: ReportFormat = ReportFormat.parquet
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    batch_size: int = 8
    workers: int = 0  # 0 → one decode thread per core (at least 2)
    working_long_side: int | None = None  # None: the analyzer's own (the eat weights card's)
    analysis_long_side: int = 1024
    thresholds: Thresholds = field(default_factory=Thresholds)
    rules: Sequence[str] = DEFAULT_RULES  # () for none
    overlays: bool = False
    overlay_style: str = "solid"  # "solid" or "zebra" (report.overlays.OverlayStyle)
    maps: bool = False
    maps_resolution: str = "full"  # "full": the photo's decoded, upright size; "analysis": the analysis size
    #: True/"all": all regions; "auto": those the rule sets read (all without rule sets); False: none; or
    #: names (pipeline.regions_for resolves it before a scan to the tuple of region names computed).
    regions: bool | str | Sequence[str] = True
    resume: bool = False
    overwrite: bool = False
    retry_errors: bool = False
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    include_hidden: bool = False
    follow_symlinks: bool = False
    recursive: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    file_timeout: float = 120.0
    #: Threads for the model's own CPU kernels (0: half the cores, at least 1). The decode and finishing
    #: pools need the rest: on 2 cores, torch's default of one thread per core made its OpenMP threads
    #: spin against the decoders and a scan ran ~4× slower (measured, docs/PERFORMANCE.md).
    torch_threads: int = 0
    compile: bool = False  # torch.compile the model (same as runtime="compile")
    runtime: str | None = None  # inference runtime (exposure_cli.runtimes.Runtime; None: the default)
    # Engine (see exposure_cli.engines): "local" threads here, or "ray" (Ray Data, local or a cluster).
    engine: str = "local"
    ray_address: str | None = None  # None: start a private local Ray instance
    num_gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0
    concurrency: int = 0  # Ray workers (actors); 0: one per GPU, else one per 2 CPUs


# ---------------------------------------------------------------------------------------------- rows


def file_facts(item: InputFile) -> dict[str, Any]:
    """size and mtime (ISO 8601, UTC) of an input, where it can be stat-ed, and its fingerprint.

    The fingerprint (size, mtime in ns, inode; a journal-only field, never a report column) is what
    ``--resume`` compares to tell a finished input from a changed one (:mod:`exposure_cli.outdir`).
    """
    listed = getattr(item, "facts", None)
    if listed is not None:  # objects on remote storage carry them from the listing (engines.uris)
        facts = dict(listed())
        facts[FINGERPRINT_KEY] = fingerprint(item)
        return facts
    try:
        st = item.path.stat()
    except OSError:
        return {"size_bytes": None, "mtime": None, FINGERPRINT_KEY: None}
    return stat_facts(st)


def stat_facts(st: os.stat_result) -> dict[str, Any]:
    """The report's file facts (and the journal's fingerprint) from one ``stat``."""
    mtime = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
    return {"size_bytes": int(st.st_size), "mtime": mtime.replace("+00:00", "Z"),
            FINGERPRINT_KEY: f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"}


def fingerprint(item: InputFile) -> str | None:
    """The identity of an input as it is now (None when it cannot be stat-ed); see :func:`file_facts`."""
    listed = getattr(item, "facts", None)
    if listed is not None:
        facts = listed()
        return f"{facts.get('size_bytes')}:{facts.get('mtime')}"
    try:
        st = item.path.stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def legacy_facts(item: InputFile) -> dict[str, Any]:
    """``size_bytes`` and ``mtime`` as a scan reports them (to compare with journals without fingerprints)."""
    facts = file_facts(item)
    return {"size_bytes": facts.get("size_bytes"), "mtime": facts.get("mtime")}


def error_row(item: InputFile, message: str, analyzer_columns: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": item.key, "path_bytes": getattr(item, "path_bytes", None), "status": "error",
                           "error": message}
    row.update(file_facts(item))
    suffix = item.path.suffix.lower().lstrip(".")
    row["format"] = suffix or None
    row.update(analyzer_columns)
    return row


@dataclass
class Decoded:
    """A decode outcome: an image or an error message."""

    item: InputFile
    image: DecodedImage | None = None
    error: str | None = None
    #: The analyzer's per-photo preparation (:meth:`BatchProcessor.prepare`), done off the model thread.
    prepared: Any = None


def decode_item(item: InputFile, options: ScanOptions, working_long_side: int) -> Decoded:
    """Decode one input; never raises (errors become ``Decoded.error``)."""
    if item.problem:
        return Decoded(item, error=item.problem)
    try:
        sizes = dict(target_long_side=working_long_side,
                     analysis_long_side=max(options.analysis_long_side, working_long_side),
                     max_pixels=options.max_pixels)
        read_remote = getattr(item, "read_bytes", None)  # objects on s3:// etc. (engines.uris)
        if read_remote is not None:
            listed = getattr(item, "size", None)
            limit = max_file_bytes(None, "image", options.max_pixels)  # format unknown until read: 16 B/px
            if listed is not None and listed > limit:  # never download what no valid image can be
                raise DecodeError(f"object is {listed / 1e6:,.0f} MB, larger than an image under the "
                                  f"{options.max_pixels / 1e6:,.0f} MP limit can be ({limit / 1e6:,.0f} MB); not read")
            img = decode_bytes(read_remote(), suffix=item.path.suffix, **sizes)
        else:
            img = decode_file(item.path, **sizes)
        return Decoded(item, image=img)
    except DecodeError as exc:
        return Decoded(item, error=str(exc))
    except MemoryError:
        return Decoded(item, error="out of memory while decoding (image too large?)")
    except Exception as exc:  # a codec bug must not stop the batch
        return Decoded(item, error=f"decoder failed: {type(exc).__name__}: {exc}")


class BatchProcessor:
    """The unit of work: decoded photos → report rows (+ overlay and map files).

    Args:
        analyzer: Produces residual maps.
        thresholds: Pixel thresholds for the statistics.
        rule_sets: Loaded rule sets (see :mod:`exposure_cli.rules`); may be empty.
        out_dir: Where overlays/maps go (None: no files).
        overlays: Write ``out_dir/overlays/<name>.overlay.jpg`` (see :func:`report.overlays.overlay_name`).
        maps: Write ``out_dir/maps/<path>.npy`` (float16).
        overlay_style: ``solid`` or ``zebra``.
        maps_resolution: ``full`` (the photo's decoded, upright size) or ``analysis``.
        regions: Compute face/person/subject/background/sky masks for per-region statistics: True (all),
            False (none), or the region names to compute (see :func:`pipeline.regions_for`); the others are
            marked not computed in the report (NaN ``<region>_area_pct``).
    """

    def __init__(self, analyzer: Analyzer, thresholds: Thresholds, rule_sets: Sequence[Any] = (),
                 out_dir: Path | None = None, overlays: bool = False, maps: bool = False,
                 regions: bool | Sequence[str] = True, overlay_style: str = "solid",
                 maps_resolution: str = "full") -> None:
        self.analyzer = analyzer
        self.thresholds = thresholds
        self.rule_sets = list(rule_sets)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.overlays = overlays
        self.maps = maps
        from .regions import REGION_NAMES

        if regions is True:
            self.region_names: tuple[str, ...] = REGION_NAMES
        elif not regions:
            self.region_names = ()
        else:
            self.region_names = tuple(n for n in REGION_NAMES if n in set(regions))
        self.regions = bool(self.region_names)
        self.overlay_style = overlay_style
        if maps_resolution not in ("full", "analysis"):
            raise ValueError(f"maps_resolution must be 'full' or 'analysis', not {maps_resolution!r}")
        self.maps_resolution = maps_resolution
        info = analyzer.info
        self.analyzer_columns = {"analyzer": info.name, "analyzer_version": info.version,
                                 "weights_sha256": info.weights_sha256 or None}

    def error_rows(self, decoded: Iterable[Decoded]) -> list[dict[str, Any]]:
        rows = [error_row(d.item, d.error or "unknown error", self.analyzer_columns) for d in decoded]
        return [self._score(r) for r in rows]

    def prepare(self, d: Decoded) -> Decoded:
        """The analyzer's per-photo work before the model (:meth:`Analyzer.prepare`), for a decode thread.

        A failure here is left for the model thread, which prepares again and reports it as the photo's error.
        """
        if d.image is not None:
            try:
                d.prepared = self.analyzer.prepare(d.image.rgb)
            except Exception:  # noqa: BLE001 - analyze_split prepares again and the error becomes a row
                d.prepared = None
        return d

    def _analyze(self, good: Sequence[Decoded]) -> tuple[list[Callable[[], np.ndarray]] | None, str | None]:
        """The batched model on `good` now; one callable per photo finishes its map (see Analyzer.analyze_split)."""
        if not good:
            return [], None
        try:
            return self.analyzer.analyze_split([d.image.rgb for d in good], [d.prepared for d in good]), None
        except Exception as exc:  # a model failure fails these photos, not the scan
            return None, f"analyzer failed: {exc}"

    def _finished_row(self, d: Decoded, finish: Callable[..., np.ndarray],
                      pool) -> tuple[dict[str, Any], list[PendingFile]]:
        try:
            g = grey(d.image.rgb)  # once, for the map's guide and the statistics
            residual = finish(image_grey=g)
        except Exception as exc:  # the map's per-photo part failed: this photo fails, not the scan
            return self.error_rows([Decoded(d.item, error=f"analyzer failed: {exc}")])[0], []
        d.prepared = None  # the working-size copy is not needed any more
        return self._safe_row(d, residual, pool, g)

    def _safe_row(self, d: Decoded, residual: np.ndarray, pool,
                  image_grey: np.ndarray | None = None) -> tuple[dict[str, Any], list[PendingFile]]:
        try:
            return self._row(d, residual, pool, image_grey)
        except Exception as exc:  # statistics/regions on an odd photo fail it, not the scan
            error = f"analysis failed: {type(exc).__name__}: {exc}"
            return self.error_rows([Decoded(d.item, error=error)])[0], []

    def process(self, batch: Sequence[Decoded],
                writer_pool: ThreadPoolExecutor | None = None) -> tuple[list[dict[str, Any]], list[PendingFile]]:
        """Rows for a batch of decode outcomes, plus futures of pending file writes (if a pool is given)."""
        good = [d for d in batch if d.image is not None]
        rows_by_id: dict[int, dict[str, Any]] = {}
        futures: list[PendingFile] = []
        maps, failure = self._analyze(good)
        for d in batch:
            if d.image is None:
                rows_by_id[id(d)] = self.error_rows([d])[0]
            elif failure is not None:
                rows_by_id[id(d)] = self.error_rows([Decoded(d.item, error=failure)])[0]
        for d, finish in zip(good, maps or []):
            row, pending = self._finished_row(d, finish, writer_pool)
            rows_by_id[id(d)] = row
            futures.extend(pending)
        return [rows_by_id[id(d)] for d in batch], futures

    def submit(self, batch: Sequence[Decoded], pool: ThreadPoolExecutor) -> list[Future]:
        """Like :meth:`process`, but everything after the model runs in `pool`.

        The model runs here (it is batched and multi-threaded itself); the rest of each photo's map (the
        guided upsampling), regions, statistics, rules and the overlay/map files run in `pool`, overlapping
        with the next batch's model.
        Returns one future per input, in order, each resolving to the finished row (files on disk).
        """
        good = [d for d in batch if d.image is not None]
        maps, failure = self._analyze(good)
        residuals = {id(d): m for d, m in zip(good, maps or [])}
        out: list[Future] = []
        for d in batch:
            if id(d) in residuals:
                out.append(pool.submit(self._finish, d, residuals[id(d)]))
            else:
                error = d.error if d.image is None else failure
                out.append(done_future(self.error_rows([Decoded(d.item, error=error)])[0]))
        return out

    def _finish(self, d: Decoded, finish: Callable[[], np.ndarray]) -> dict[str, Any]:
        row, futures = self._finished_row(d, finish, INLINE)
        return settle([row], futures)[0]

    def _row(self, d: Decoded, residual: np.ndarray, pool: ThreadPoolExecutor | None,
             image_grey: np.ndarray | None = None):
        img = d.image
        assert img is not None
        row: dict[str, Any] = {"path": d.item.key, "path_bytes": getattr(d.item, "path_bytes", None),
                               "status": "ok", "error": None}
        # the facts of the very file that was decoded (its descriptor's fstat), else a stat now
        row.update(stat_facts(img.source_stat) if img.source_stat is not None else file_facts(d.item))
        row.update(format=img.format, width=img.width, height=img.height,
                   analysis_width=int(img.rgb.shape[1]), analysis_height=int(img.rgb.shape[0]),
                   bit_depth=img.bit_depth)
        row.update(img.exif.columns())
        row.update(self.analyzer_columns)
        code = self._region_code(img.rgb) if self.region_names else None
        g = grey(img.rgb) if image_grey is None else image_grey
        row.update(image_stats(residual, None, self.thresholds, grey=g,
                               ev_calibration=self.analyzer.ev_calibration, region_code=code,
                               computed=self.region_names))
        pending: list[PendingFile] = []
        if self.out_dir is not None and self.overlays:
            try:
                from .report.overlays import overlay_name

                target = output_path(self.out_dir, "overlays", overlay_name(d.item.key), "")
            except ScanError as exc:  # the photo keeps its statistics; only the file is refused
                row["error"] = f"overlay not written: {exc}"
            else:
                row["overlay_path"] = target.relative_to(self.out_dir.resolve()).as_posix()
                pending.append(PendingFile(row, "overlay_path", "overlay", self._submit(
                    pool, _write_overlay, target, img.rgb, residual, self.thresholds, self.overlay_style)))
        if self.out_dir is not None and self.maps:
            try:
                target = output_path(self.out_dir, "maps", d.item.key, ".npy")
            except ScanError as exc:
                row["error"] = f"map not written: {exc}"
            else:
                row["map_path"] = target.relative_to(self.out_dir.resolve()).as_posix()
                full = self.maps_resolution == "full"
                pending.append(PendingFile(row, "map_path", "map",
                                           self._submit(pool, _write_map, target, residual, d if full else None)))
        return self._score(row), pending

    @staticmethod
    def _submit(pool, fn, *args) -> Future:
        return (pool or INLINE).submit(fn, *args)

    def _region_code(self, rgb: np.ndarray):
        """The photo's regions as one uint8 bit image at the detectors' working size (see
        regions.region_code; the statistics read it at the analysis size without upsampling it)."""
        from .regions import region_code

        return region_code(rgb, self.region_names, upsample=False)

    def _masks(self, rgb: np.ndarray) -> dict[str, np.ndarray | None]:
        """Boolean masks at the analysis size (the scan itself uses :meth:`_region_code`)."""
        code, names = self._region_code(rgb)
        masks: dict[str, np.ndarray | None] = {n: None for n in self.region_names}
        if code is not None:
            code = nearest_resize(code, rgb.shape[:2])
        for bit, name in enumerate(names):
            masks[name] = (code >> bit) & 1 == 1
        return masks

    def _score(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.rule_sets:
            from .rules import score_row

            row.update(score_row(self.rule_sets, row, self.thresholds))
        return row


def _write_overlay(target: Path, rgb: np.ndarray, residual: np.ndarray, thresholds: Thresholds,
                   style: str = "solid") -> None:
    import cv2

    from .report.overlays import render_overlay

    img = render_overlay(rgb, residual, thresholds, style=style)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise OSError(errno.EIO, "JPEG encoding of the overlay failed")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda fh: fh.write(buf.tobytes()))


def _write_map(target: Path, residual: np.ndarray, full_size_of: "Decoded | None" = None) -> None:
    """Save a map as float16 .npy: at the analysis size, or at the photo's full size (``full_size_of``)."""
    import io

    if full_size_of is not None:
        residual = full_size_map(full_size_of, residual)

    # Serialised first: np.save into a real file writes with C stdio, whose failure on a full disk is an
    # OSError without errno ("N requested and M written"), which the scan cannot tell from a bad file.
    buf = io.BytesIO()
    np.save(buf, residual.astype(np.float16), allow_pickle=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda fh: fh.write(buf.getbuffer()))


def full_size_map(decoded: "Decoded", residual: np.ndarray) -> np.ndarray:
    """The map at the photo's decoded, EXIF-oriented size (``width`` × ``height``).

    The photo is decoded again at full size (the scan keeps only the analysis size in memory) and the map
    is brought up with the same guided-filter upsampling the model's maps get, guided by the full-size
    grey image, so its edges follow the photo's edges.
    """
    img = decoded.image
    assert img is not None
    if residual.shape == (img.height, img.width):
        return residual
    from .imageops import guided_upsample

    item = decoded.item
    read_remote = getattr(item, "read_bytes", None)
    data = read_remote() if read_remote is not None else item.path.read_bytes()
    unlimited = 1 << 30
    full = decode_bytes(data, suffix=item.path.suffix, target_long_side=unlimited, analysis_long_side=unlimited,
                        max_pixels=max(DEFAULT_MAX_PIXELS, img.width * img.height))
    big = grey(full.rgb)
    del full
    if big.shape != (img.height, img.width):  # a container that decodes to another size than it declares
        import cv2

        big = cv2.resize(big, (img.width, img.height), interpolation=cv2.INTER_AREA)
    out = guided_upsample(residual, grey(img.rgb), big)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def done_future(value: Any) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


class _InlineExecutor:
    """Runs a submitted call at once and returns its completed future (errors captured, not raised)."""

    @staticmethod
    def submit(fn, *args) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future, like a pool would
            f.set_exception(exc)
        return f


INLINE = _InlineExecutor()


# -------------------------------------------------------------------------------------------- batching


def bucket_key(image: DecodedImage, working_long_side: int, multiple: int = 32) -> tuple[int, int]:
    """Shape class at the working resolution: photos in one bucket batch with little padding."""
    h, w = image.rgb.shape[:2]
    s = working_long_side / max(h, w)
    return (math.ceil(h * s / multiple), math.ceil(w * s / multiple))


class Batcher:
    """Groups decoded photos by bucket; emits full batches, and the biggest bucket under memory pressure.

    With an analyzer that says how it batches (``batch_key(h, w)`` and ``per_pass(key)``, as the ``eat``
    analyzer does), buckets follow its keys and a bucket is full at ``per_pass(key)`` photos — many
    thumbnails per batch — and the buffer limit counts batches' worth of photos, not photos.
    """

    def __init__(self, batch_size: int, working_long_side: int, max_buffered: int | None = None,
                 analyzer: Any = None) -> None:
        self.batch_size = max(1, batch_size)
        self.working_long_side = working_long_side
        self.max_buffered = max_buffered or 4 * self.batch_size
        self.buckets: dict[tuple[int, int], list[Decoded]] = {}
        self.capacity: dict[tuple[int, int], int] = {}  # photos per forward pass, per bucket
        self.buffered = 0.0  # in photos of batch_size-photo batches (a thumbnail counts less)
        self._key = getattr(analyzer, "batch_key", None)
        self._per_pass = getattr(analyzer, "per_pass", None)

    def _bucket(self, d: Decoded) -> tuple[tuple[int, int], int]:
        assert d.image is not None
        if self._key is None or self._per_pass is None:
            return bucket_key(d.image, self.working_long_side), self.batch_size
        key = tuple(self._key(*d.image.rgb.shape[:2]))
        return key, max(1, int(self._per_pass(key)))  # type: ignore[return-value]

    def add(self, d: Decoded) -> list[Decoded] | None:
        key, capacity = self._bucket(d)
        self.capacity[key] = capacity
        bucket = self.buckets.setdefault(key, [])
        bucket.append(d)
        self.buffered += self.batch_size / capacity
        if len(bucket) >= capacity:
            return self._take(key)
        if self.buffered >= self.max_buffered:
            return self._take(max(self.buckets, key=lambda k: len(self.buckets[k])))
        return None

    def _take(self, key) -> list[Decoded]:
        batch = self.buckets.pop(key)
        capacity = self.capacity.pop(key)
        self.buffered = max(0.0, self.buffered - self.batch_size / capacity * len(batch)) if self.buckets else 0.0
        return batch

    def drain(self) -> Iterator[list[Decoded]]:
        for key in list(self.buckets):
            yield self._take(key)


@dataclass
class PendingFile:
    """An overlay or map being written for a row; the row names the file only once it is on disk."""

    row: dict[str, Any]
    column: str  # "overlay_path" or "map_path"
    what: str  # "overlay" or "map"
    future: Future


def settle(rows: list[dict[str, Any]], pending: Sequence[PendingFile]) -> list[dict[str, Any]]:
    """Wait for a batch's file writes. A failed write clears its column (``overlay_path``/``map_path``
    names only files that were written) and becomes an error on its row, not a crash; a full or read-only
    disk stops the scan (raised)."""
    for p in pending:
        try:
            p.future.result()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            p.row[p.column] = None
            message = f"{p.what} not written: {exc.strerror or exc}"
            p.row["error"] = f"{p.row['error']}; {message}" if p.row.get("error") else message
    return rows


def default_workers() -> int:
    """Decode threads when ``--workers 0``: one per core, at least 2."""
    return max(2, os.cpu_count() or 2)


__all__ = ["INLINE", "Batcher", "BatchProcessor", "Decoded", "REGION_LONG_SIDE", "ScanOptions", "bucket_key",
           "decode_item", "default_workers", "done_future", "error_row", "file_facts", "fingerprint",
           "legacy_facts", "PendingFile", "settle", "stat_facts"]
