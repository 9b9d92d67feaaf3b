"""The training loop: resumable, time- or step-budgeted, CPU or CUDA (bf16 autocast), exports weights.

One run lives in one folder (``out``): ``train.log`` (human-readable), ``metrics.jsonl`` (one JSON line per
log interval and per validation), ``checkpoint.pt`` (latest state, written atomically every
``checkpoint_every_s`` seconds and at the end) and ``best/`` (the best-by-validation weights + card, the
shippable pair). Restarting the same command resumes from ``checkpoint.pt`` where it stopped: step count,
elapsed training time, model, optimiser and RNG states are all restored, so a time-budgeted run keeps its
schedule.

Schedules run on *progress* in [0, 1] = max(step / steps, elapsed / budget): learning rate (linear
warm-up then cosine decay) and the EAT explore/exploit schedule (exploration strength decays linearly to 0
over the first ``explore_share`` of progress, offsets are free afterwards).

Checkpoints hold only tensors, numbers and strings, are written with ``torch.save`` and read back with
``torch.load(weights_only=True)`` (no arbitrary unpickling); exported weights are safetensors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger("exposure_cli.training")

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in checkpoints and in the exported weights card).

    Attributes:
        architecture: Registered model name (exposure_cli.models).
        model_config: Overrides of the architecture's config.
        steps: Step budget (None = only the time budget counts).
        minutes: Wall-clock training budget in minutes (None = only steps count).
        batch_size: Crops per optimisation step.
        crop: Training crop size (pixels).
        lr: Peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_share: Share of progress spent warming the learning rate up.
        explore_share: Share of progress with the EAT exploration schedule active.
        explore_strength: Initial exploration strength (damp/amplify factor), decays to 0 over the share.
        mean_weight: Weight of the per-image mean-residual term of the loss (sign/ordering of exposure).
        mean_loss, pixel_loss: "l1" or "l2" for the mean-residual and per-pixel terms (see exposure_loss).
        gradient_weight: Weight of the map-gradient term (edges of the map where the label has them).
        seed: Seed of model init, data order and augmentation.
        device: "cpu", "cuda", "cuda:N" or "auto".
        amp: Autocast bf16 on CUDA (ignored on CPU).
        threads: torch CPU threads (None = torch default).
        workers: DataLoader worker processes.
        log_every_s: Seconds between log lines.
        checkpoint_every_s: Seconds between checkpoints.
        validate_every_s: Seconds between validations (also at the end).
        val_batches: Validation batches per validation.
        grad_clip: Gradient-norm clip.
        twin_share: Share of each batch made of EV twins of the other crops (≤ 0.5; see :mod:`.twins`).
        twin_ev: Range of the twins' extra exposure |δ| in stops.
        rank_weight: Weight of the twin ranking term.
        simulator: Overrides of the corpus simulator's config (``SimulatorConfig``), e.g. a global EV range
            wider than the ±3 EV the evaluation sweeps, so the sweep's ends are not the prior's edges.
        hdr_share: Share of corpus training crops cut from HDR panoramas (the rest come from photos).
        brackets: Folder of real exposure brackets whose train/val stacks are mixed into the training and
            validation streams (``bracket_share`` of the items each).
        thumbnail_share: Share of each step's crops (before twins are made) replaced by thumbnail views:
            shrunk and enlarged back, as the analyzer shows a photo smaller than its native minimum
            (see :mod:`.thumbnails`); their twins inherit the view.
        thumbnail_scale: Range ``(lo, hi)`` of a thumbnail view's shrink factor, drawn log-uniformly.
        init_weights: Start a *new* run from these weights (a ``model.safetensors`` file or its folder, checked
            against its card; same architecture and config) instead of a random init — fine-tuning. A resumed
            run ignores it: the checkpoint already holds the weights.
        init_sha256: The sha256 of ``init_weights`` (filled in when the run starts; recorded in the card).
        step_bias_weight: Weight of the per-step bias term (:mod:`.step_bias`; 0 turns it off): each step
            also shows the network ``step_bias_anchors`` train renders of the validation recipe at
            ``step_bias_long_side`` and pulls every exposure step's running mean error towards 0.
        step_bias_corpus: The corpus those renders come from (its train split only).
        step_bias_anchors: Renders per step.
        step_bias_rate: Weight of a new render in its cell's running bias (see ``RunningCellBias``).
        step_bias_long_side: The working size the renders are shown at (the analyzer's).
        step_bias_brackets: Optional bracket folder: a share of the term's draws are its real train frames,
            each in the cell of its stop from the best frame (docs/MODEL.md, stage 37).
        step_bias_bracket_share: That share (with ``step_bias_brackets``).
        order_weight: Weight of the deep-dark order term (:mod:`.order_pairs`, docs/MODEL.md stage 40; 0 turns
            it off): each step also shows the network ``order_pairs`` whole pairs of one scene one exposure
            step apart (train photos at −k / −(k + 1) EV, train bracket neighbours) and asks the darker view
            to read more under-exposed.
        order_corpus: The corpus whose train photos render the synthetic pairs.
        order_pairs: Pairs per step.
        order_long_side: The working size the pairs are shown at (the analyzer's).
        order_brackets: Optional bracket folder whose train stacks give the real pairs.
        order_bracket_share: Share of pairs that are real (with ``order_brackets``).
    """

    architecture: str = "eat_iea"
    model_config: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 16
    crop: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_share: float = 0.03
    explore_share: float = 0.3
    explore_strength: float = 0.5
    mean_weight: float = 1.0
    mean_loss: str = "l1"
    pixel_loss: str = "l1"
    gradient_weight: float = 0.5
    seed: int = 0
    device: str = "cpu"
    amp: bool = True
    threads: int | None = None
    workers: int = 0
    log_every_s: float = 30.0
    checkpoint_every_s: float = 180.0
    validate_every_s: float = 300.0
    val_batches: int = 8
    grad_clip: float = 1.0
    twin_share: float = 0.5
    twin_ev: tuple[float, float] = (0.5, 2.0)
    rank_weight: float = 1.0
    simulator: dict[str, Any] = field(default_factory=lambda: {"global_ev": (-8.0, 4.0)})
    hdr_share: float = 0.15
    brackets: str | None = None
    bracket_share: float = 0.0
    whole_view_share: float = 0.0
    bracket_ideal_share: float = 0.0
    thumbnail_share: float = 0.0
    thumbnail_scale: tuple[float, float] = (0.15, 0.5)
    init_weights: str | None = None
    init_sha256: str | None = None
    step_bias_weight: float = 0.0
    step_bias_corpus: str | None = None
    step_bias_anchors: int = 4
    step_bias_rate: float = 0.02
    step_bias_long_side: int = 320
    step_bias_brackets: str | None = None
    step_bias_bracket_share: float = 0.0
    order_weight: float = 0.0
    order_corpus: str | None = None
    order_pairs: int = 2
    order_long_side: int = 320
    order_brackets: str | None = None
    order_bracket_share: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What a finished (or budget-stopped) run reports."""

    steps: int
    elapsed_s: float
    last_loss: float
    best_val_mae: float | None
    best_dir: Path | None
    history: list[dict[str, Any]]


#: A squared term is divided by 2·L2_SCALE, so its gradient equals the L1 term's at that error.
L2_SCALE = 0.05
MEAN_L2_SCALE = L2_SCALE  # the name stage-5…7 runs' docs use


def _penalty(diff, kind: str, what: str):
    """Mean of |diff| (``l1``) or of diff²/(2·L2_SCALE) (``l2``)."""
    if kind == "l2":
        return (diff * diff).mean() / (2.0 * L2_SCALE)
    if kind == "l1":
        return diff.abs().mean()
    raise ValueError(f"{what} must be 'l1' or 'l2', not {kind!r}")


def exposure_loss(pred, target, mean_weight: float = 1.0, gradient_weight: float = 0.5, mean_loss: str = "l1",
                  pixel_loss: str = "l1"):
    """Per-pixel term + per-image mean-residual term + L1 of the map's finite-difference gradients.

    The mean term makes the *overall* verdict (how over or under the photo is) count as much as the pixels,
    which is what holistic scores, EV-sweep ordering and the ROC bars measure; the gradient term asks map
    edges to sit where the label's edges are. Each of the first two is L1 or a scaled square (L2_SCALE):
    L1 pulls a verdict to the conditional *median* of what such a photo (pixel) could be, which shrinks
    large errors towards zero when the exposure is ambiguous — a black pixel is "fine" in the many
    well-exposed photos with black shadows and 0.4 under in a frame pushed 8 stops dark; L2 aims at the
    conditional mean, so the average verdict per exposure step is not biased towards "fine".
    The returned ``l1`` part is always the plain per-pixel L1 (comparable across runs).
    """
    l1 = (pred - target).abs().mean()
    pixel_term = l1 if pixel_loss == "l1" else _penalty(pred - target, pixel_loss, "pixel_loss")
    diff = pred.mean(dim=(1, 2, 3)) - target.mean(dim=(1, 2, 3))
    mean_term = _penalty(diff, mean_loss, "mean_loss")
    loss = pixel_term + mean_weight * mean_term
    if gradient_weight:
        dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
        dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
        grad_term = (dx(pred) - dx(target)).abs().mean() + (dy(pred) - dy(target)).abs().mean()
        loss = loss + gradient_weight * grad_term
    return loss, {"l1": float(l1.detach()), "mean": float(mean_term.detach())}


def progress_of(step: int, elapsed_s: float, config: TrainConfig) -> float:
    """Training progress in [0, 1] from whichever budget (steps or minutes) is further along."""
    parts = []
    if config.steps:
        parts.append(step / config.steps)
    if config.minutes:
        parts.append(elapsed_s / (config.minutes * 60.0))
    return min(1.0, max(parts)) if parts else 0.0


def learning_rate(progress: float, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if progress < config.warmup_share:
        return config.lr * max(progress / max(config.warmup_share, 1e-9), 0.02)
    span = (progress - config.warmup_share) / max(1.0 - config.warmup_share, 1e-9)
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(span, 1.0))))


def explore_strength(progress: float, config: TrainConfig) -> float:
    """Exploration strength: decays linearly from its start value to 0 over the exploration share."""
    if config.explore_share <= 0 or progress >= config.explore_share:
        return 0.0
    return config.explore_strength * (1.0 - progress / config.explore_share)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def to_tensor_batch(batch: Any, device: Any):
    """A dataset batch (``image``, ``residual``) as float32 tensors on `device`, residuals N×1×H×W."""
    import torch

    images, residuals = batch["image"], batch["residual"]
    if not torch.is_tensor(images):
        images = torch.as_tensor(images)
    if not torch.is_tensor(residuals):
        residuals = torch.as_tensor(residuals)
    if residuals.dim() == 3:
        residuals = residuals.unsqueeze(1)
    return images.to(device, torch.float32, non_blocking=True), residuals.to(device, torch.float32, non_blocking=True)


def _endless(loader_factory: Callable[[int], Iterable[Any]], start_epoch: int) -> Iterator[tuple[int, Any]]:
    epoch = start_epoch
    while True:
        empty = True
        for batch in loader_factory(epoch):
            empty = False
            yield epoch, batch
        if empty:
            raise RuntimeError("training dataset yielded no batches")
        epoch += 1


def _twin_count(config: TrainConfig) -> int:
    return min(int(round(config.batch_size * config.twin_share)), config.batch_size // 2)


def _make_loader(dataset: Any, config: TrainConfig, epoch: int, shuffle: bool, seed_offset: int = 0,
                 batch_size: int | None = None):
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    generator = torch.Generator()
    generator.manual_seed(config.seed * 1_000_003 + epoch + seed_offset)
    iterable = isinstance(dataset, IterableDataset)
    batch_size = batch_size or config.batch_size
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and not iterable,
        drop_last=not iterable and len(dataset) >= batch_size,
        num_workers=config.workers,
        generator=generator,
        persistent_workers=False,
        worker_init_fn=_worker_init,
    )


def _worker_init(worker_id: int) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    seed = torch.initial_seed() % (2**32)
    np.random.seed(seed)
    random.seed(seed)


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch build sees no CUDA GPU")
    return device


def evaluate_mae(model, batches: list[Any], device: str, amp_dtype=None) -> dict[str, float]:
    """Validation MAE of the maps and of the per-image mean residual over fixed batches."""
    import torch

    was_training = model.training
    model.eval()
    total_abs, total_px, mean_abs, n_images = 0.0, 0, 0.0, 0
    with torch.inference_mode():
        for batch in batches:
            images, target = to_tensor_batch(batch, device)
            with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = model(images)
            pred = pred.float()
            total_abs += float((pred - target).abs().sum())
            total_px += target.numel()
            mean_abs += float((pred.mean(dim=(1, 2, 3)) - target.mean(dim=(1, 2, 3))).abs().sum())
            n_images += target.shape[0]
    model.train(was_training)
    return {"val_mae": total_abs / max(total_px, 1), "val_mean_abs_err": mean_abs / max(n_images, 1)}


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    from ..atomic import atomic_write

    atomic_write(path, lambda fh: torch.save(obj, fh))


def train(
    config: TrainConfig,
    train_dataset: Any,
    out_dir: str | os.PathLike,
    val_dataset: Any | None = None,
    card_extra: dict[str, Any] | None = None,
    export_dir: str | os.PathLike | None = None,
    progress_callback: Callable[[int, float, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train (or resume) a model.

    Args:
        config: The run's settings; must set `steps`, `minutes` or both.
        train_dataset: Map-style or iterable torch dataset of ``{"image": 3×H×W, "residual": 1×H×W}``.
        out_dir: Run folder (log, metrics, checkpoint, best weights). An existing checkpoint is resumed.
        val_dataset: Optional validation dataset (same item format); selects the best weights.
        card_extra: Extra fields for the weights card (data manifest hash, data source, …).
        export_dir: Also copy the best weights + card here every time they improve (e.g. ``weights/``).
        progress_callback: Called as ``(step, progress, metrics)`` after each step (progress bars).

    Returns:
        A :class:`TrainResult` summary.
    """
    import torch

    from ..weights import make_card, save_weights
    from ..models import create_model, model_config
    from .thumbnails import thumbnail_views
    from .twins import make_twins, ranking_loss

    if not config.steps and not config.minutes:
        raise ValueError("set a step budget (steps) or a time budget (minutes), or both")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _attach_file_log(out / "train.log")
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = _resolve_device(config.device)
    amp_dtype = torch.bfloat16 if (config.amp and device.startswith("cuda")) else None
    _seed_everything(config.seed)

    full_config = {**model_config(config.architecture), **config.model_config}
    model = create_model(config.architecture, full_config).to(device)
    if device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )

    step, elapsed, epoch, best_mae, history = 0, 0.0, 0, None, []
    step_bias_state: str | None = None
    checkpoint_path = out / CHECKPOINT_FILE
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if state.get("architecture") != config.architecture:
            raise ValueError(
                f"{checkpoint_path} holds a {state.get('architecture')!r} run, not {config.architecture!r}; "
                "use another --out folder"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, epoch = int(state["step"]), float(state["elapsed_s"]), int(state["epoch"])
        best_mae = state.get("best_val_mae")
        torch.set_rng_state(state["torch_rng"])
        history = json.loads(state.get("history_json", "[]"))
        config.init_sha256 = state.get("init_sha256") or config.init_sha256
        step_bias_state = state.get("step_bias_json") or None
        log.info("resumed %s at step %d (%.1f min trained)", checkpoint_path, step, elapsed / 60)
    else:
        if config.init_weights:
            from ..weights import load_model, resolve_weights

            init_model, loaded = load_model(resolve_weights(config.init_weights), "cpu")
            if loaded.card.get("architecture") != config.architecture or dict(loaded.card.get("config") or {}) != dict(
                    json.loads(json.dumps(full_config))):
                raise ValueError(
                    f"--init {config.init_weights}: its card describes a {loaded.card.get('architecture')!r} model "
                    f"with another config than this {config.architecture!r} run"
                )
            model.load_state_dict(init_model.state_dict())
            config.init_sha256 = loaded.sha256
            log.info("initialised from %s (sha256 %s)", loaded.path, loaded.sha256)
        log.info("new run in %s: %s", out, json.dumps(config.to_dict(), sort_keys=True))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s: %d parameters, device %s, amp %s", config.architecture, n_params, device, amp_dtype)

    val_batches: list[Any] = []
    if val_dataset is not None:
        val_config = TrainConfig(**{**config.to_dict(), "workers": 0})
        for i, batch in enumerate(_make_loader(val_dataset, val_config, 0, shuffle=False, seed_offset=7)):
            if i >= config.val_batches:
                break
            val_batches.append(batch)

    def card(metrics: dict[str, Any]) -> dict[str, Any]:
        training = {**config.to_dict(), "steps_done": step, "minutes_done": round(elapsed / 60, 2)}
        return {**make_card(config.architecture, full_config, n_params, training=training, validation=metrics),
                **(card_extra or {})}

    def save_checkpoint() -> None:
        _atomic_torch_save(
            {
                "architecture": config.architecture,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed_s": elapsed,
                "epoch": epoch,
                "best_val_mae": best_mae,
                "torch_rng": torch.get_rng_state(),
                "history_json": json.dumps(history),
                "init_sha256": config.init_sha256 or "",
                "step_bias_json": running_bias.to_json() if running_bias is not None else "",
            },
            checkpoint_path,
        )

    def validate() -> None:
        nonlocal best_mae
        if not val_batches:
            return
        metrics = evaluate_mae(model, val_batches, device, amp_dtype)
        record = {"step": step, "minutes": round(elapsed / 60, 2), **metrics}
        history.append(record)
        _append_metrics(out, {"kind": "val", **record})
        improved = best_mae is None or metrics["val_mae"] < best_mae
        log.info("validation step %d: MAE %.4f, mean-residual error %.4f%s", step, metrics["val_mae"],
                 metrics["val_mean_abs_err"], "  (best so far)" if improved else "")
        if improved:
            best_mae = metrics["val_mae"]
            save_weights(model, out / "best", card(record))
            if export_dir is not None:
                save_weights(model, export_dir, card(record))

    anchors, running_bias, anchor_rng, views = None, None, None, None
    if config.step_bias_weight:
        import numpy as np

        from .step_bias import RunningCellBias, StepAnchors

        if not config.step_bias_corpus:
            raise ValueError("step_bias_weight needs step_bias_corpus (a corpus folder to render train photos from)")
        anchors = StepAnchors(config.step_bias_corpus, config.step_bias_long_side,
                              brackets=config.step_bias_brackets, bracket_share=config.step_bias_bracket_share)
        views = anchors.bracket_views
        running_bias = (RunningCellBias.from_json(step_bias_state) if step_bias_state
                        else RunningCellBias(config.step_bias_rate))
        anchor_rng = np.random.default_rng([config.seed, 31, step])

    pairs, pair_rng = None, None
    if config.order_weight:
        import numpy as np

        from .order_pairs import OrderPairs

        if not config.order_corpus:
            raise ValueError("order_weight needs order_corpus (a corpus folder to render train photos from)")
        order_brackets = config.order_brackets
        if (order_brackets and views is not None and views.working_long_side == config.order_long_side
                and Path(order_brackets).resolve() == views.root.resolve()):
            order_brackets = views  # the same train frames at the same size: decoded and kept once for both terms
        pairs = OrderPairs(config.order_corpus, config.order_long_side, brackets=order_brackets,
                           bracket_share=config.order_bracket_share)
        pair_rng = np.random.default_rng([config.seed, 40, step])

    _stop_on_sigterm()
    model.train()
    # The sample order depends on the step a (resumed) run starts from, so a resume sees new samples.
    start_step = step
    n_twins = _twin_count(config)
    data = _endless(lambda e: _make_loader(train_dataset, config, e, shuffle=True, seed_offset=7919 * start_step,
                                           batch_size=config.batch_size - n_twins), epoch)
    twin_generator = torch.Generator().manual_seed(config.seed * 1_000_003 + 17 + start_step)
    thumbnail_generator = torch.Generator().manual_seed(config.seed * 1_000_033 + 29 + start_step)
    last_log = last_ckpt = last_val = time.monotonic()
    window: list[float] = []
    window_parts: dict[str, float] = {"l1": 0.0, "mean": 0.0, "rank": 0.0, "step_bias": 0.0, "order": 0.0}
    last_loss = float("nan")
    progress = progress_of(step, elapsed, config)
    try:
        while progress < 1.0:
            tick = time.perf_counter()
            epoch, batch = next(data)
            images, target = to_tensor_batch(batch, device)
            if config.thumbnail_share:
                images, target, _ = thumbnail_views(images, target, config.thumbnail_share, thumbnail_generator,
                                                    tuple(config.thumbnail_scale))
            if n_twins:
                twins, twin_target, _ = make_twins(images[:n_twins].cpu(), target[:n_twins].cpu(), config.twin_ev,
                                                   twin_generator)
                images = torch.cat([images, twins.to(device)])
                target = torch.cat([target, twin_target.to(device)])
            if device.startswith("cuda"):
                images = images.contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(progress, config)
            if hasattr(model, "set_explore"):
                model.set_explore(explore_strength(progress, config))
            with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = model(images)
            pred = pred.float()
            loss, parts = exposure_loss(pred, target, config.mean_weight, config.gradient_weight, config.mean_loss,
                                         config.pixel_loss)
            parts["rank"] = 0.0
            if n_twins and config.rank_weight:
                rank = ranking_loss(pred[:n_twins], pred[-n_twins:], target[:n_twins], target[-n_twins:])
                loss = loss + config.rank_weight * rank
                parts["rank"] = float(rank.detach())
            parts["step_bias"] = 0.0
            if anchors is not None:
                bias_term = _step_bias_term(model, anchors, running_bias, anchor_rng, config, device, amp_dtype)
                loss = loss + config.step_bias_weight * bias_term
                parts["step_bias"] = running_bias.largest()
            parts["order"] = 0.0
            if pairs is not None:
                order = _order_term(model, pairs, pair_rng, config, device, amp_dtype)
                loss = loss + config.order_weight * order
                parts["order"] = float(order.detach())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            elapsed += time.perf_counter() - tick
            progress = progress_of(step, elapsed, config)
            last_loss = float(loss.detach())
            window.append(last_loss)
            for key in window_parts:
                window_parts[key] += parts[key]
            if progress_callback is not None:
                progress_callback(step, progress, {"loss": last_loss})
            now = time.monotonic()
            if now - last_log >= config.log_every_s or progress >= 1.0:
                record = {
                    "kind": "train", "step": step, "epoch": epoch, "minutes": round(elapsed / 60, 2),
                    "progress": round(progress, 4), "loss": sum(window) / len(window),
                    "l1": window_parts["l1"] / len(window), "mean_err": window_parts["mean"] / len(window),
                    "rank": window_parts["rank"] / len(window),
                    **({"order": window_parts["order"] / len(window)} if pairs is not None else {}),
                    **({"step_bias_largest": window_parts["step_bias"] / len(window),
                        "step_bias": dict(sorted(running_bias.bias.items()))} if running_bias is not None else {}),
                    "lr": optimizer.param_groups[0]["lr"], "explore": explore_strength(progress, config),
                    "steps_per_s": len(window) / max(now - last_log, 1e-9),
                }
                _append_metrics(out, record)
                log.info("step %d (%.0f%%) loss %.4f l1 %.4f mean-err %.4f rank %.4f lr %.2e explore %.2f "
                         "%.2f steps/s", step, 100 * progress, record["loss"], record["l1"], record["mean_err"],
                         record["rank"], record["lr"], record["explore"], record["steps_per_s"])
                window, window_parts, last_log = [], {k: 0.0 for k in window_parts}, now
            if now - last_val >= config.validate_every_s:
                validate()
                last_val = time.monotonic()
            if now - last_ckpt >= config.checkpoint_every_s:
                save_checkpoint()
                last_ckpt = time.monotonic()
    finally:
        save_checkpoint()
    validate()
    if not val_batches:
        # Without validation data the last weights are the best we know.
        save_weights(model, out / "best", card({"step": step}))
        if export_dir is not None:
            save_weights(model, export_dir, card({"step": step}))
    save_checkpoint()
    log.info("finished: %d steps, %.1f min, best validation MAE %s", step, elapsed / 60, best_mae)
    return TrainResult(step, elapsed, last_loss, best_mae, out / "best", history)


@contextlib.contextmanager
def _batch_norm_as_at_inference(model):
    """Within the block the model's batch-norm layers in training mode read their running statistics (as the
    analyzer does) and do not update them; they are put back in training mode afterwards."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    try:
        for m in norms:
            m.eval()
        yield
    finally:
        for m in norms:
            m.train()


def _step_bias_term(model, anchors, running_bias, rng, config: TrainConfig, device: str, amp_dtype):
    """The per-step bias term on ``config.step_bias_anchors`` fresh renders, each its own forward pass (whole
    renders differ in shape) with batch normalisation reading its running statistics, as at inference: the
    gradient is the analyzer's function's, and one-image batches never enter those statistics."""
    import torch

    from .step_bias import step_bias_loss

    preds, labels, cells = [], [], []
    with _batch_norm_as_at_inference(model):
        for _ in range(config.step_bias_anchors):
            anchor = anchors.draw(rng)
            image = torch.from_numpy(anchor.image).permute(2, 0, 1)[None].to(device, torch.float32)
            with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = model(image)
            preds.append(pred.float().mean())
            labels.append(float(anchor.label.mean()))
            cells.append(anchor.cell)
    return step_bias_loss(torch.stack(preds), torch.tensor(labels, device=device), cells, running_bias,
                          L2_SCALE)


def _order_term(model, pairs, rng, config: TrainConfig, device: str, amp_dtype):
    """The deep-dark order term on ``config.order_pairs`` fresh pairs, each pair one two-image forward pass
    with batch normalisation reading its running statistics, as at inference (see :func:`_step_bias_term`)."""
    import numpy as np
    import torch

    from .order_pairs import order_loss

    means, labels = [], []
    with _batch_norm_as_at_inference(model):
        for _ in range(config.order_pairs):
            pair = pairs.draw(rng)
            images = torch.from_numpy(np.stack([pair.dark, pair.bright])).permute(0, 3, 1, 2).to(device, torch.float32)
            with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = model(images)
            means.append(pred.float().mean(dim=(1, 2, 3)))
            labels.append((pair.dark_label, pair.bright_label))
    means_t = torch.stack(means)
    labels_t = torch.tensor(labels, dtype=means_t.dtype, device=means_t.device)
    return order_loss(means_t[:, 0], means_t[:, 1], labels_t[:, 0], labels_t[:, 1])


def _stop_on_sigterm() -> None:
    """Turn SIGTERM (``kill PID``) into SystemExit so the loop's ``finally`` writes a last checkpoint.

    Background runs (``nohup … &``) ignore SIGINT, so SIGTERM is how they are stopped.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def _handler(signum: int, frame: Any) -> None:
        log.info("SIGTERM: writing a checkpoint and stopping")
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, _handler)


def _append_metrics(out: Path, record: dict[str, Any]) -> None:
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _attach_file_log(path: Path) -> None:
    """Log to the run's train.log (once per path) and to stderr when nothing else is configured."""
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path.resolve():
            return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in log.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(stream)


__all__ = ["TrainConfig", "TrainResult", "exposure_loss", "explore_strength", "learning_rate", "to_tensor_batch", "train"]
