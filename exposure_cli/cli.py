"""The ``exposure`` command: a thin Typer layer over the library.

Each command lives in ``exposure_cli/commands/<name>.py`` and exposes ``register(app)``; commands convert
options and call library functions. Nothing heavy (torch, OpenCV, pyarrow) is imported here, so
``exposure --help`` is instant.
"""

from __future__ import annotations

import importlib
import os
from typing import Optional

import typer

from ._version import __version__

#: Command modules under exposure_cli.commands, in --help order.
COMMAND_MODULES = ("scan", "samples", "train", "rules", "rescore", "report", "data", "eval")

app = typer.Typer(
    name="exposure",
    help="Audit the exposure of photos at scale: per-pixel exposure maps, vendor scores, reports.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich" if not os.environ.get("NO_COLOR") else None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"exposure-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Audit the exposure of photos at scale.

    Examples:

        exposure scan photos/ --out audit/

        exposure scan photos/ --rules portrait --format csv --out audit/
    """


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__package__}.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
