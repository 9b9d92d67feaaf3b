"""``exposure rules list | show | validate | explain``: inspect, check and debug vendor rule sets."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

rules_app = typer.Typer(
    name="rules",
    help="List, show, validate and explain vendor scoring rule sets (see docs/RULES.md).",
    no_args_is_help=True,
    epilog=(
        "Examples:\n\n"
        "  exposure rules list\n\n"
        "  exposure rules show portrait\n\n"
        "  exposure rules validate acme.toml\n\n"
        "  exposure rules explain audit/report.parquet holiday/beach.jpg --rules portrait"
    ),
)


def _usage_error(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(2)


@rules_app.command(
    "list",
    epilog="Examples:\n\n  exposure rules list",
)
def list_command() -> None:
    """List the built-in presets and installed plugin rule sets."""
    from ..registry import RegistryError
    from ..rules import RULE_SETS, RuleError, get_rule_set

    try:
        names = RULE_SETS.names()
    except (RegistryError, RuleError, ImportError) as exc:  # a broken or duplicate plugin
        raise _usage_error(f"cannot load rule-set plugins: {exc}") from None
    width = max((len(n) for n in names), default=4)
    for name in names:
        origin = RULE_SETS.origin(name)
        try:
            description = get_rule_set(name).description
        except Exception as exc:  # noqa: BLE001 - list must show a broken plugin, not die on it
            description = f"(cannot load: {exc})"
        typer.echo(f"{name:<{width}}  {origin:<18}  {description}")


@rules_app.command(
    "show",
    epilog="Examples:\n\n  exposure rules show portrait\n\n  exposure rules show ./acme.toml",
)
def show_command(
    name: str = typer.Argument(..., help="Preset or plugin name, or a path to a .toml rule file."),
    source: bool = typer.Option(False, "--source", help="Print the TOML text of a preset or file instead."),
) -> None:
    """Print a rule set: thresholds, rows or deductions, grades."""
    from ..registry import RegistryError
    from ..rules import RuleError, load_rule_set

    try:
        rule_set = load_rule_set(name)
    except (RegistryError, RuleError) as exc:
        raise _usage_error(str(exc)) from None
    if source:
        text = _toml_source(name, rule_set)
        if text is None:
            raise _usage_error(f"{name!r} is a Python rule set; it has no TOML source")
        typer.echo(text.rstrip("\n"))
        return
    typer.echo(rule_set.describe())


def _toml_source(spec: str, rule_set) -> Optional[str]:
    from importlib import resources

    if Path(spec).is_file():
        return Path(spec).read_text(encoding="utf-8")
    preset = resources.files("exposure_cli.rules").joinpath("presets", f"{spec}.toml")
    if getattr(rule_set, "origin", "") == "built-in preset" and preset.is_file():
        return preset.read_text(encoding="utf-8")
    return None


@rules_app.command(
    "validate",
    epilog="Examples:\n\n  exposure rules validate acme.toml\n\n  exposure rules validate rules/*.toml",
)
def validate_command(
    files: List[Path] = typer.Argument(..., help="Rule files (.toml) to check."),
) -> None:
    """Check rule files: schema, expressions, metric names (exit 1 on the first problem of each file)."""
    from ..rules import RuleError, load_rule_file

    failed = 0
    for file in files:
        try:
            rule_set = load_rule_file(file)
        except RuleError as exc:
            failed += 1
            typer.echo(f"✗ {exc}", err=True)
            continue
        count = len(rule_set.conditions)
        kind = "rows" if rule_set.mode == "table" else "deductions"
        typer.echo(f"✓ {file}: rule set {rule_set.name!r}, {count} {kind}")
    if failed:
        raise typer.Exit(1)


@rules_app.command(
    "explain",
    epilog=(
        "Examples:\n\n"
        "  exposure rules explain audit/report.parquet holiday/beach.jpg\n\n"
        "  exposure rules explain audit/ beach.jpg --rules portrait --rules ./acme.toml"
    ),
)
def explain_command(
    report: Path = typer.Argument(..., help="A report (file or scan folder)."),
    photo: str = typer.Argument(..., help="The photo: its report path, or a unique file name / path ending."),
    rules: List[str] = typer.Option(
        [], "--rules", "-r", help="Rule set (preset, plugin or TOML file); repeatable. Default: the report's."
    ),
) -> None:
    """Show, for one photo, every condition of each rule set with its values and whether it fired."""
    from ..registry import RegistryError
    from ..rules import MetricFrame, RuleError, load_rule_sets, thresholds_from_metadata
    from .rescore import read_any_report

    try:
        df, metadata = read_any_report(report)
    except (OSError, ValueError) as exc:
        raise _usage_error(f"cannot read report {report}: {exc}") from None
    specs = list(rules) or [str(n) for n in metadata.get("rule_sets") or []]
    if not specs:
        raise _usage_error("the report names no rule sets; pass --rules NAME (e.g. --rules default)")
    try:
        rule_sets = load_rule_sets(specs)
    except (RegistryError, RuleError) as exc:
        hint = "" if rules else " (the report names its rule sets, not their files: pass --rules FILE.toml)"
        raise _usage_error(f"{exc}{hint}") from None
    index = _find_photo(df, photo)
    row = df.iloc[index]
    typer.echo(f"{row['path']}")
    if str(row.get("status", "ok")) == "error":
        typer.echo(f"  not scored: the photo could not be analysed ({row.get('error')})")
        return
    frame = MetricFrame.from_dataframe(df.iloc[[index]].reset_index(drop=True), thresholds_from_metadata(metadata))
    for rule_set in rule_sets:
        view = frame.with_thresholds(rule_set.effective_thresholds(frame.scan_thresholds))
        typer.echo("")
        typer.echo(f"[{rule_set.name}] thresholds over {view.thresholds.over}, under {view.thresholds.under}, "
                   f"severe {view.thresholds.severe}")
        for line in rule_set.explain(view, 0):
            if line["rule"] == "result":
                typer.echo(f"  = {line['effect']}: {line['details'][0]}")
                continue
            # USED: this condition set the score (table) or took points off (deductions);
            # true: it holds but a row above it already decided
            mark = "USED " if line.get("decisive", line["fired"]) else ("true " if line["fired"] else "-    ")
            typer.echo(f"  {mark} {line['effect']:>6}  {line['rule']}: {line['condition']}")
            for detail in line["details"]:
                typer.echo(f"                 {detail}")


def _find_photo(df, photo: str) -> int:
    paths = [str(p) for p in df["path"]]
    if photo in paths:
        return paths.index(photo)
    wanted = photo.replace("\\", "/").lstrip("./")
    matches = [i for i, p in enumerate(paths) if p == wanted or p.endswith("/" + wanted)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        from ..registry import suggest

        raise _usage_error(f"no photo {photo!r} in the report{suggest(photo, paths)}")
    shown = ", ".join(paths[i] for i in matches[:5])
    raise _usage_error(f"{photo!r} matches {len(matches)} photos ({shown}…); give more of the path")


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
