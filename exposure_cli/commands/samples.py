"""``exposure samples``: where the bundled sample photos are (or a copy of them)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def samples_dir() -> Path:
    """Folder of the sample photos shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("exposure_cli") / "samples"))


def register(app: typer.Typer) -> None:
    @app.command(
        "samples",
        epilog="Examples:\n\n  exposure scan \"$(exposure samples)\" --out audit --overlays\n\n"
               "  exposure samples --copy my-samples/",
    )
    def samples_command(
        copy: Optional[Path] = typer.Option(None, "--copy", help="Copy the sample photos into this folder."),
    ) -> None:
        """Print the folder of the bundled sample photos (real, freely licensed; see ATTRIBUTION.md there)."""
        src = samples_dir()
        if copy is None:
            typer.echo(str(src))
            return
        import shutil

        copy.mkdir(parents=True, exist_ok=True)
        for f in sorted(src.iterdir()):
            if f.is_file():
                shutil.copy2(f, copy / f.name)
        typer.echo(str(copy))
