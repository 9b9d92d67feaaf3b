"""``exposure report``: turn a report into a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command(
        "report",
        epilog=(
            "Examples:\n\n"
            "  exposure report audit/\n\n"
            "  exposure report audit/ --html audit/index.html\n\n"
            "  exposure report audit/report.parquet --html page.html --rules portrait\n\n"
            "  exposure report audit/ --html share.html --embed-thumbnails"
        ),
    )
    def report_command(
        report: Path = typer.Argument(..., help="A report (file or scan folder)."),
        html: Optional[Path] = typer.Option(
            None, "--html", help="The page to write (one self-contained .html file). Default: report.html in the "
            "scan folder (beside the report file)."),
        rules: List[str] = typer.Option(
            [], "--rules", "-r", help="Score with these rule sets first (preset, plugin or TOML file); repeatable."
        ),
        embed_thumbnails: bool = typer.Option(
            False,
            "--embed-thumbnails",
            help="Inline small thumbnails as data URIs (a page that travels alone) instead of relative links "
            "to the overlays/photos.",
        ),
        title: Optional[str] = typer.Option(None, "--title", help="Page title (default: the report's name)."),
    ) -> None:
        """Write an HTML page: thumbnails/overlays, scores per rule set, sortable and filterable, worst first.

        Opens offline in any browser and stays fast with tens of thousands of photos (rows are drawn as they
        scroll into view). Thumbnails link the overlays the scan wrote (scan with --overlays) or the photos,
        relative to the page, unless --embed-thumbnails.
        """
        from ..registry import RegistryError
        from ..report.html import write_html_report
        from ..report.writers import MissingExtraError
        from ..rules import RuleError, load_rule_sets, score_dataframe, thresholds_from_metadata
        from .rescore import read_any_report, report_file

        if not report.exists():
            typer.echo(f"Error: no report at {report}", err=True)
            raise typer.Exit(2)
        if html is None:
            html = report_file(report).parent / "report.html"
        if html.suffix.lower() not in (".html", ".htm"):
            typer.echo(f"Error: --html must name an .html file, got {html}", err=True)
            raise typer.Exit(2)
        try:
            df, metadata = read_any_report(report)
        except (OSError, ValueError, MissingExtraError) as exc:
            typer.echo(f"Error: cannot read report {report}: {exc}", err=True)
            raise typer.Exit(2) from None
        if rules:
            try:
                df = score_dataframe(load_rule_sets(list(rules)), df, thresholds_from_metadata(metadata))
            except (RegistryError, RuleError) as exc:
                typer.echo(f"Error: {exc}", err=True)
                raise typer.Exit(2) from None
        source = report_file(report)
        try:
            out = write_html_report(
                df,
                metadata,
                html,
                report_dir=source.parent,
                title=title or f"Exposure report: {source.parent.name or source.name}",
                embed_thumbnails=embed_thumbnails,
            )
        except OSError as exc:  # a full or read-only disk: an older page is intact, no temporary left
            typer.echo(f"Error: cannot write {html}: {exc.strerror or exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {out} ({len(df)} photos from {source.name}; rule sets: "
                   f"{', '.join(c[len('score_'):] for c in df.columns if str(c).startswith('score_')) or 'none'})")
