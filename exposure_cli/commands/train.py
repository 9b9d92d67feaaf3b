"""``exposure train``: train the EAT-IEA model on our corpus or an IEA40K-layout folder."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Optional

import typer


class DataFormatChoice(str, enum.Enum):
    auto = "auto"
    corpus = "corpus"
    iea40k = "iea40k"


class LossKind(str, enum.Enum):
    """How a term of the training loss is penalised: absolute (median-seeking) or squared (mean-seeking)."""

    l1 = "l1"
    l2 = "l2"


def _usage_error(message: str) -> None:
    from .ui import usage_error

    usage_error(message)


def train_command(
    data: Path = typer.Option(..., "--data", help="Corpus folder (from `exposure data build`) or an IEA40K-layout folder."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Run folder: log, metrics, checkpoint, best weights. Re-running resumes."),
    export: Optional[Path] = typer.Option(None, "--export", help="Also write the best weights + card here whenever they improve (e.g. weights/)."),
    model: str = typer.Option("eat_iea", "--model", help="Architecture name (eat_iea, eat_iea_no_dwt, eat_iea_no_structure, eat_iea_no_schedule, eat_iea_test)."),
    data_format: DataFormatChoice = typer.Option(DataFormatChoice.auto, "--data-format", help="Layout of --data; auto detects it."),
    minutes: Optional[float] = typer.Option(None, "--minutes", min=0.01, help="Training-time budget in minutes."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Step budget (with --minutes, whichever ends first)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Crops per step [default: 16 on CPU, 64 on CUDA]."),
    crop: int = typer.Option(256, "--crop", min=64, help="Training crop size in pixels."),
    lr: float = typer.Option(2e-3, "--lr", min=0.0, help="Peak learning rate (AdamW, warm-up + cosine)."),
    explore_share: float = typer.Option(0.3, "--explore-share", min=0.0, max=1.0, help="Share of training with the EAT exploration schedule."),
    twin_share: float = typer.Option(0.5, "--twin-share", min=0.0, max=0.5, help="Share of each batch made of EV twins (same crop, another exposure) ordered by a ranking loss; 0 turns them off."),
    mean_weight: float = typer.Option(1.0, "--mean-weight", min=0.0, help="Weight of the per-image mean-residual term of the loss."),
    mean_loss: LossKind = typer.Option(LossKind.l1, "--mean-loss", help="l1 or l2: how the per-image mean residual is penalised (l2 aims at the conditional mean: less shrinkage towards 'fine')."),
    pixel_loss: LossKind = typer.Option(LossKind.l1, "--pixel-loss", help="l1 or l2: how each pixel's residual is penalised (l2 aims at the conditional mean of ambiguous pixels, e.g. black ones)."),
    rank_weight: float = typer.Option(1.0, "--rank-weight", min=0.0, help="Weight of the twins' ranking loss."),
    min_ev: float = typer.Option(-8.0, "--min-ev", min=-9.0, max=-0.5, help="Corpus training data: darkest global EV shift (real mistakes go far into the dark)."),
    max_ev: float = typer.Option(4.0, "--max-ev", min=0.5, max=5.0, help="Corpus training data: brightest global EV shift (validation keeps the simulator default)."),
    brackets: Optional[Path] = typer.Option(None, "--brackets", help="Real exposure brackets (corpus/brackets from `exposure data brackets`): their train stacks join training, their val stacks the validation stream."),
    bracket_share: float = typer.Option(0.25, "--bracket-share", min=0.0, max=1.0, help="With --brackets: share of training and validation items that are real bracket frames."),
    whole_view_share: float = typer.Option(0.0, "--whole-view-share", min=0.0, max=1.0, help="With --brackets: share of training bracket frames cut as their widest square view (the scale the analyzer sees a whole frame at)."),
    bracket_ideal_share: float = typer.Option(0.0, "--bracket-ideal-share", min=0.0, max=1.0, help="With --brackets: share of the simulator's photo items rendered from a train stack's ideal (its fusion at the best frame's level) instead of a corpus photo: real scenes, night ones among them, at every simulated exposure."),
    thumbnail_share: float = typer.Option(0.0, "--thumbnail-share", min=0.0, max=1.0, help="Share of training crops shown as thumbnails: shrunk 2-7x and enlarged back, as the analyzer shows a photo smaller than 256 px."),
    thumbnail_scale: tuple[float, float] = typer.Option((0.15, 0.5), "--thumbnail-scale", help="With --thumbnail-share: range of the shrink factor u, drawn log-uniformly (a 64 px photo through a 320 px copy is 0.2, through 512 0.125)."),
    local_share: Optional[float] = typer.Option(None, "--local-share", min=0.0, max=1.0, help="Corpus training data: share of re-exposed crops that may get local EV parts (gradients, vignettes, spots, regions, luma masks) on top of the global shift; the rest are a global shift alone [default: 1.0, all may]."),
    originals: Optional[float] = typer.Option(None, "--originals", min=0.0, max=1.0, help="Corpus training data: share of unmodified originals (label 0) [default: the simulator's]."),
    hdr_share: float = typer.Option(0.15, "--hdr-share", min=0.0, max=1.0, help="Corpus training data: share of crops cut from HDR panoramas (the rest from photos)."),
    step_bias_weight: float = typer.Option(0.0, "--step-bias-weight", min=0.0, help="Corpus data: weight of the per-step bias term (docs/MODEL.md, stage 31): each step also shows the network train renders of the validation recipe (original, -3..+3 EV) and pulls each exposure step's running mean error towards 0; 0 turns it off."),
    step_bias_anchors: int = typer.Option(4, "--step-bias-anchors", min=1, help="With --step-bias-weight: renders per step."),
    step_bias_rate: float = typer.Option(0.02, "--step-bias-rate", min=0.001, max=1.0, help="With --step-bias-weight: weight of a new render in its step's running bias (after the first 1/rate renders: their plain mean)."),
    step_bias_long_side: Optional[int] = typer.Option(None, "--step-bias-long-side", min=32, help="With --step-bias-weight or --order-weight: the working size the renders and pairs are shown at [default: the --init weights card's working_long_side, else 320]."),
    order_weight: float = typer.Option(0.0, "--order-weight", min=0.0, help="Corpus data: weight of the deep-dark order term (docs/MODEL.md, stage 40): each step also shows the network whole pairs of one scene one exposure step apart — train photos at -k and -(k+1) EV (k = 0..6) and, with --brackets, neighbouring frames of train stacks — and asks the darker to read more under-exposed; 0 turns it off."),
    order_pairs: int = typer.Option(2, "--order-pairs", min=1, help="With --order-weight: pairs per step."),
    order_bracket_share: float = typer.Option(0.5, "--order-bracket-share", min=0.0, max=1.0, help="With --order-weight and --brackets: share of the pairs that are neighbouring real bracket frames; 0: rendered photo pairs only."),
    step_bias_bracket_share: float = typer.Option(0.0, "--step-bias-bracket-share", min=0.0, max=1.0, help="With --step-bias-weight and --brackets: share of the term's draws that are real train bracket frames within ±3 EV of their best frame, each in the cell of its stop from the best frame (docs/MODEL.md, stage 37); 0: synthetic renders only."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start a new run from these weights (safetensors file or folder; same architecture) instead of a random init: fine-tuning."),
    samples_per_epoch: int = typer.Option(1_000_000, "--samples-per-epoch", min=1, help="Simulated crops per epoch (corpus data; every index is a different simulation, so keep it large)."),
    seed: int = typer.Option(0, "--seed", help="Seed of init, data order and simulation."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads [default: torch's choice]."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Data-loading worker processes [default: 1 on CPU, 8 on CUDA]."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="bf16 autocast on CUDA (ignored on CPU)."),
    checkpoint_every: float = typer.Option(180.0, "--checkpoint-every", min=1.0, help="Seconds between checkpoints."),
    validate_every: float = typer.Option(300.0, "--validate-every", min=1.0, help="Seconds between validations."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (only on a terminal)."),
) -> None:
    """Train the EAT-IEA model; resumable (re-run the same command to continue).

    The run folder keeps train.log, metrics.jsonl, checkpoint.pt and best/ (model.safetensors +
    card.json). Give --minutes and/or --steps as the budget.

    Examples:

        exposure train --data corpus/ --minutes 60 --threads 1 --out runs/main --export weights/

        exposure train --data /datasets/IEA40K --device cuda --batch-size 64 --minutes 30 --out runs/gpu

        exposure train --data corpus/ --model eat_iea_no_dwt --minutes 10 --out runs/ablation_no_dwt

        exposure train --data corpus/ --init weights/ --hdr-share 0.35 --lr 5e-4 --minutes 60 --out runs/finetune
    """
    from ..models import MODELS
    from ..registry import RegistryError
    from ..training import TrainConfig, train
    from ..training.sources import DataFormat, open_datasets

    if minutes is None and steps is None:
        _usage_error("give a budget: --minutes and/or --steps")
    try:
        MODELS.get(model)
    except RegistryError as exc:
        _usage_error(str(exc))
    device = device.lower()
    if not (device in {"cpu", "cuda", "auto"} or (device.startswith("cuda:") and device[5:].isdigit())):
        _usage_error(f"--device {device!r}: use cpu, cuda, cuda:N or auto")
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        _usage_error(f"--device {device}: this torch build sees no CUDA GPU")
    init_card: dict = {}
    if init is not None:
        from ..weights import WeightsError, resolve_weights, verify_weights

        try:
            init_card = verify_weights(resolve_weights(init)).card
        except WeightsError as exc:
            _usage_error(f"--init: {exc}")
        if init_card.get("architecture") != model:
            _usage_error(f"--init {init}: the weights are a {init_card.get('architecture')!r} model, not --model {model}")
    if step_bias_weight and not (data / "index.json").is_file():
        _usage_error(f"--step-bias-weight renders the corpus's train photos; {data} is not a corpus folder "
                     "(no index.json from `exposure data build`)")
    if step_bias_bracket_share and not (step_bias_weight and brackets):
        _usage_error("--step-bias-bracket-share draws real frames for the per-step bias term: it needs "
                     "--step-bias-weight and --brackets")
    if order_weight and not (data / "index.json").is_file():
        _usage_error(f"--order-weight renders the corpus's train photos; {data} is not a corpus folder "
                     "(no index.json from `exposure data build`)")
    # the working size the extra terms show whole images at (the analyzer's)
    term_long_side = int(step_bias_long_side or init_card.get("working_long_side") or 320)
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    config = TrainConfig(
        architecture=model,
        steps=steps,
        minutes=minutes,
        batch_size=batch_size or (64 if on_gpu else 16),
        crop=crop,
        lr=lr,
        explore_share=explore_share,
        seed=seed,
        device=device,
        amp=amp,
        threads=threads,
        workers=workers if workers is not None else (8 if on_gpu else 1),
        twin_share=twin_share,
        rank_weight=rank_weight,
        mean_weight=mean_weight,
        mean_loss=mean_loss.value,
        pixel_loss=pixel_loss.value,
        simulator={"global_ev": (min_ev, max_ev), **({"p_original": originals} if originals is not None else {}),
                   **({"p_local": local_share} if local_share is not None else {})},
        checkpoint_every_s=checkpoint_every,
        validate_every_s=validate_every,
        hdr_share=hdr_share,
        brackets=str(brackets) if brackets else None,
        bracket_share=bracket_share if brackets else 0.0,
        whole_view_share=whole_view_share if brackets else 0.0,
        bracket_ideal_share=bracket_ideal_share if brackets else 0.0,
        thumbnail_share=thumbnail_share,
        thumbnail_scale=(float(thumbnail_scale[0]), float(thumbnail_scale[1])),
        init_weights=str(init) if init else None,
        step_bias_weight=step_bias_weight,
        step_bias_corpus=str(data) if step_bias_weight else None,
        step_bias_anchors=step_bias_anchors,
        step_bias_rate=step_bias_rate,
        step_bias_long_side=term_long_side,
        step_bias_brackets=str(brackets) if step_bias_bracket_share else None,
        step_bias_bracket_share=step_bias_bracket_share,
        order_weight=order_weight,
        order_corpus=str(data) if order_weight else None,
        order_pairs=order_pairs,
        order_long_side=term_long_side,
        order_brackets=str(brackets) if (order_weight and brackets and order_bracket_share) else None,
        order_bracket_share=order_bracket_share if (order_weight and brackets) else 0.0,
    )
    try:
        train_set, val_set, data_info = open_datasets(
            data, DataFormat(data_format.value), crop=crop, seed=seed, samples_per_epoch=samples_per_epoch,
            simulator=config.simulator, hdr_share=config.hdr_share,
            brackets=config.brackets, bracket_share=config.bracket_share,
            whole_view_share=config.whole_view_share, bracket_ideal_share=config.bracket_ideal_share,
        )
    except (FileNotFoundError, ValueError) as exc:
        _usage_error(str(exc))
    callback = None
    bar = None
    if progress and sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("training"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                       TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), transient=False)
        task = bar.add_task("train", total=1.0, loss=float("nan"))
        bar.start()

        def callback(step: int, fraction: float, metrics: dict[str, float]) -> None:
            bar.update(task, completed=fraction, loss=metrics["loss"])

    try:
        result = train(config, train_set, out, val_dataset=val_set, card_extra=data_info, export_dir=export,
                       progress_callback=callback)
    finally:
        if bar is not None:
            bar.stop()
    best = "n/a" if result.best_val_mae is None else f"{result.best_val_mae:.4f}"
    typer.echo(f"trained {result.steps} steps in {result.elapsed_s / 60:.1f} min; best validation MAE {best}; "
               f"weights in {result.best_dir}" + (f" and {export}" if export else ""))


def register(app: typer.Typer) -> None:
    """Add ``exposure train`` to `app`."""
    app.command("train")(train_command)
