"""Rich progress bar and summary table for the CLI (honours NO_COLOR)."""

from __future__ import annotations

import os


from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text


def usage_error(message: str) -> None:
    """Print a one-line usage error and exit with code 2."""
    import typer

    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def make_console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


class _RateColumn(ProgressColumn):
    """Photos per second since the scan started: the same figure the summary prints at the end.

    (Rich's own speed is a moving average over the last seconds; after a slow start it disagreed with the
    summary several-fold.)
    """

    def render(self, task) -> Text:
        speed = task.fields.get("final_rate")
        if speed is None and task.elapsed and task.completed:
            speed = task.completed / task.elapsed
        return Text(f"{speed:5.1f} img/s" if speed and speed == speed else "  –   img/s")


class _ErrorsColumn(ProgressColumn):
    def render(self, task) -> Text:
        n = task.fields.get("errors", 0)
        return Text(f"{n} errors", style="red" if n else "dim")


class ScanProgress:
    """Progress bar: images, images/s, ETA, error count. A no-op when disabled."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), _ErrorsColumn(), console=console, transient=False,
            disable=not enabled,
        )
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start(self, total: int) -> None:
        self.task = self.progress.add_task("scan", total=total, errors=0)

    def advance(self, done: int, errors: int, step: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=step, errors=errors)

    def finish(self, rate: float) -> None:
        """Show `rate` (the summary's photos per second) as the bar's last figure."""
        if self.task is not None:
            self.progress.update(self.task, final_rate=rate)
            self.progress.refresh()


def format_stops(ev: float) -> str:
    """Stops of exposure correction as a photographer writes them: ``+1.3 EV``, ``−0.7 EV``, ``–`` if none."""
    if ev != ev:  # NaN: the analyzer gave no correction
        return "–"
    if abs(ev) < 0.05:
        return "0.0 EV"
    return f"{'+' if ev > 0 else '−'}{abs(ev):.1f} EV"


def print_summary(console: Console, result, verbose: bool = False) -> None:
    table = Table(title="exposure scan", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("inputs", str(result.total))
    rate = result.images_per_second
    table.add_row("scanned now", f"{result.processed} ({rate:.1f} img/s, {result.seconds:.1f} s)"
                  if result.processed else "0")
    if result.skipped:
        table.add_row("already done (resume)", str(result.skipped))
    table.add_row("ok", str(result.ok))
    table.add_row("errors", f"[red]{result.errors}[/]" if result.errors else "0")
    if result.report_path:
        table.add_row("report", str(result.report_path))
    console.print(table)
    if result.lowest:
        name = result.rule_names[0]
        low = Table(title=f"lowest scores ({name}; every score is in the report)", title_justify="left")
        low.add_column("photo", overflow="fold")
        low.add_column("score", justify="right")
        low.add_column("grade")
        low.add_column("stops to fix", justify="right")
        low.add_column("first reason", overflow="fold")
        for score, path, grade, reason, ev in result.lowest:
            low.add_row(path, f"{score:.0f}", grade, format_stops(ev), reason)
        console.print(low)
    elif result.worst:
        worst = Table(title="most badly exposed (share of pixels over or under)", title_justify="left")
        worst.add_column("photo")
        worst.add_column("bad area", justify="right")
        worst.add_column("stops to fix", justify="right")
        for bad, path, ev in sorted(result.worst, reverse=True)[:5]:
            worst.add_row(path, f"{bad:.1f} %", format_stops(ev))
        console.print(worst)
    if result.error_samples:
        errs = Table(title="failed files", title_justify="left")
        errs.add_column("photo")
        errs.add_column("error")
        for path, err in result.error_samples[: (10 if verbose else 3)]:
            errs.add_row(path, err)
        console.print(errs)
    for name, scores in result.below.items():
        if scores:
            mean = sum(s for _, s in scores) / len(scores)
            console.print(f"rule set [bold]{name}[/]: mean score {mean:.1f} over {len(scores)} photos")
