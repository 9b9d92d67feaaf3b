"""The ``exposure`` command: a thin Typer layer over the library.

Each command lives in ``exposure_cli/commands/<name>.py`` and exposes ``register(app)``; commands convert
options and call library functions. Nothing heavy (torch, OpenCV, pyarrow) is imported here, so
``exposure --help`` is instant.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Optional

import typer
from typer._click.exceptions import ClickException
from typer.core import TyperArgument, TyperCommand, TyperGroup
from typer.models import DefaultPlaceholder

from ._version import __version__

#: Command modules under exposure_cli.commands, in --help order.
COMMAND_MODULES = ("scan", "samples", "train", "rules", "rescore", "report", "data", "eval")

#: Type labels as --help shows them: short words, no angle brackets; flags show none.
_TYPE_LABELS = {"str": "TEXT", "int": "INTEGER", "int range": "INTEGER", "float": "NUMBER",
                "float range": "NUMBER", "path": "PATH", "file": "FILE", "directory": "DIR"}


def _help_label(param: Any, ctx: Any) -> str | None:
    if getattr(param, "is_flag", False):
        return None
    if isinstance(param, TyperArgument):
        return None  # the argument's name column already says PATHS...
    label = param.display_type(ctx).strip("<>")
    if label.startswith("list[") and label.endswith("]"):  # a repeatable option: the element's type
        label = label[5:-1]
    return _TYPE_LABELS.get(label, label)


def _plain_help(params: Any) -> None:
    """Plain --help labels: ``PATHS...`` for arguments, ``PATH`` or ``parquet|csv`` for values, none after flags."""
    for param in params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "").upper() + ("..." if param.nargs != 1 else "")
            param._usage_display_name = (  # type: ignore[method-assign]
                lambda _p=param: _p.metavar if _p.required else f"[{_p.metavar}]")
        param.display_type_rich = (lambda ctx, _p=param: _help_label(_p, ctx))  # type: ignore[method-assign]


class Command(TyperCommand):
    """A Typer command whose --help shows plain labels (see :func:`_plain_help`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_help(self.params)

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)
        _plain_help(params)  # the --help option is added here
        return params


def _one_line_error(exc: Exception) -> None:
    """Print a usage error as one line (without pydantic's "Value error," prefix) and exit with its code."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = " ".join(exc.format_message().replace("Value error, ", "").split())  # type: ignore[attr-defined]
    typer.secho(f"Error: {message}{hint}", err=True, fg=typer.colors.RED)
    raise typer.Exit(getattr(exc, "exit_code", 2))


class Group(TyperGroup):
    """The ``exposure`` group: usage errors come out as one line on stderr (exit 2), not a framed panel."""

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)
        _plain_help(params)
        return params

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            _one_line_error(exc)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            _one_line_error(exc)


app = typer.Typer(
    name="exposure",
    cls=Group,
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


def _default(cls: Any, base: type) -> bool:
    return cls is None or cls is base or isinstance(cls, DefaultPlaceholder)


def _use_clean_commands(typer_app: typer.Typer) -> None:
    """Give every command and sub-group of `typer_app` the plain help and one-line errors above."""
    for info in typer_app.registered_commands:
        if _default(info.cls, TyperCommand):
            info.cls = Command
    for group in typer_app.registered_groups:
        if _default(group.cls, TyperGroup):
            group.cls = Group
        if group.typer_instance is not None:
            _use_clean_commands(group.typer_instance)


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__package__}.commands.{_name}").register(app)
_use_clean_commands(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
