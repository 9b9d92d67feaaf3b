"""``exposure rescore``: apply rule sets to an existing report, without the photos or the model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, List, Optional

import typer


def read_any_report(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(DataFrame, metadata) of a report file or scan folder.

    Parquet is read with pyarrow directly (histograms stay numpy arrays: 100 000 rows in about a second);
    CSV and JSONL go through the report writers' reader.
    """
    source = report_file(Path(path))
    if source.suffix.lower() == ".parquet" and source.is_file():
        table, metadata = _read_parquet(source)
        return table.to_pandas(), metadata
    from ..report.writers import read_report

    return read_report(path)


def _read_parquet(path: Path) -> tuple[Any, dict[str, Any]]:
    import json

    import pyarrow.parquet as pq

    from ..report.writers import META_KEY

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY)
    return table, (json.loads(raw) if raw else {})


def _rescore_parquet(source: Path, target: Path, rule_sets: list, update_meta) -> tuple[Any, dict[str, Any], float]:
    """Parquet in, Parquet out, without a round trip through Python rows (the fast path)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..atomic import atomic_write
    from ..report.writers import META_KEY
    from ..rules import MetricFrame, score_frame, thresholds_from_metadata

    table, metadata = _read_parquet(source)
    started = time.perf_counter()
    columns = score_frame(rule_sets, MetricFrame.from_arrow(table, thresholds_from_metadata(metadata)))
    seconds = time.perf_counter() - started
    for name, values in columns.items():
        if name.startswith("score_"):
            array = pa.array(values, type=pa.float64(), from_pandas=True)  # NaN → null, as the scan writes
        else:
            array = pa.array(list(values), type=pa.string())
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    new_meta = update_meta(metadata)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[META_KEY] = json.dumps(new_meta).encode("utf-8")
    table = table.replace_schema_metadata(schema_meta)
    atomic_write(target, lambda fh: pq.write_table(table, fh))
    return table, new_meta, seconds


def report_file(report: Path) -> Path:
    """The report file itself: for a scan folder, the newest of its reports.

    A scan folder holds ``report.<ext>`` from the scan and, once ``exposure rescore`` has run on it,
    ``report.rescored.<ext>`` with the new rule sets' columns added; the newer one is the folder's report,
    so ``exposure report DIR`` shows what the last ``rescore`` added.
    """
    from ..report.schema import REPORT_FILENAMES

    if report.is_dir():
        names = list(REPORT_FILENAMES.values())
        names += [n.replace("report.", "report.rescored.", 1) for n in names]
        found = [report / n for n in names if (report / n).is_file()]
        if not found:
            return report / "report.parquet"
        return max(found, key=lambda p: (p.stat().st_mtime_ns, ".rescored." in p.name))
    return report


def is_rescored(path: Path) -> bool:
    return path.stem.endswith(".rescored")


def default_output(report: Path) -> Path:
    """Where a rescored report goes when ``--out`` is not given: ``report.rescored.<ext>`` beside the
    scan's report, never over it (rescoring a rescored report updates it, so rule sets accumulate)."""
    source = report_file(report)
    if is_rescored(source):
        return source
    return source.with_name(f"{source.stem}.rescored{source.suffix}")


def rescore_report(
    report: str | Path,
    specs: List[str],
    out: str | Path | None = None,
) -> tuple[Path, Any, dict[str, Any], float]:
    """Score a report under the rule sets ``specs`` and write it to ``out``.

    Returns:
        (output path, the new DataFrame, its metadata, seconds spent scoring).
    """
    from ..report.writers import write_report
    from ..rules import load_rule_sets, score_dataframe, thresholds_from_metadata

    report = Path(report)
    source = report_file(report)
    if not source.is_file():
        raise FileNotFoundError(f"no report.parquet, report.csv, report.jsonl or report.xlsx in {report}")
    rule_sets = load_rule_sets(specs)
    target = Path(out) if out else default_output(report)
    if target.exists() and target.resolve() == source.resolve() and not (out is None and is_rescored(source)):
        raise ValueError(f"refusing to overwrite the input report {source}; pass another --out")
    fmt = target.suffix.lstrip(".").lower() or "parquet"
    if fmt not in ("parquet", "csv", "jsonl", "xlsx"):
        raise ValueError(f"--out must end in .parquet, .csv, .jsonl or .xlsx, not {target.name}")
    target.parent.mkdir(parents=True, exist_ok=True)

    def update_meta(metadata: dict[str, Any]) -> dict[str, Any]:
        new_meta = dict(metadata)
        names = [str(n) for n in new_meta.get("rule_sets") or []]
        new_meta["rule_sets"] = names + [rs.name for rs in rule_sets if rs.name not in names]
        new_meta["rescored"] = {
            "from": str(source),
            "rule_sets": [rs.name for rs in rule_sets],
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return new_meta

    if source.suffix.lower() == ".parquet" and fmt == "parquet":
        table, new_meta, seconds = _rescore_parquet(source, target, rule_sets, update_meta)
        from ..report.schema import is_hist_column

        return target, table.drop_columns([c for c in table.column_names if is_hist_column(c)]).to_pandas(), new_meta, seconds
    df, metadata = read_any_report(source)
    started = time.perf_counter()
    scored = score_dataframe(rule_sets, df, thresholds_from_metadata(metadata))
    seconds = time.perf_counter() - started
    new_meta = update_meta(metadata)
    write_report(scored, target, fmt, new_meta)
    return target, scored, new_meta, seconds


def register(app: typer.Typer) -> None:
    @app.command(
        "rescore",
        epilog=(
            "Examples:\n\n"
            "  exposure rescore audit/ --rules portrait\n\n"
            "  exposure rescore audit/report.parquet --rules ./acme.toml --rules night --out acme.parquet\n\n"
            "  exposure rescore audit/ --rules landscape-strict --fail-under landscape-strict=60"
        ),
    )
    def rescore_command(
        report: Path = typer.Argument(..., help="A report (file or scan folder)."),
        rules: List[str] = typer.Option(..., "--rules", "-r", help="Rule set (preset, plugin or TOML file); repeatable."),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="New report (.parquet, .csv, .jsonl). Default: REPORT.rescored.<ext> beside it."
        ),
        fail_under: List[str] = typer.Option(
            [], "--fail-under", help="NAME=SCORE: exit 1 if any photo scores below SCORE under rule set NAME."
        ),
    ) -> None:
        """Re-score an existing report with new rule sets, from its stored statistics and histograms.

        Photos and the model are not needed: rule sets with other pixel thresholds are answered from the
        per-region histograms of the residual. Existing columns of other rule sets are kept; columns of a
        rule set with the same name are replaced.
        """
        from ..registry import RegistryError
        from ..report.writers import MissingExtraError
        from ..rules import RuleError, below_threshold, parse_fail_under, score_columns

        try:
            limits = [parse_fail_under(spec) for spec in fail_under]
        except RuleError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(2) from None
        if not report.exists():
            typer.echo(f"Error: no report at {report}", err=True)
            raise typer.Exit(2)
        started = time.perf_counter()
        try:
            target, df, _, seconds = rescore_report(report, list(rules), out)
        except (RegistryError, RuleError, ValueError, FileNotFoundError, MissingExtraError) as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # a full or read-only disk: the old file (if any) is intact, no temporary left
            typer.echo(f"Error: cannot write the rescored report: {exc.strerror or exc}"
                       + (f" ({exc.filename})" if exc.filename else ""), err=True)
            raise typer.Exit(1) from None
        rows = len(df)
        rate = rows / seconds if seconds > 0 else float("inf")
        total = time.perf_counter() - started
        typer.echo(
            f"rescored {rows} photos: scoring {seconds:.2f} s ({rate:,.0f} rows/s), "
            f"{total:.2f} s with reading and writing → {target}"
        )
        status_ok = df["status"].astype(str) != "error" if "status" in df.columns else None
        for column in [c for c in df.columns if c.startswith("score_")]:
            name = column[len("score_"):]
            scores = df[column].astype(float)
            if status_ok is not None:
                scores = scores[status_ok]
            grade_column = score_columns(name)[1]
            grades = df[grade_column].value_counts().to_dict() if grade_column in df.columns else {}
            grade_text = ", ".join(f"{g}: {n}" for g, n in sorted(grades.items(), key=lambda kv: str(kv[0])) if str(g))
            typer.echo(f"  {name}: mean {scores.mean():.1f}, min {scores.min():.1f}  ({grade_text})")
        failed = False
        for name, minimum in limits:
            column = score_columns(name)[0]
            if column not in df.columns:
                typer.echo(f"Error: --fail-under names {name!r}, which is not a rule set in the report", err=True)
                raise typer.Exit(2)
            below = below_threshold(df[column].to_numpy(dtype=float), minimum)
            if below.any():
                failed = True
                typer.echo(f"FAIL {name}: {int(below.sum())} photos score below {minimum:g}", err=True)
        if failed:
            raise typer.Exit(1)
