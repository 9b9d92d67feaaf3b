"""The scan: discovery → decoding → analyzer → statistics → rules → rows (+ overlays, maps).

:class:`BatchProcessor` is the unit of work — a batch of decoded photos in, report rows out — shared by
the local engine here (:func:`scan`) and the distributed engines in :mod:`exposure_cli.engines`.

The local engine decodes in a thread pool (OpenCV releases the GIL) overlapped with inference, groups
photos into batches by their working-resolution shape (little padding), writes overlays and maps in a
writer pool off the critical path, and journals rows once their files are on disk. See
:mod:`exposure_cli.report.writers` for the crash-safety contract.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import math
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from . import __version__
from .analyzers import Analyzer, create_analyzer
from .color import grey
from .decoding import DEFAULT_MAX_PIXELS, DecodedImage, DecodeError, decode_bytes, decode_file
from .discovery import InputFile, discover
from .exif import EXIF_COLUMNS
from .report.schema import REPORT_FILENAMES, ReportFormat, base_columns, rule_columns
from .stats import Thresholds, image_stats

#: Region masks are computed at most at this long side (they are smooth; the stats are shares).
REGION_LONG_SIDE = 512


class ScanError(RuntimeError):
    """A scan-level failure (bad output folder, lock held, disk full); the message is user-facing."""


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
    working_long_side: int = 512
    analysis_long_side: int = 1024
    thresholds: Thresholds = field(default_factory=Thresholds)
    rules: Sequence[str] = ()
    overlays: bool = False
    maps: bool = False
    regions: bool = True
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
    compile: bool = False  # torch.compile the model (pays for long scans; see docs/PERFORMANCE.md)
    # Engine (see exposure_cli.engines): "local" threads here, or "ray" (Ray Data, local or a cluster).
    engine: str = "local"
    ray_address: str | None = None  # None: start a private local Ray instance
    num_gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0
    concurrency: int = 0  # Ray workers (actors); 0: one per GPU, else one per 2 CPUs


@dataclass
class ScanResult:
    """What a scan did."""

    total: int = 0
    processed: int = 0
    skipped: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    report_path: Path | None = None
    worst: list[tuple[float, str]] = field(default_factory=list)  # (bad_pct, path), worst first
    below: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # rule → [(path, score)]
    error_samples: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    rule_names: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------------------------------- rows


def file_facts(item: InputFile) -> dict[str, Any]:
    """size and mtime (ISO 8601, UTC) of an input, where it can be stat-ed."""
    listed = getattr(item, "facts", None)
    if listed is not None:  # objects on remote storage carry them from the listing (engines.uris)
        return listed()
    try:
        st = item.path.stat()
    except OSError:
        return {"size_bytes": None, "mtime": None}
    mtime = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
    return {"size_bytes": int(st.st_size), "mtime": mtime.replace("+00:00", "Z")}


def error_row(item: InputFile, message: str, analyzer_columns: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": item.key, "status": "error", "error": message}
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


def output_path(out_dir: Path, kind: str, key: str, suffix: str) -> Path:
    """``out_dir/kind/key+suffix``, guaranteed to stay inside ``out_dir/kind``.

    Only ``out_dir`` itself may be a symlink: a symlinked ``kind`` folder or sub-folder that leads
    elsewhere (planted in an output folder) is refused like ``..`` or an absolute key.
    """
    base = out_dir.resolve() / kind
    target = (base / (key + suffix)).resolve()
    if base not in target.parents:
        raise ScanError(f"refusing to write outside {base}: {key!r}")
    return target


def _atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a half-written file on a full disk only takes the space a retry needs
        raise


class BatchProcessor:
    """The unit of work: decoded photos → report rows (+ overlay and map files).

    Args:
        analyzer: Produces residual maps.
        thresholds: Pixel thresholds for the statistics.
        rule_sets: Loaded rule sets (see :mod:`exposure_cli.rules`); may be empty.
        out_dir: Where overlays/maps go (None: no files).
        overlays: Write ``out_dir/overlays/<path>.jpg``.
        maps: Write ``out_dir/maps/<path>.npy`` (float16, analysis resolution).
        regions: Compute face/person/subject/background/sky masks for per-region statistics.
    """

    def __init__(self, analyzer: Analyzer, thresholds: Thresholds, rule_sets: Sequence[Any] = (),
                 out_dir: Path | None = None, overlays: bool = False, maps: bool = False,
                 regions: bool = True) -> None:
        self.analyzer = analyzer
        self.thresholds = thresholds
        self.rule_sets = list(rule_sets)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.overlays = overlays
        self.maps = maps
        self.regions = regions
        info = analyzer.info
        self.analyzer_columns = {"analyzer": info.name, "analyzer_version": info.version,
                                 "weights_sha256": info.weights_sha256 or None}

    def error_rows(self, decoded: Iterable[Decoded]) -> list[dict[str, Any]]:
        rows = [error_row(d.item, d.error or "unknown error", self.analyzer_columns) for d in decoded]
        return [self._score(r) for r in rows]

    def _analyze(self, good: Sequence[Decoded]) -> tuple[list[np.ndarray] | None, str | None]:
        if not good:
            return [], None
        try:
            return self.analyzer.analyze_batch([d.image.rgb for d in good]), None
        except Exception as exc:  # a model failure fails these photos, not the scan
            return None, f"analyzer failed: {exc}"

    def _safe_row(self, d: Decoded, residual: np.ndarray, pool) -> tuple[dict[str, Any], list[Future]]:
        try:
            return self._row(d, residual, pool)
        except Exception as exc:  # statistics/regions on an odd photo fail it, not the scan
            error = f"analysis failed: {type(exc).__name__}: {exc}"
            return self.error_rows([Decoded(d.item, error=error)])[0], []

    def process(self, batch: Sequence[Decoded],
                writer_pool: ThreadPoolExecutor | None = None) -> tuple[list[dict[str, Any]], list[Future]]:
        """Rows for a batch of decode outcomes, plus futures of pending file writes (if a pool is given)."""
        good = [d for d in batch if d.image is not None]
        rows_by_id: dict[int, dict[str, Any]] = {}
        futures: list[Future] = []
        maps, failure = self._analyze(good)
        for d in batch:
            if d.image is None:
                rows_by_id[id(d)] = self.error_rows([d])[0]
            elif failure is not None:
                rows_by_id[id(d)] = self.error_rows([Decoded(d.item, error=failure)])[0]
        for d, residual in zip(good, maps or []):
            row, pending = self._safe_row(d, residual, writer_pool)
            rows_by_id[id(d)] = row
            futures.extend(pending)
        return [rows_by_id[id(d)] for d in batch], futures

    def submit(self, batch: Sequence[Decoded], pool: ThreadPoolExecutor) -> list[Future]:
        """Like :meth:`process`, but everything after the model runs in `pool`.

        The model runs here (it is batched and multi-threaded itself); regions, statistics, rules and
        the overlay/map files of each photo run in `pool`, overlapping with the next batch's model.
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
                out.append(_done(self.error_rows([Decoded(d.item, error=error)])[0]))
        return out

    def _finish(self, d: Decoded, residual: np.ndarray) -> dict[str, Any]:
        row, futures = self._safe_row(d, residual, _INLINE)
        return _settle([row], futures)[0]

    def _row(self, d: Decoded, residual: np.ndarray, pool: ThreadPoolExecutor | None):
        img = d.image
        assert img is not None
        row: dict[str, Any] = {"path": d.item.key, "status": "ok", "error": None}
        row.update(file_facts(d.item))
        row.update(format=img.format, width=img.width, height=img.height,
                   analysis_width=int(img.rgb.shape[1]), analysis_height=int(img.rgb.shape[0]),
                   bit_depth=img.bit_depth)
        row.update(img.exif.columns())
        row.update(self.analyzer_columns)
        masks = self._masks(img.rgb) if self.regions else {}
        row.update(image_stats(residual, masks, self.thresholds, grey=grey(img.rgb),
                               ev_calibration=self.analyzer.ev_calibration))
        pending: list[Future] = []
        if self.out_dir is not None and self.overlays:
            try:
                target = output_path(self.out_dir, "overlays", d.item.key, ".jpg")
            except ScanError as exc:  # the photo keeps its statistics; only the file is refused
                row["error"] = f"overlay not written: {exc}"
            else:
                row["overlay_path"] = target.relative_to(self.out_dir.resolve()).as_posix()
                pending.append(self._submit(pool, _write_overlay, target, img.rgb, residual, self.thresholds))
        if self.out_dir is not None and self.maps:
            try:
                target = output_path(self.out_dir, "maps", d.item.key, ".npy")
            except ScanError as exc:
                row["error"] = f"map not written: {exc}"
            else:
                row["map_path"] = target.relative_to(self.out_dir.resolve()).as_posix()
                pending.append(self._submit(pool, _write_map, target, residual))
        return self._score(row), [f for f in pending if f is not None]

    @staticmethod
    def _submit(pool, fn, *args) -> Future | None:
        if pool is None:
            fn(*args)
            return None
        return pool.submit(fn, *args)

    def _masks(self, rgb: np.ndarray) -> dict[str, np.ndarray | None]:
        from .decoding import limit_long_side
        from .regions import compute_regions

        h, w = rgb.shape[:2]
        small = limit_long_side(rgb, REGION_LONG_SIDE)
        masks = compute_regions(small)
        if small.shape[:2] == (h, w):
            return masks
        import cv2

        return {name: None if m is None else
                cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
                for name, m in masks.items()}

    def _score(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.rule_sets:
            from .rules import score_row

            row.update(score_row(self.rule_sets, row, self.thresholds))
        return row


def _write_overlay(target: Path, rgb: np.ndarray, residual: np.ndarray, thresholds: Thresholds) -> None:
    import cv2

    from .report.overlays import render_overlay

    img = render_overlay(rgb, residual, thresholds)

    def write(tmp: Path) -> None:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
        if not ok:
            raise OSError(errno.EIO, "JPEG encoding of the overlay failed")
        tmp.write_bytes(buf.tobytes())

    _atomic_write(target, write)


def _write_map(target: Path, residual: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, residual.astype(np.float16), allow_pickle=False)

    _atomic_write(target, write)


def _done(value: Any) -> Future:
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


_INLINE = _InlineExecutor()


# -------------------------------------------------------------------------------------------- batching


def bucket_key(image: DecodedImage, working_long_side: int, multiple: int = 32) -> tuple[int, int]:
    """Shape class at the working resolution: photos in one bucket batch with little padding."""
    h, w = image.rgb.shape[:2]
    s = working_long_side / max(h, w)
    return (math.ceil(h * s / multiple), math.ceil(w * s / multiple))


class Batcher:
    """Groups decoded photos by bucket; emits full batches, and the biggest bucket under memory pressure."""

    def __init__(self, batch_size: int, working_long_side: int, max_buffered: int | None = None) -> None:
        self.batch_size = max(1, batch_size)
        self.working_long_side = working_long_side
        self.max_buffered = max_buffered or 4 * self.batch_size
        self.buckets: dict[tuple[int, int], list[Decoded]] = {}
        self.buffered = 0

    def add(self, d: Decoded) -> list[Decoded] | None:
        assert d.image is not None
        key = bucket_key(d.image, self.working_long_side)
        bucket = self.buckets.setdefault(key, [])
        bucket.append(d)
        self.buffered += 1
        if len(bucket) >= self.batch_size:
            return self._take(key)
        if self.buffered >= self.max_buffered:
            return self._take(max(self.buckets, key=lambda k: len(self.buckets[k])))
        return None

    def _take(self, key) -> list[Decoded]:
        batch = self.buckets.pop(key)
        self.buffered -= len(batch)
        return batch

    def drain(self) -> Iterator[list[Decoded]]:
        for key in list(self.buckets):
            yield self._take(key)


# ---------------------------------------------------------------------------------------------- scan


def _default_workers() -> int:
    return max(2, os.cpu_count() or 2)


def resolve_out(options: ScanOptions) -> Path | None:
    if options.out in (None, "-"):
        return None
    return Path(options.out)


def scan_metadata(analyzer: Analyzer, options: ScanOptions, rule_names: Sequence[str],
                  roots: Sequence[str]) -> dict[str, Any]:
    info = analyzer.info
    return {
        "tool": "exposure-cli",
        "version": __version__,
        "analyzer": {"name": info.name, "version": info.version, "weights_sha256": info.weights_sha256,
                     "working_long_side": info.working_long_side, **info.extra},
        "thresholds": options.thresholds.as_dict(),
        "rule_sets": list(rule_names),
        "regions": bool(options.regions),
        "region_detectors": _region_detectors() if options.regions else {},
        "roots": [str(r) for r in roots],
        "residual_convention": "r = grey(ideal) - grey(observed) in [-1, 1]; r<0 over-exposed, r>0 under-exposed",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _region_detectors() -> dict[str, str]:
    from .regions import detector_status

    return detector_status()


_COMPARED_META = ("analyzer", "thresholds", "rule_sets", "regions")


@contextlib.contextmanager
def _lock(out_dir: Path):
    import fcntl

    state = out_dir / ".exposure"
    try:
        state.mkdir(parents=True, exist_ok=True)
        fh = open(state / "lock", "a+")
    except OSError as exc:  # read-only or full disk, no permission: say so, no traceback
        raise ScanError(f"cannot use the output folder {out_dir}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise ScanError(f"another scan ({holder}) is writing to {out_dir}; wait for it or use another --out")
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _check_inputs_vs_out(paths: Sequence[str], out_dir: Path) -> None:
    out_real = out_dir.resolve()
    for p in paths:
        try:
            real = Path(p).resolve()
        except OSError:
            continue
        if real.is_file() and real.parent == out_real:
            raise ScanError(f"{p} is inside the output folder {out_dir}; choose another --out")
        if real.is_dir() and real == out_real:
            # The report, overlays/ and maps/ would land among the photos, and the next scan would
            # take its own overlays for photos.
            raise ScanError(f"the output folder {out_dir} is the scanned folder {p}; choose another --out "
                            "(a folder inside it is fine)")


def scan(
    paths: Sequence[str | os.PathLike],
    options: ScanOptions | None = None,
    *,
    analyzer: Analyzer | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    stream: Any = None,
    **overrides: Any,
) -> ScanResult:
    """Scan photos and write a report. The library behind ``exposure scan``.

    Args:
        paths: Folders and files to scan.
        options: Scan options (keyword ``overrides`` are applied on top, e.g. ``out="audit"``).
        analyzer: A ready analyzer (default: built from ``options.model``/``weights``/``device``).
        progress: Called as ``progress(done, errors, advanced)`` after every batch.
        on_total: Called once with the number of inputs to process.
        stream: Text stream for ``out="-"`` (default ``sys.stdout``).

    Returns:
        A :class:`ScanResult`; the report is at ``result.report_path``.

    Raises:
        ScanError: The output folder cannot be used (exists without --resume/--overwrite, locked, full).
    """
    options = options or ScanOptions()
    for k, v in overrides.items():
        if not hasattr(options, k):
            raise TypeError(f"unknown scan option {k!r}")
        setattr(options, k, v)
    if isinstance(options.thresholds, Mapping):
        options.thresholds = Thresholds(**options.thresholds)
    options.format = ReportFormat(options.format)
    paths = [str(p) for p in paths]
    out_dir = resolve_out(options)
    if out_dir is None and (options.overlays or options.maps):
        raise ScanError("--overlays and --maps need an output folder (--out DIR), not a pipe")
    if out_dir is None and options.format == ReportFormat.parquet and options.out == "-":
        raise ScanError("Parquet cannot be streamed to a pipe; use --format csv or --format jsonl with --out -")
    distributed = _check_engine(options, analyzer)

    rule_sets = []
    if options.rules:
        from .rules import load_rule_sets

        rule_sets = load_rule_sets(list(options.rules))
    rule_names = [rs.name for rs in rule_sets]
    own_analyzer = analyzer is None
    if analyzer is None:
        # With a distributed engine the workers load their own models; this one only describes the
        # analyzer for the report's metadata, so keep it off the GPU the workers need.
        analyzer = create_analyzer(options.model, weights=options.weights,
                                   device="cpu" if distributed else options.device,
                                   working_long_side=options.working_long_side,
                                   batch_size=options.batch_size, compile=options.compile)
    try:
        if out_dir is None:
            with _model_threads(options, distributed):
                return _scan_to_stream(paths, options, analyzer, rule_sets, rule_names, progress, on_total,
                                       stream or sys.stdout)
        _check_inputs_vs_out(paths, out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScanError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from exc
        with _lock(out_dir), _model_threads(options, distributed):
            return _scan_to_dir(paths, options, out_dir, analyzer, rule_sets, rule_names, progress, on_total)
    finally:
        if own_analyzer:
            analyzer.close()


@contextlib.contextmanager
def _model_threads(options: ScanOptions, distributed: bool):
    """Give torch its share of the cores for the scan (see ScanOptions.torch_threads), then restore."""
    torch = sys.modules.get("torch")
    if torch is None or distributed:
        yield
        return
    wanted = options.torch_threads or max(1, (os.cpu_count() or 2) // 2)
    previous = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_engine(options: ScanOptions, analyzer: Analyzer | None) -> bool:
    """Fail at once if the chosen engine cannot run here; True for a distributed engine."""
    if options.engine == "local":
        return False
    from .engines import EngineUnavailable, check_engine

    try:
        check_engine(options.engine, options.ray_address)
    except EngineUnavailable as exc:
        raise ScanError(str(exc)) from None
    if analyzer is not None:
        raise ScanError(f"engine {options.engine!r} builds the analyzer on every worker from "
                        "model/weights/device; pass those options instead of an analyzer object")
    return True


def _engine_loop(options: ScanOptions) -> Callable[..., Iterator[list[dict[str, Any]]]]:
    """The engine's ``(todo, options, processor) -> batches of finished rows`` loop."""
    if options.engine == "local":
        return _run_local
    from .engines.ray_engine import run_ray  # imports Ray; only reached with --engine ray

    return run_ray


def _inputs(paths: Sequence[str], options: ScanOptions, out_dir: Path | None) -> list[InputFile]:
    from .engines.uris import discover_uris, is_uri  # no Ray here: pyarrow filesystems, lazily

    if any(is_uri(p) for p in paths):
        return list(discover_uris(paths, include=options.include, exclude=options.exclude,
                                  recursive=options.recursive, include_hidden=options.include_hidden))
    return list(discover(paths, include=options.include, exclude=options.exclude,
                         recursive=options.recursive, include_hidden=options.include_hidden,
                         follow_symlinks=options.follow_symlinks,
                         exclude_dirs=[out_dir] if out_dir is not None else []))


def _prepare_state(out_dir: Path, options: ScanOptions, meta: dict[str, Any]) -> dict[str, str]:
    """Check resume/overwrite rules; return statuses of rows already done."""
    from .report.writers import Journal

    state = out_dir / ".exposure"
    journal = Journal(out_dir)
    scan_json = state / "scan.json"
    existing_report = [out_dir / n for n in REPORT_FILENAMES.values() if (out_dir / n).exists()]
    has_previous = journal.exists() or bool(existing_report)
    if has_previous and not (options.resume or options.overwrite):
        raise ScanError(f"{out_dir} already holds a scan; use --resume to continue it or --overwrite to start over")
    if options.overwrite and not options.resume:
        for p in (journal.path, scan_json, *existing_report, out_dir / "report.meta.json"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return {}
    if scan_json.exists():
        previous = json.loads(scan_json.read_text(encoding="utf-8"))
        changed = [k for k in _COMPARED_META if previous.get(k) != meta.get(k)]
        if changed and journal.exists():
            raise ScanError(
                f"cannot resume: {', '.join(changed)} differ from the scan in {out_dir} "
                "(use the same options, or --overwrite to start over)"
            )
    return journal.statuses()


def _scan_to_dir(paths, options, out_dir, analyzer, rule_sets, rule_names, progress, on_total) -> ScanResult:
    from .report.writers import Journal, finalize

    start = time.perf_counter()
    meta = scan_metadata(analyzer, options, rule_names, paths)
    done = _prepare_state(out_dir, options, meta)
    (out_dir / ".exposure").mkdir(exist_ok=True)
    scan_json = out_dir / ".exposure" / "scan.json"
    if not scan_json.exists() or options.overwrite and not options.resume:
        scan_json.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    inputs = _inputs(paths, options, out_dir)
    todo = [f for f in inputs if f.key not in done or (options.retry_errors and done[f.key] == "error")]
    result = ScanResult(total=len(inputs), skipped=len(inputs) - len(todo), rule_names=list(rule_names))
    columns = base_columns() + rule_columns(rule_names)
    journal = Journal(out_dir)
    journal.open()
    processor = BatchProcessor(analyzer, options.thresholds, rule_sets, out_dir, options.overlays,
                               options.maps, options.regions)
    if on_total:
        on_total(len(todo))
    failed = False
    try:
        for rows in _engine_loop(options)(todo, options, processor):
            try:
                journal.append(rows)
            except OSError as exc:
                raise ScanError(
                    f"cannot write the report journal in {out_dir}: {exc.strerror or exc}. "
                    f"{result.processed} rows written so far are safe; fix the problem and re-run with --resume"
                ) from exc
            _account(result, rows, rule_sets)
            if progress:
                progress(result.processed, result.errors, len(rows))
    except KeyboardInterrupt:
        result.interrupted = True
    except OSError as exc:  # an overlay/map write on a full or read-only disk
        failed = True
        raise ScanError(
            f"cannot write in {out_dir}: {exc.strerror or exc}. {result.processed} rows written so far are "
            "safe in the journal; fix the problem and re-run with --resume"
        ) from exc
    except BaseException:
        failed = True
        raise
    finally:
        journal.close()
        result.seconds = time.perf_counter() - start
        try:
            result.report_path = finalize(out_dir, options.format, columns, meta)
        except OSError as exc:
            # Report the failure unless another error is already on its way out (it says more).
            if not result.interrupted and not failed:
                raise ScanError(f"cannot write the report in {out_dir}: {exc.strerror or exc}; "
                                "the journal is intact, re-run with --resume") from exc
    return result


def _scan_to_stream(paths, options, analyzer, rule_sets, rule_names, progress, on_total, stream) -> ScanResult:
    from .report.writers import RowStreamWriter

    start = time.perf_counter()
    inputs = _inputs(paths, options, None)
    result = ScanResult(total=len(inputs), rule_names=list(rule_names))
    writer = RowStreamWriter(stream, options.format, base_columns() + rule_columns(rule_names))
    processor = BatchProcessor(analyzer, options.thresholds, rule_sets, None, False, False, options.regions)
    if on_total:
        on_total(len(inputs))
    try:
        for rows in _engine_loop(options)(inputs, options, processor):
            for r in rows:
                writer.write(r)
            writer.close()
            _account(result, rows, rule_sets)
            if progress:
                progress(result.processed, result.errors, len(rows))
    except KeyboardInterrupt:
        result.interrupted = True
    result.seconds = time.perf_counter() - start
    return result


def _account(result: ScanResult, rows: Sequence[Mapping[str, Any]], rule_sets: Sequence[Any]) -> None:
    for r in rows:
        result.processed += 1
        if r.get("status") == "ok":
            result.ok += 1
            bad = r.get("bad_pct")
            if bad is not None and not (isinstance(bad, float) and math.isnan(bad)):
                heapq.heappush(result.worst, (float(bad), r["path"]))
                if len(result.worst) > 10:
                    heapq.heappop(result.worst)
        else:
            result.errors += 1
            if len(result.error_samples) < 10:
                result.error_samples.append((r["path"], r.get("error") or ""))
        for rs in rule_sets:
            score = r.get(f"score_{rs.name}")
            if score is not None and not (isinstance(score, float) and math.isnan(score)):
                result.below.setdefault(rs.name, []).append((r["path"], float(score)))


def _run_local(todo: Sequence[InputFile], options: ScanOptions,
               processor: BatchProcessor) -> Iterator[list[dict[str, Any]]]:
    """The local engine: yields finished rows (files on disk) batch by batch, in submission order.

    Three stages overlap: a decode pool (OpenCV releases the GIL), the model on this thread, and a
    finishing pool (regions, statistics, rules, overlays, maps). Queues are bounded: at most `window`
    decodes in flight, at most a few batches waiting to be finished.
    """
    workers = options.workers or _default_workers()
    working = processor.analyzer.working_long_side
    batcher = Batcher(options.batch_size, working)
    window = max(2 * workers, 2 * options.batch_size)
    pending: deque[list[Future]] = deque()
    max_pending = 3

    def ready() -> Iterator[list[dict[str, Any]]]:
        while pending and all(f.done() for f in pending[0]):
            yield [f.result() for f in pending.popleft()]

    with _DecodePool(workers, thread_name_prefix="decode") as decode_pool, \
            ThreadPoolExecutor(workers, thread_name_prefix="finish") as finish_pool:
        queue: deque[tuple[InputFile, Future]] = deque()
        it = iter(todo)
        exhausted = False
        try:
            while True:
                while not exhausted and len(queue) < window:
                    try:
                        item = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    queue.append((item, decode_pool.submit(decode_item, item, options, working)))
                if not queue:
                    break
                item, fut = queue.popleft()
                try:
                    decoded = fut.result(timeout=options.file_timeout)
                except FutureTimeout:
                    if not fut.cancel():
                        decode_pool.abandoned = True
                    decoded = Decoded(item, error=f"decoding took longer than {options.file_timeout:g} s; skipped")
                if decoded.image is None:
                    pending.append([_done(processor.error_rows([decoded])[0])])
                else:
                    batch = batcher.add(decoded)
                    if batch:
                        pending.append(processor.submit(batch, finish_pool))
                yield from ready()
                while len(pending) > max_pending:  # bound the finishing backlog
                    yield [f.result() for f in pending.popleft()]
            for batch in batcher.drain():
                pending.append(processor.submit(batch, finish_pool))
            while pending:
                yield [f.result() for f in pending.popleft()]
        except BaseException:
            for _, f in queue:
                f.cancel()
            for futures in pending:
                for f in futures:
                    f.cancel()
            raise


class _DecodePool:
    """The decode threads: a small executor whose workers are *daemon* threads.

    A thread cannot be killed, and a decoder can get stuck for good (a FIFO, a hung network mount, a codec
    bug). The scan abandons such a decode after ``--file-timeout``; this pool then neither waits for it when
    the scan ends (``abandoned``) nor holds the interpreter at exit — ``ThreadPoolExecutor`` joins its
    workers at exit, so a library caller's program would hang there. Decoding only reads, so a daemon
    thread stopped at exit loses nothing.
    """

    def __init__(self, workers: int, thread_name_prefix: str = "decode") -> None:
        import queue

        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._closed = False
        self.abandoned = False
        self._threads = [threading.Thread(target=self._work, name=f"{thread_name_prefix}_{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise RuntimeError("cannot submit to a decode pool after shutdown")
        future: Future = Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller through the future, like ThreadPoolExecutor
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        import queue

        self._closed = True
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()

    def __enter__(self) -> "_DecodePool":
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        self.shutdown(wait=not self.abandoned, cancel_futures=True)
        return False


def _settle(rows: list[dict[str, Any]], futures: list[Future]) -> list[dict[str, Any]]:
    """Wait for a batch's file writes; a failed write becomes an error on its row, not a crash."""
    errors = []
    for f in futures:
        try:
            f.result()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            errors.append(str(exc))
    if errors:
        for r in rows:
            if r.get("status") == "ok" and (r.get("overlay_path") or r.get("map_path")):
                r["error"] = f"output file not written: {errors[0]}"
    return rows


# ---------------------------------------------------------------------------------------------- API


def analyze_image(image: np.ndarray | str | os.PathLike, *, model: str | None = None,
                  analyzer: Analyzer | None = None, **analyzer_options: Any) -> np.ndarray:
    """The residual map of one photo (an RGB float array in [0, 1], a uint8 RGB array, or a path).

    Returns an H×W float32 map in [-1, 1] (``r < 0`` over-exposed, ``r > 0`` under-exposed) at the image's
    size (for a path: at its analysis resolution after EXIF orientation).
    """
    if isinstance(image, (str, os.PathLike)):
        rgb = decode_file(image, target_long_side=analyzer_options.get("working_long_side", 512),
                          analysis_long_side=10**9).rgb
    else:
        rgb = np.asarray(image)
        if rgb.dtype == np.uint8:
            rgb = rgb.astype(np.float32) / 255.0
        rgb = rgb.astype(np.float32)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
    own = analyzer is None
    analyzer = analyzer or create_analyzer(model, **analyzer_options)
    try:
        return analyzer.analyze(rgb)
    finally:
        if own:
            analyzer.close()


__all__ = ["BatchProcessor", "ScanError", "ScanOptions", "ScanResult", "analyze_image", "scan",
           "decode_item", "Decoded", "EXIF_COLUMNS"]
