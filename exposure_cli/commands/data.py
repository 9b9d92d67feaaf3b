"""``exposure data``: build the real-photo corpus, look at it, summarise it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

data_app = typer.Typer(
    name="data",
    help="Build and inspect the training corpus (real photos + simulated exposure errors).",
    no_args_is_help=True,
)


class Split(str, Enum):
    train = "train"
    val = "val"


class SheetKind(str, Enum):
    samples = "samples"
    val = "val"
    kept = "kept"
    hdr = "hdr"


def _usage_error(message: str) -> None:
    from .ui import usage_error

    usage_error(message)


def _sources(values: Optional[List[str]]) -> Optional[list[str]]:
    if not values:
        return None
    from ..data.sources import SOURCES
    from ..registry import RegistryError

    for v in values:
        try:
            SOURCES.get(v)
        except RegistryError as exc:
            _usage_error(str(exc))
    return list(values)


@data_app.command(
    "build",
    epilog=(
        "Examples:\n\n"
        "  exposure data build corpus/\n\n"
        "  exposure data build corpus/ --source skimage --source sklearn --no-val\n\n"
        "  exposure data build corpus/ --rescan --manifest-out new-manifest.json"
    ),
)
def build_command(
    out: Path = typer.Argument(..., help="Corpus folder to write (photos/, hdr/, val/, index.json)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Manifest to reproduce [default: the one shipped in the package]."),
    source: Optional[List[str]] = typer.Option(None, "--source", help="Only this source (repeatable)."),
    long_side: int = typer.Option(768, "--long-side", min=64, help="Kept photos are stored with at most this long side."),
    val: bool = typer.Option(True, "--val/--no-val", help="Also render the fixed validation set (IEA40K layout) into OUT/val."),
    rescan: bool = typer.Option(False, "--rescan", help="Re-enumerate the packages and re-classify every file (keeps manual overrides); writes --manifest-out."),
    manifest_out: Optional[Path] = typer.Option(None, "--manifest-out", help="Where --rescan writes the new manifest [default: OUT/manifest.json]."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Exit 1 when a file is missing or its sha256 differs from the manifest."),
) -> None:
    """Fetch the source packages and build the corpus from the committed manifest.

    Debian packages are fetched with `apt-get download` (run `apt-get update` first on a fresh machine)
    and unpacked with `dpkg-deb -x` into OUT/_packages; Python sources come from the installed
    scikit-image and scikit-learn. Every file's sha256 is checked against the manifest; mismatches are
    listed and make the command fail (unless --no-strict). HDR radiance maps need `pip install OpenEXR`.
    """
    from ..data.corpus import DEFAULT_MANIFEST, ManifestMismatch, build, load_manifest, scan, write_manifest
    from ..data.sources import SourceError

    sources = _sources(source)
    manifest_path = manifest or DEFAULT_MANIFEST
    if not manifest_path.exists():
        _usage_error(f"manifest {manifest_path} not found")
    loaded = load_manifest(manifest_path)
    out.mkdir(parents=True, exist_ok=True)
    if rescan:
        try:
            loaded = scan(out / "_packages", sources, loaded, log=typer.echo)
        except SourceError as exc:
            typer.secho(str(exc), err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None
        target = manifest_out or out / "manifest.json"
        write_manifest(loaded, target)
        typer.echo(f"manifest written: {target}")
    try:
        report = build(out, loaded, long_side=long_side, sources=sources, strict=strict, log=typer.echo)
    except ImportError as exc:  # an optional reader (OpenEXR for HDR maps) is missing
        typer.secho(f"{exc} (or leave the HDR source out: --source ... without blender-hdr)", err=True,
                    fg=typer.colors.RED)
        raise typer.Exit(1) from None
    except ManifestMismatch as exc:
        typer.secho(str(exc), err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    typer.echo(f"corpus: {report.kept} kept files ({report.hdr_crops} HDR crops), {report.rejected} rejected → {out}")
    if val:
        from ..data.valset import write_validation_set

        write_validation_set(out, log=typer.echo)


@data_app.command(
    "brackets",
    epilog=(
        "Examples:\n\n"
        "  exposure data brackets corpus/brackets --mirrors /work/.mirror\n\n"
        "  exposure data brackets /tmp/b --mirrors mirrors/ --scene drakeguan__desktop01 --no-strict"
    ),
)
def brackets_command(
    out: Path = typer.Argument(Path("corpus/brackets"), help="Folder to write (index.json, <scene>/, lockbox/)."),
    mirrors: Path = typer.Option(..., "--mirrors", help="Folder of bare Git mirrors, one per repository: <owner>+<name>/repo."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Bracket manifest [default: the one shipped in the package]."),
    scene: Optional[List[str]] = typer.Option(None, "--scene", help="Only this scene id (repeatable)."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Stop with exit 1 at the first scene that fails (sha256 mismatch, missing file, misalignment); --no-strict lists failures and builds the rest."),
) -> None:
    """Build the real exposure brackets: verify each frame's sha256, align (MTB), fuse the ideal (Mertens)
    and write per-frame residual labels, split into train / val / lockbox by scene."""
    from ..data.brackets import DEFAULT_MANIFEST, BracketError, build, load_manifest

    manifest_path = manifest or DEFAULT_MANIFEST
    if not manifest_path.exists():
        _usage_error(f"manifest {manifest_path} not found")
    if not mirrors.is_dir():
        _usage_error(f"--mirrors {mirrors} is not a folder")
    try:
        report = build(out, load_manifest(manifest_path), mirrors, scenes=scene or None, strict=strict, log=typer.echo)
    except BracketError as exc:
        typer.secho(str(exc), err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    for split in ("train", "val", "lockbox"):
        cats = ", ".join(f"{c} {n}" for c, n in report.categories[split].items() if n)
        typer.echo(f"{split:8s} {report.built[split]:3d} scenes ({cats})")
    typer.echo(f"{report.frames} frames → {out}")
    if report.failed:
        typer.secho(f"{len(report.failed)} scene(s) failed:", err=True, fg=typer.colors.RED)
        for f in report.failed:
            typer.secho(f"  {f}", err=True)
        raise typer.Exit(1)


@data_app.command(
    "relevel",
    epilog="Examples:\n\n  exposure data relevel corpus/brackets corpus/brackets_best",
)
def relevel_command(
    src: Path = typer.Argument(..., help="Built bracket folder (from `exposure data brackets`)."),
    out: Path = typer.Argument(..., help="Folder to write: the same stacks, ideals re-levelled to each best frame."),
) -> None:
    """Derive bracket labels whose ideal keeps the fusion's local exposure but takes the best frame's
    overall level (a linear gain per stack; docs/DATA.md, "The ideal's overall level"). Frames are
    hard-linked; best frames and relative EVs are unchanged."""
    from ..data.brackets import relevel

    if not (src / "index.json").exists():
        _usage_error(f"{src} has no index.json (build it with `exposure data brackets {src}`)")
    if out.resolve() == src.resolve():
        _usage_error("OUT must be a new folder, not SRC")
    counts = relevel(src, out, log=typer.echo)
    typer.echo(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" stacks → {out}")


@data_app.command(
    "contact-sheet",
    epilog=(
        "Examples:\n\n"
        "  exposure data contact-sheet corpus/ --out sheet.png\n\n"
        "  exposure data contact-sheet corpus/ --split val --count 24 --seed 3 --out val.png\n\n"
        "  exposure data contact-sheet corpus/ --kind kept --out kept.png"
    ),
)
def contact_sheet_command(
    corpus: Path = typer.Argument(..., help="Corpus folder (from `exposure data build`)."),
    out: Path = typer.Option(..., "--out", help="Image to write (.png, or .jpg for a smaller file)."),
    kind: SheetKind = typer.Option(SheetKind.samples, "--kind", help="samples: simulated training items with their label maps; val: the fixed validation set (originals, EV sweeps) with labels; kept: the kept photos; hdr: the fused ideals of the HDR crops."),
    split: Split = typer.Option(Split.train, "--split", help="Which split to draw from."),
    count: int = typer.Option(24, "--count", min=1, max=400, help="How many items."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed (samples)."),
    start: int = typer.Option(0, "--start", min=0, help="First dataset index (samples)."),
    columns: int = typer.Option(8, "--columns", min=1, max=20, help="Tiles per row."),
    size: int = typer.Option(176, "--size", min=64, max=512, help="Tile size in pixels."),
) -> None:
    """Draw a contact sheet: training samples next to their label maps (red = over, blue = under).

    Each sample shows the simulated photo the model sees and its label: white where the exposure is
    right, red where the photo is brighter than ideal (over), blue where it is darker (under). The
    caption says what was simulated and what share of the frame is over / under by more than 0.05.
    """
    import cv2
    import numpy as np

    from ..data.corpus import load_index
    from ..data.sheets import dataset_sheet, grid, write_png

    try:
        index = load_index(corpus)
    except FileNotFoundError as exc:
        _usage_error(str(exc))
    if kind in (SheetKind.samples, SheetKind.val):
        from ..data.dataset import ExposureDataset

        if kind is SheetKind.samples:
            ds = ExposureDataset.from_corpus(corpus, split=split.value, crop=256, seed=seed,
                                             samples_per_epoch=start + count)
        else:
            try:
                ds = ExposureDataset.from_iea40k(corpus / "val", split="val", crop=None)
            except FileNotFoundError as exc:
                _usage_error(f"{exc} (build it with `exposure data build {corpus}`)")
        stop = min(start + count, len(ds))
        sheet = dataset_sheet(ds, range(start, stop), cols=columns - columns % 2 or 2, size=size)
    else:
        items = [p for p in index["photos"] if p["split"] == split.value]
        if kind is SheetKind.hdr:
            items = [dict(h, path=h["ideal"]) for h in index.get("hdr", []) if h["split"] == split.value]
        items = items[start : start + count]
        tiles = [cv2.cvtColor(cv2.imread(str(corpus / p["path"])), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
                 for p in items]
        caps = [f"{p['id'].split('__')[0]}\n{p['id'].split('__')[-1][:24]}" for p in items]
        sheet = grid(tiles, caps, columns, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, sheet)
    typer.echo(f"wrote {out} ({sheet.shape[1]}×{sheet.shape[0]})")


@data_app.command(
    "summary",
    epilog=(
        "Examples:\n\n"
        "  exposure data summary\n\n"
        "  exposure data summary --markdown\n\n"
        "  exposure data summary --corpus corpus/ --label-samples 2000 --markdown"
    ),
)
def summary_command(
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Manifest to summarise [default: the shipped one]."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Also compute label statistics from this corpus's training stream."),
    label_samples: int = typer.Option(1000, "--label-samples", min=10, help="Training items drawn for the label statistics."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed for the label statistics."),
    markdown: bool = typer.Option(False, "--markdown", help="Print Markdown tables (for docs/DATA.md) instead of a Rich table."),
) -> None:
    """Per source: package, version, kept photos (train / val) and rejected files by reason; optionally
    the label statistics of the simulated training stream."""
    from ..data.corpus import DEFAULT_MANIFEST, load_manifest, manifest_summary
    from ..data.stats import label_statistics, markdown_tables

    loaded = load_manifest(manifest or DEFAULT_MANIFEST)
    rows = manifest_summary(loaded)
    stats = label_statistics(corpus, label_samples, seed) if corpus else None
    if markdown:
        typer.echo(markdown_tables(rows, stats))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Corpus manifest")
    for col in ("source", "package", "version", "kept", "train", "val", "rejected"):
        table.add_column(col, justify="right" if col in ("kept", "train", "val") else "left")
    for r in rows:
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(r["rejected"].items(), key=lambda kv: -kv[1]))
        table.add_row(r["source"], r["package"], r["version"], str(r["kept"]), str(r["train"]), str(r["val"]), rej)
    console = Console()
    console.print(table)
    if stats:
        console.print(markdown_tables([], stats))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
