"""``exposure eval``: score analyzers against labelled residual maps (ours or the IEA40K layout)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def _usage_error(message: str) -> None:
    from .ui import usage_error

    usage_error(message)


def register(app: typer.Typer) -> None:
    @app.command(
        "eval",
        epilog=(
            "Examples:\n\n"
            "  exposure eval corpus/val --model baseline\n\n"
            "  exposure eval corpus/val --model eat --weights weights/model.safetensors --json-out eval.json\n\n"
            "  exposure eval /datasets/IEA40K --split test --model eat --format json\n\n"
            "  exposure eval corpus/val --model eat --model baseline --limit 100"
        ),
    )
    def eval_command(
        data: Path = typer.Argument(..., help="IEA40K-layout folder (Input/, pixel label/, <split>.csv), e.g. corpus/val; or real exposure brackets (corpus/brackets, with --split val|train|lockbox)."),
        model: List[str] = typer.Option(["eat"], "--model", help="Analyzer name (repeatable); `baseline` is always added as a comparison row."),
        weights: Optional[List[str]] = typer.Option(None, "--weights", help="Weights for the --model at the same position (repeatable)."),
        split: str = typer.Option("val", "--split", help="Which CSV of DATA to read (<split>.csv or the one file matching it)."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto (for analyzers that use one)."),
        working_long_side: Optional[int] = typer.Option(None, "--working-long-side", min=32, help="Override the analyzers' working resolution."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N images (a quick look)."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table: Rich table on stdout; json: JSON on stdout."),
        json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the JSON result to this file."),
        per_image: Optional[Path] = typer.Option(None, "--per-image", help="Also write one CSV row per analyzer and image (its CSV columns, mean predicted and labelled residual, mean |predicted|, MAE) to this file."),
    ) -> None:
        """Evaluate exposure maps against labels: MAE, SSIM, PSNR, EV-sweep monotonicity, ROC-AUC.

        Map metrics compare predicted and labelled residual maps per image. On sets with EV sweeps
        (the validation set `exposure data build` writes) it also reports the share of photos whose mean
        predicted residual falls strictly as the exposure rises, its Spearman correlation with EV (−1 is
        perfect), the ROC-AUC of under-exposed (−2 EV) and over-exposed (+2 EV) versions against the
        originals, and how quiet the model is on the untouched originals (mean |r|, lower is better).
        The `baseline` heuristic is always evaluated too, as the row to beat; `zero map MAE` is the MAE of
        predicting "well exposed" everywhere.
        """
        from ..analyzers import ANALYZERS
        from ..evaluation import evaluate
        from ..registry import RegistryError

        weights = list(weights or [])
        if len(weights) > len(model):
            _usage_error("more --weights than --model")
        for name in model:
            try:
                ANALYZERS.get(name)
            except RegistryError as exc:
                _usage_error(str(exc))
        pairs = [(m, weights[i] if i < len(weights) else None) for i, m in enumerate(model)]
        if not data.exists():
            _usage_error(f"{data} does not exist")
        if _is_bracket_folder(data):
            _eval_stacks(data, pairs, split, device, working_long_side, output, json_out)
            return
        try:
            if output is OutputFormat.table:
                from rich.progress import Progress

                with Progress(transient=True) as bar:
                    tasks: dict[str, int] = {}

                    def progress(name: str, done: int, total: int) -> None:
                        if name not in tasks:
                            tasks[name] = bar.add_task(f"eval {name}", total=total)
                        bar.update(tasks[name], completed=done)

                    result = evaluate(data, pairs, split=split, device=device,
                                      working_long_side=working_long_side, limit=limit, progress=progress,
                                      per_image=per_image is not None)
            else:
                result = evaluate(data, pairs, split=split, device=device, working_long_side=working_long_side,
                                  limit=limit, per_image=per_image is not None)
        except (FileNotFoundError, ValueError) as exc:
            _usage_error(str(exc))
        rows = result.pop("per_image", None)
        if per_image is not None:
            _write_csv(per_image, rows or [])
        if _emit_json(result, output, json_out):
            return
        _print_table(result)


def _emit_json(result: dict, output: "OutputFormat", json_out: Optional[Path]) -> bool:
    """Write the JSON result to `json_out` (if given) and to stdout for ``--format json``; True if printed."""
    text = json.dumps(result, indent=1)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    if output is OutputFormat.json:
        typer.echo(text)
        return True
    return False


def _is_bracket_folder(data: Path) -> bool:
    index = data / "index.json"
    if not index.is_file():
        return False
    try:
        return "scenes" in json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _eval_stacks(data: Path, pairs, split: str, device: str, working_long_side, output: "OutputFormat",
                 json_out: Optional[Path]) -> None:
    from ..stack_evaluation import STACK_COLUMNS, evaluate_stacks, format_table_rows

    try:
        result = evaluate_stacks(data, pairs, split=split, device=device, working_long_side=working_long_side)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as exc:
        _usage_error(str(exc))
    if _emit_json(result, output, json_out):
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"exposure eval · real brackets {data} · split {split} · {result['scenes']} scenes",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", no_wrap=True)
    for _, header, _ in STACK_COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for row in format_table_rows(result):
        table.add_row(*row)
    console = Console()
    console.print(table)
    bias = Table(title="mean predicted / labelled residual per stop from the best frame", title_justify="left",
                 box=box.SIMPLE_HEAD, pad_edge=False)
    evs = sorted({b["ev"] for r in result["results"] for b in r["per_ev_bias"]})
    bias.add_column("model", no_wrap=True)
    for ev in evs:
        bias.add_column(f"{ev:+d} EV", justify="right", no_wrap=True)
    for r in result["results"]:
        cells = {b["ev"]: f"{b['mean_pred']:+.3f}" for b in r["per_ev_bias"]}
        bias.add_row(r["model"], *[cells.get(ev, "") for ev in evs])
    labels = {b["ev"]: f"{b['mean_label']:+.3f}" for r in result["results"][:1] for b in r["per_ev_bias"]}
    bias.add_row("labelled", *[labels.get(ev, "") for ev in evs])
    console.print(bias)
    console.print(_category_table(result))


def _category_table(result: dict):
    """Per scene category and model: counts, EV error (all / known exposures) and the best frames' mean
    predicted vs labelled residual."""
    from rich import box
    from rich.table import Table

    table = Table(title="per scene category (best frame: mean predicted / labelled residual)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("model", "category", "scenes", "ordered↑", "best↑", "EV err↓", "EV err known↓", "best frame r"):
        table.add_column(header, justify="left" if header in ("model", "category") else "right", no_wrap=True)

    def num(v, fmt):
        return "–" if v is None else fmt.format(v)

    for r in result["results"]:
        for c in r.get("per_category", []):
            table.add_row(r["model"], c["category"] or "–", str(c["scenes"]), f"{c['ordered']}/{c['scenes']}",
                          f"{c['best_pick']}/{c['scenes']}", num(c["ev_correction_error"], "{:.2f}"),
                          num(c["ev_correction_error_known"], "{:.2f}"),
                          f"{num(c['best_frame_mean_pred'], '{:+.3f}')} / {num(c['best_frame_mean_label'], '{:+.3f}')}")
    return table


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _print_table(result: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ..evaluation import COLUMNS, format_value

    kinds = ", ".join(result.get("kinds") or []) or "plain"
    zero = result.get("zero_map_mae")
    title = (f"exposure eval · {result['data']} · split {result['split']} · {result['images']} images ({kinds})"
             + (f" · zero map MAE {zero:.4f}" if zero is not None else ""))
    weights = [f"{r['model']}: {r['weights']}" for r in result["results"] if r.get("weights")]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=("weights — " + "; ".join(weights)) if weights else None, caption_justify="left")
    table.add_column("model", no_wrap=True)
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("s", justify="right")
    for r in result["results"]:
        table.add_row(r["model"], *[format_value(r.get(k), fmt) for k, _, fmt in COLUMNS], f"{r['seconds']:.1f}")
    console = Console()
    console.print(table)
    for group in ("photo", "hdr"):
        rows = {r["model"]: {b["ev"]: b for b in r.get("sweep_bias", {}).get(group, [])} for r in result["results"]}
        evs = sorted({ev for cells in rows.values() for ev in cells})
        if not evs:
            continue
        bias = Table(title=f"sweep bias, {group}s: mean predicted and labelled residual per EV",
                     title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        bias.add_column("model", no_wrap=True)
        for ev in evs:
            bias.add_column(f"{ev:+g} EV", justify="right", no_wrap=True)
        for model, cells in rows.items():
            bias.add_row(model, *[f"{cells[ev]['mean_pred']:+.3f}" if ev in cells else "" for ev in evs])
        first = next(iter(rows.values()))
        bias.add_row("labelled", *[f"{first[ev]['mean_label']:+.3f}" if ev in first else "" for ev in evs])
        console.print(bias)
