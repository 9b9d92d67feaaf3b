"""The scan's orchestration: discovery → an engine running the unit of work → the output folder's state.

* The unit of work — a batch of decoded photos in, report rows (+ overlays, maps) out — is
  :class:`exposure_cli.processing.BatchProcessor`.
* Engines run it (:mod:`exposure_cli.engines`: local threads, or Ray); this module picks one by name and
  never imports an engine's own module.
* The output folder's state — lock, journal, resume keys, finalisation, link rules — is
  :mod:`exposure_cli.outdir`, one module with one contract.

:func:`scan` (the library behind ``exposure scan``) ties them together; :func:`analyze_image` maps one photo.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._version import __version__
from .analyzers import Analyzer, create_analyzer
from .analyzers.base import DEFAULT_WORKING_LONG_SIDE
from .decoding import configure_decoder_limits, decode_file
from .discovery import InputFile, discover, readable_text
from .engines import engine_loop
from .errors import ScanError
from .exif import EXIF_COLUMNS
from .outdir import OutputFolder, check_inputs_vs_out, output_path, plan_inputs
from .processing import (BatchProcessor, Decoded, ScanOptions, decode_item, fingerprint, legacy_facts)
from .report.schema import ReportFormat, base_columns, rule_columns
from .stats import Thresholds


def regions_for(option: Any, rule_sets: Sequence[Any]) -> tuple[str, ...]:
    """The regions a scan computes.

    ``option``: False/"none" → none; True/"all" → all (the report can be rescored later under any rule
    set); "auto" → the regions the rule sets read and what those depend on (all when there are no rule
    sets); or region names. ``exposure scan`` asks for "auto" when ``--rules`` names rule sets, else all.
    A rule set whose source cannot be read (a Python rule set) counts as reading every region.
    """
    import re

    from .regions import REGION_NAMES, closure

    if option is False or option in ("none", "", None):
        return ()
    if option is True or option == "all":
        return REGION_NAMES
    if option == "auto":
        if not rule_sets:
            return REGION_NAMES
        used: set[str] = set()
        for rs in rule_sets:
            conditions = getattr(rs, "conditions", None)
            if conditions is None:  # a Python rule set: what it reads cannot be known
                return REGION_NAMES
            texts = [str(getattr(rs, "on_missing", ""))]
            texts += [str(v) for v in getattr(rs, "define_sources", {}).values()]
            for c in conditions:
                texts += [c.when_source, c.points_source, c.on_missing, *c.regions]
            text = " ".join(texts)
            used |= {n for n in REGION_NAMES if re.search(rf"(?<![A-Za-z]){n}(?![A-Za-z])", text)}
        return tuple(n for n in REGION_NAMES if n in used)
    if option == "all":
        return REGION_NAMES
    names = [option] if isinstance(option, str) else list(option)
    names = [n.strip() for part in names for n in str(part).split(",") if n.strip()]
    unknown = [n for n in names if n not in REGION_NAMES]
    if unknown:
        raise ScanError(f"unknown region {', '.join(unknown)}; regions: {', '.join(REGION_NAMES)}")
    closure(names)
    return tuple(n for n in REGION_NAMES if n in names)



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
    #: The most badly exposed photos: (bad_pct, path, ev_correction), a heap of the 10 worst.
    worst: list[tuple[float, str, float]] = field(default_factory=list)
    #: The lowest scores under the first rule set: (score, path, grade, first reason, ev_correction), lowest
    #: first.
    lowest: list[tuple[float, str, str, str, float]] = field(default_factory=list)
    below: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # rule → [(path, score)]
    error_samples: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    rule_names: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------------------------------- scan


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
        "regions": _regions_meta(options.regions),
        "region_detectors": _region_detectors() if options.regions else {},
        "roots": [readable_text(str(r)) for r in roots],  # valid text even for a root that is not UTF-8
        "residual_convention": "r = grey(ideal) - grey(observed) in [-1, 1]; r<0 over-exposed, r>0 under-exposed",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _regions_meta(regions: Any) -> Any:
    """True (all regions), False (none), or the list of regions computed (the others: NaN area)."""
    from .regions import REGION_NAMES

    if isinstance(regions, bool):
        return regions
    names = list(regions or ())
    return True if tuple(names) == REGION_NAMES else (names or False)


def _region_detectors() -> dict[str, str]:
    from .regions import detector_status

    return detector_status()


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
    configure_decoder_limits(options.max_pixels)
    paths = [str(p) for p in paths]
    out_dir = resolve_out(options)
    if out_dir is None and (options.overlays or options.maps):
        raise ScanError("--overlays and --maps need an output folder (--out DIR), not a pipe")
    if out_dir is None and options.format in (ReportFormat.parquet, ReportFormat.xlsx) and options.out == "-":
        raise ScanError(f"{options.format.value} cannot be streamed to a pipe; use --format csv or --format jsonl "
                        "with --out -")
    if options.format == ReportFormat.xlsx:
        from .report.writers import MissingExtraError, require_xlsx

        try:  # before the scan, not after it
            require_xlsx()
        except MissingExtraError as exc:
            raise ScanError(str(exc)) from None
    distributed = _check_engine(options, analyzer)

    rule_sets = []
    if options.rules:
        from .rules import load_rule_sets

        rule_sets = load_rule_sets(list(options.rules))
    rule_names = [rs.name for rs in rule_sets]
    options.regions = regions_for(options.regions, rule_sets)
    own_analyzer = analyzer is None
    if analyzer is None:
        # With a distributed engine the workers load their own models; this one only describes the
        # analyzer for the report's metadata, so keep it off the GPU the workers need.
        analyzer = create_analyzer(options.model, weights=options.weights,
                                   device="cpu" if distributed else options.device,
                                   working_long_side=options.working_long_side,
                                   batch_size=options.batch_size, compile=options.compile,
                                   **({"runtime": options.runtime} if options.runtime else {}))
    try:
        if out_dir is None:
            with _model_threads(options, distributed), long_lived_objects_frozen():
                return _scan_to_stream(paths, options, analyzer, rule_sets, rule_names, progress, on_total,
                                       stream or sys.stdout)
        check_inputs_vs_out(paths, out_dir)
        with OutputFolder(out_dir) as folder, _model_threads(options, distributed), long_lived_objects_frozen():
            folder.lock()
            return _scan_to_dir(paths, options, folder, analyzer, rule_sets, rule_names, progress, on_total)
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


_FROZEN_LOCK = threading.Lock()
_FROZEN_DEPTH = 0


@contextlib.contextmanager
def long_lived_objects_frozen():
    """Keep the objects that exist when a scan starts out of Python's cyclic garbage collector until it ends.

    A process that has imported torch and loaded a model tracks ~265,000 objects (modules, functions,
    tensors' Python wrappers); every full (generation-2) collection walks all of them, ~170 ms on this
    machine, and a scan's own allocations trigger such collections as it runs. None of those objects is
    garbage the scan makes, so :func:`gc.freeze` moves them to the permanent generation for the scan's
    duration: collections then walk only what the scan allocated (docs/PERFORMANCE.md, "Garbage
    collection"). Outputs are unaffected; the objects are handed back (:func:`gc.unfreeze`) when the last
    concurrent scan in this process ends, so a long-lived caller (a notebook, a service) collects them as
    before.
    """
    global _FROZEN_DEPTH
    with _FROZEN_LOCK:
        # a caller that froze objects itself (no scan of ours running) manages gc.freeze(): leave it alone
        owner = _FROZEN_DEPTH > 0 or gc.get_freeze_count() == 0
        if owner:
            if _FROZEN_DEPTH == 0:
                gc.freeze()
            _FROZEN_DEPTH += 1
    try:
        yield
    finally:
        if owner:
            with _FROZEN_LOCK:
                _FROZEN_DEPTH -= 1
                if _FROZEN_DEPTH == 0:
                    gc.unfreeze()


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


def _inputs(paths: Sequence[str], options: ScanOptions, out_dir: Path | None) -> list[InputFile]:
    from .engines.uris import discover_uris, is_uri  # no Ray here: pyarrow filesystems, lazily

    if any(is_uri(p) for p in paths):
        return list(discover_uris(paths, include=options.include, exclude=options.exclude,
                                  recursive=options.recursive, include_hidden=options.include_hidden))
    return list(discover(paths, include=options.include, exclude=options.exclude,
                         recursive=options.recursive, include_hidden=options.include_hidden,
                         follow_symlinks=options.follow_symlinks,
                         exclude_dirs=[out_dir] if out_dir is not None else []))


def _scan_to_dir(paths, options, folder: OutputFolder, analyzer, rule_sets, rule_names, progress,
                 on_total) -> ScanResult:
    start = time.perf_counter()
    out_dir = folder.out
    meta = scan_metadata(analyzer, options, rule_names, paths)
    done = folder.prepare(meta, resume=options.resume, overwrite=options.overwrite)
    folder.write_scan_meta(meta)
    inputs = _inputs(paths, options, out_dir)
    plan = plan_inputs(inputs, done, retry_errors=options.retry_errors, fingerprint=fingerprint,
                       legacy_facts=legacy_facts)
    todo = plan.todo
    result = ScanResult(total=len(inputs), skipped=plan.skipped, rule_names=list(rule_names))
    columns = base_columns() + rule_columns(rule_names)
    journal = folder.journal()
    journal.open()
    processor = BatchProcessor(analyzer, options.thresholds, rule_sets, out_dir, options.overlays,
                               options.maps, options.regions, options.overlay_style, options.maps_resolution)
    if on_total:
        on_total(len(todo))
    failed = False
    try:
        for rows in engine_loop(options.engine)(todo, options, processor):
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
            result.report_path = folder.finalize(options.format, columns, meta, plan.keys)
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
        for rows in engine_loop(options.engine)(inputs, options, processor):
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
                heapq.heappush(result.worst, (float(bad), r["path"], _ev_correction(r)))
                if len(result.worst) > 10:
                    heapq.heappop(result.worst)
        else:
            result.errors += 1
            if len(result.error_samples) < 10:
                result.error_samples.append((r["path"], r.get("error") or ""))
        for i, rs in enumerate(rule_sets):
            score = r.get(f"score_{rs.name}")
            if score is not None and not (isinstance(score, float) and math.isnan(score)):
                result.below.setdefault(rs.name, []).append((r["path"], float(score)))
                if i == 0:
                    _keep_lowest(result.lowest, float(score), r, rs.name)


def _ev_correction(row: Mapping[str, Any]) -> float:
    """The row's stops of correction (NaN when the analyzer gave none)."""
    value = row.get("ev_correction")
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _keep_lowest(lowest: list, score: float, row: Mapping[str, Any], name: str, keep: int = 5) -> None:
    reason = str(row.get(f"reasons_{name}") or "").split("; ")[0]
    entry = (score, str(row["path"]), str(row.get(f"grade_{name}") or ""), reason, _ev_correction(row))
    if len(lowest) < keep or entry < lowest[-1]:
        lowest.append(entry)
        lowest.sort()
        del lowest[keep:]


# ---------------------------------------------------------------------------------------------- API


def analyze_image(image: np.ndarray | str | os.PathLike, *, model: str | None = None,
                  analyzer: Analyzer | None = None, **analyzer_options: Any) -> np.ndarray:
    """The residual map of one photo (an RGB float array in [0, 1], a uint8 RGB array, or a path).

    Returns an H×W float32 map in [-1, 1] (``r < 0`` over-exposed, ``r > 0`` under-exposed) at the image's
    size (for a path: at its analysis resolution after EXIF orientation).
    """
    if isinstance(image, (str, os.PathLike)):
        target = analyzer_options.get("working_long_side") or DEFAULT_WORKING_LONG_SIDE
        rgb = decode_file(image, target_long_side=target, analysis_long_side=10**9).rgb
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


__all__ = ["BatchProcessor", "ScanError", "regions_for", "ScanOptions", "ScanResult", "analyze_image", "scan",
           "decode_item", "Decoded", "EXIF_COLUMNS", "output_path"]
