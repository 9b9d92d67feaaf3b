"""``exposure scan``: the end-to-end batch audit."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from ..discovery import missing_inputs
from ..engines import Engine
from ..report.overlays import OverlayStyle
from ..runtimes import Runtime
from ..report.schema import DEFAULT_RULES, ReportFormat

#: Exit codes of ``exposure scan`` (the README has the table; ``rescore`` and ``report`` use 0, 1 and 2 alike).
EXIT_OK = 0
EXIT_FAILED = 1  # a check asked for failed (--fail-on-error, --fail-under), or the scan could not finish
EXIT_USAGE = 2  # bad option or value, unknown rule set or model, a named input that does not exist
EXIT_NOTHING_FOUND = 3  # the inputs hold no photos
EXIT_ALL_FAILED = 4  # every file scanned in this run failed
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM; the partial report is valid


class MapsResolution(str, Enum):
    full = "full"
    analysis = "analysis"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def _device(value: str) -> str:
    v = value.strip().lower()
    if v in ("auto", "cpu", "mps", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise typer.BadParameter(f"{value!r} is not a device; use auto, cpu, cuda, cuda:N or mps")


def _fail_under(values: List[str]) -> dict[str, float]:
    out = {}
    for v in values:
        name, sep, score = v.partition("=")
        try:
            out[name.strip()] = float(score)
        except ValueError:
            raise typer.BadParameter(f"{v!r}: expected NAME=SCORE, e.g. portrait=60") from None
        if not sep or not name.strip():
            raise typer.BadParameter(f"{v!r}: expected NAME=SCORE, e.g. portrait=60")
    return out


def _read_stdin_paths() -> list[str]:
    data = sys.stdin.read()
    sep = "\0" if "\0" in data else "\n"
    return [p for p in (s.strip("\r") for s in data.split(sep)) if p]


def register(app: typer.Typer) -> None:
    @app.command(
        "scan",
        epilog=(
            "Examples:\n\n"
            "  exposure scan photos/ --out audit/\n\n"
            "  exposure scan photos/ more/ one.jpg --out audit/ --overlays --maps\n\n"
            "  exposure scan photos/ --rules portrait --rules ./acme.toml --fail-under portrait=60\n\n"
            "  find . -name '*.jpg' | exposure scan - --out - --format csv > report.csv\n\n"
            "  exposure scan photos/ --out audit/ --resume\n\n"
            "  exposure scan s3://bucket/photos/ --out audit/ --engine ray --ray-address auto"
        ),
    )
    def scan_command(
        paths: List[str] = typer.Argument(..., help="Folders and files to scan; '-' reads paths from stdin."),
        out: str = typer.Option("exposure-report", "--out", "-o",
                                help="Output folder (report, overlays, maps); '-' streams CSV/JSONL rows to stdout."),
        fmt: ReportFormat = typer.Option(ReportFormat.parquet, "--format", "-f", help="Report format (xlsx: pip install 'exposure-cli[xlsx]')."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Analyzer name (default: eat when its weights ship, else baseline)."),
        weights: Optional[Path] = typer.Option(None, "--weights", help="Model weights (.safetensors); default: $EXPOSURE_WEIGHTS, then the shipped weights."),
        device: str = typer.Option("auto", "--device", callback=_device, help="auto, cpu, cuda, cuda:N or mps."),
        batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Photos per model batch."),
        workers: int = typer.Option(0, "--workers", "-j", min=0, help="Decode threads (0: one per core, at least 2)."),
        threads: int = typer.Option(0, "--threads", min=0, help="Threads for the model on CPU (0: half the cores, at least 1)."),
        compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (same as --runtime compile)."),
        runtime: Optional[Runtime] = typer.Option(None, "--runtime", case_sensitive=False, help="Inference runtime for the eat model (default: eager PyTorch; onnxruntime and openvino need their extras, see README)."),
        working_size: Optional[int] = typer.Option(None, "--working-size", min=64, help="Long side the model works at (default: the weights card's, 320 for the shipped weights; 512 for the baseline)."),
        over: float = typer.Option(0.1, "--over-threshold", min=0.001, max=1.0, help="A pixel is over-exposed when it is this much brighter than ideal (grey-level difference ÷ 255)."),
        under: float = typer.Option(0.1, "--under-threshold", min=0.001, max=1.0, help="A pixel is under-exposed when it is this much darker than ideal."),
        severe: float = typer.Option(0.3, "--severe-threshold", min=0.001, max=1.0, help="Threshold for the severe_* shares."),
        rules: List[str] = typer.Option([], "--rules", "-r", help="Rule set (preset name or TOML file); repeatable. Default: the 'default' preset."),
        no_rules: bool = typer.Option(False, "--no-rules", help="No scores: statistics only."),
        fail_under: List[str] = typer.Option([], "--fail-under", help="NAME=SCORE: exit 1 if any photo scores below SCORE under rule set NAME."),
        overlays: bool = typer.Option(False, "--overlays", help="Write clipping-warning overlays to OUT/overlays/ (photo.jpg → photo.overlay.jpg): solid red over-exposed, blue under-exposed, stronger where worse."),
        overlay_style: OverlayStyle = typer.Option(OverlayStyle.solid, "--overlay-style", help="solid colour, or zebra stripes that keep the photo visible between them."),
        maps: bool = typer.Option(False, "--maps", help="Write residual maps (float16 .npy) to OUT/maps/, at the photo's full upright size (24 MB per 12 MP photo)."),
        maps_resolution: MapsResolution = typer.Option(MapsResolution.full, "--maps-resolution", help="full: the photo's decoded, upright size; analysis: the size the statistics are computed at (long side 1024)."),
        xmp: bool = typer.Option(False, "--xmp", help="Write XMP sidecars (rating, colour label, metrics, Exposure correction) to OUT/xmp/ for Lightroom, darktable, digiKam."),
        xmp_next_to_photos: bool = typer.Option(False, "--xmp-next-to-photos", help="Write the XMP sidecars beside the photos instead, merging into existing ones (the original is kept as .bak)."),
        regions: bool = typer.Option(True, "--regions/--no-regions", help="Per-region statistics (face, person, subject, background, sky): all of them, or with --rules only those the rule sets read (the others are NaN)."),
        resume: bool = typer.Option(False, "--resume", help="Continue a scan in OUT, skipping photos already done."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Discard a previous scan in OUT and start over."),
        retry_errors: bool = typer.Option(False, "--retry-errors", help="With --resume: scan photos that failed before again."),
        include: List[str] = typer.Option([], "--include", help="Only paths matching this glob; repeatable."),
        exclude: List[str] = typer.Option([], "--exclude", help="Skip paths matching this glob; repeatable."),
        hidden: bool = typer.Option(False, "--hidden", help="Also scan hidden files and folders."),
        follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="Follow symlinks out of the scanned folders."),
        recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Descend into sub-folders."),
        max_pixels: int = typer.Option(250_000_000, "--max-pixels", min=1, help="Refuse images declaring more pixels (decompression-bomb guard)."),
        file_timeout: float = typer.Option(120.0, "--file-timeout", min=0.1, help="Seconds allowed to decode one file."),
        fail_on_error: bool = typer.Option(False, "--fail-on-error", help="Exit 1 if any file failed."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="List every failed file in the summary."),
        engine: Engine = typer.Option(Engine.local, "--engine", help="Where the work runs: local threads, or Ray Data (a local Ray, or a cluster with --ray-address; needs the ray extra). See docs/SCALE.md."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --engine ray: the cluster to join ('auto', 'HOST:6379', 'ray://HOST:10001'); default: start a private local Ray."),
        num_gpus_per_worker: Optional[float] = typer.Option(None, "--num-gpus-per-worker", min=0.0, help="With --engine ray: GPUs per worker (0.5: two workers share a GPU); default 1 when the cluster has GPUs, else 0."),
        concurrency: int = typer.Option(0, "--concurrency", min=0, help="With --engine ray: number of workers (model copies); 0: one per GPU, else one per 2 CPUs."),
    ) -> None:
        """Scan photos: per-pixel exposure maps, statistics, vendor scores, a report.

        Writes OUT/report.parquet (or .csv/.jsonl/.xlsx) with one row per input file — failures included, with
        status "error" and a readable error — plus overlays and maps when asked.
        """
        from ..pipeline import ScanError, ScanOptions, scan
        from ..stats import Thresholds
        from .stdio import stdout_for_report
        from .ui import ScanProgress, make_console, print_summary

        limits = _fail_under(fail_under)
        if no_rules and rules:
            raise typer.BadParameter("--no-rules and --rules contradict each other", param_hint="--no-rules")
        named_rules = bool(rules)
        rules = [] if no_rules else (list(rules) or list(DEFAULT_RULES))
        # regions: with rule sets named, only those they read; otherwise all, so the report can be rescored
        regions_option = ("auto" if named_rules and not no_rules else True) if regions else False
        if engine is not Engine.local:
            from ..engines import ClusterUnreachable, EngineUnavailable, check_engine

            try:
                check_engine(engine, ray_address)
            except EngineUnavailable as exc:  # fail before any work, never fall back silently
                hint = "--ray-address" if isinstance(exc, ClusterUnreachable) else "--engine"
                raise typer.BadParameter(str(exc), param_hint=hint) from None
        elif ray_address or num_gpus_per_worker is not None or concurrency:
            raise typer.BadParameter("--ray-address, --num-gpus-per-worker and --concurrency need --engine ray")
        if runtime is not None:
            from ..runtimes import RuntimeUnavailable, check_available

            try:
                check_available(runtime)
            except RuntimeUnavailable as exc:  # before any work, never a silent fallback to another runtime
                raise typer.BadParameter(str(exc), param_hint="--runtime") from None
        if rules:
            from ..rules import load_rule_sets

            try:
                names = [rs.name for rs in load_rule_sets(list(rules))]
            except Exception as exc:  # validation errors name the file, field and line
                raise typer.BadParameter(str(exc), param_hint="--rules") from None
            unknown = [n for n in limits if n not in names]
            if unknown:
                raise typer.BadParameter(f"{', '.join(unknown)} not among the --rules ({', '.join(names)})",
                                         param_hint="--fail-under")
        elif limits:
            raise typer.BadParameter("needs rules (drop --no-rules)", param_hint="--fail-under")
        missing = missing_inputs([p for p in paths if p != "-"])
        if missing:  # like grep and rsync: a named input that is not there is an error, before any work
            for p in missing:
                typer.secho(f"Error: {p}: no such file or folder", err=True, fg=typer.colors.RED)
            raise typer.Exit(EXIT_USAGE)
        if "-" in paths:
            paths = [p for p in paths if p != "-"] + _read_stdin_paths()
            if not paths:
                raise typer.BadParameter("no paths on stdin", param_hint="PATHS")
        try:
            thresholds = Thresholds(over=over, under=under, severe=severe)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        to_stdout = out == "-"
        if (xmp or xmp_next_to_photos) and to_stdout:
            raise typer.BadParameter("needs an output folder (--out DIR), not a pipe", param_hint="--xmp")
        if to_stdout and fmt == ReportFormat.parquet:
            fmt = ReportFormat.csv
        if fmt == ReportFormat.xlsx:
            from ..report.writers import MissingExtraError, require_xlsx

            try:
                require_xlsx()
            except MissingExtraError as exc:
                raise typer.BadParameter(str(exc), param_hint="--format") from None
        options = ScanOptions(
            out=out, format=fmt, model=model, weights=str(weights) if weights else None, device=device,
            batch_size=batch_size, workers=workers, working_long_side=working_size, thresholds=thresholds,
            rules=rules, overlays=overlays, overlay_style=overlay_style.value, maps=maps,
            maps_resolution=maps_resolution.value, regions=regions_option, resume=resume, overwrite=overwrite,
            retry_errors=retry_errors, include=include, exclude=exclude, include_hidden=hidden,
            follow_symlinks=follow_symlinks, recursive=recursive, max_pixels=max_pixels,
            file_timeout=file_timeout, torch_threads=threads, compile=compile_model,
            runtime=runtime.value if runtime is not None else None, engine=engine.value, ray_address=ray_address,
            num_gpus_per_worker=num_gpus_per_worker, concurrency=concurrency,
        )
        console = make_console(stderr=True)
        show = not quiet
        bar = ScanProgress(console, enabled=show)
        previous_sigterm = _sigterm_as_interrupt()
        try:
            # --out -: stdout carries the report only; Ray's and any library's prints go to stderr meanwhile
            with bar, stdout_for_report(to_stdout) as report_stream:
                result = scan(paths, options, progress=bar.advance, on_total=bar.start, stream=report_stream)
                bar.finish(result.images_per_second)  # the bar ends on the summary's figure
        except ScanError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(EXIT_FAILED)
        except Exception as exc:
            from ..weights import WeightsError
            from ..registry import RegistryError

            if isinstance(exc, (RegistryError, WeightsError, FileNotFoundError, ValueError)):
                console.print(f"[bold red]error:[/] {exc}", highlight=False)
                raise typer.Exit(EXIT_USAGE)
            raise
        finally:
            _restore_sigterm(previous_sigterm)
        if show:
            print_summary(console, result, verbose=verbose)
        if (xmp or xmp_next_to_photos) and not result.interrupted and result.report_path is not None:
            _write_xmp(console, result.report_path, Path(out), rules, next_to_photos=xmp_next_to_photos, show=show)
        if result.interrupted:
            console.print("[yellow]interrupted[/]: the partial report is valid; continue with --resume")
            _exit(EXIT_INTERRUPTED)
        if result.total == 0:  # like pytest's "no tests collected": an empty run is not a success
            where = ", ".join(paths) if len(paths) <= 3 else f"{len(paths)} inputs"
            console.print(f"[bold red]error:[/] no photos found in {where} "
                          "(looked for JPEG, PNG, TIFF, WebP, BMP, GIF, HEIC and RAW files; see --include, --hidden)",
                          highlight=False)
            _exit(EXIT_NOTHING_FOUND)
        if result.processed and not result.ok:
            console.print(f"[bold red]error:[/] every file scanned failed ({result.errors} of {result.processed}); "
                          "the report lists why", highlight=False)
            _exit(EXIT_ALL_FAILED)
        code = EXIT_OK
        if fail_on_error and result.errors:
            code = EXIT_FAILED
        for name, limit in limits.items():
            failing = [(p, s) for p, s in result.below.get(name, []) if s < limit]
            if failing:
                code = EXIT_FAILED
                if show:
                    console.print(f"[red]{len(failing)} photo(s) score below {limit:g} on {name}[/]")
        _exit(code)


def _write_xmp(console, report_path: Path, out: Path, rules: List[str], next_to_photos: bool, show: bool) -> None:
    """Sidecars for every photo of the finished report (see exposure_cli.report.xmp)."""
    from ..report.writers import read_report
    from ..report.xmp import write_xmp_sidecars
    from ..rules import load_rule_sets

    df, metadata = read_report(report_path)
    done = write_xmp_sidecars(df, metadata, out_dir=out, next_to_photos=next_to_photos,
                              rule_sets=load_rule_sets(list(rules[:1])) if rules else ())
    where = "beside the photos" if next_to_photos else str(out / "xmp")
    if show:
        console.print(f"xmp: {len(done.written)} sidecars written and {len(done.merged)} merged {where}"
                      + (f", {len(done.refused)} left untouched" if done.refused else ""), highlight=False)
    for key, why in done.refused[:10]:
        console.print(f"[yellow]xmp: {key}: sidecar left untouched: {why}[/]", highlight=False)


def _sigterm_as_interrupt():
    """Treat SIGTERM (what schedulers send first) like Ctrl-C: the partial report gets written."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _exit(code: int) -> None:
    """Exit with `code`; if a decode abandoned after --file-timeout is still stuck, leave at once.

    The report is already written. The decode threads are daemons, so the interpreter would not wait for
    them anyway; leaving with ``os._exit`` also skips interpreter finalization while such a thread is still
    inside a C decoder.
    """
    import threading

    stuck = [t for t in threading.enumerate() if t.name.startswith("decode") and t.is_alive()]
    if stuck and threading.current_thread() is threading.main_thread() and "pytest" not in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)
