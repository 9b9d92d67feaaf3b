"""A training term that keeps the mean verdict honest at every exposure step (docs/MODEL.md, stage 31).

The per-image mean term (``exposure_loss``) pulls each image's mean residual towards its label; with an L2
term its optimum is the conditional mean *given the image*. The per-step bars of ``exposure eval`` ask
something else: averaged over every photo shown at one exposure step (−3 … +3 EV), the mean predicted
residual must equal the mean label. Where one frame cannot say how far it is from its own ideal (a dark
scene brightened looks like an ordinary photo) the two disagree, and stages 26–30 showed that no output
stage on the network's existing features can close the gap without giving up clipped highlights and
crushed shadows. This term puts the step means into the features' training:

* :class:`StepAnchors` renders *train* photos and HDR crops by the validation set's recipe
  (:func:`exposure_cli.data.valset.render_items`, from the same :func:`~exposure_cli.data.valset.recipe_photos`
  and :func:`~exposure_cli.data.valset.recipe_crops`: the original, or a pure global shift of −3 … +3 EV) at
  the analyzer's working size, each with its *cell* (``photo +2 EV``, ``hdr original``, …, the cells of
  :func:`exposure_cli.training.fit_residual_calibration.cell_of`). Nothing of val or the lockbox is read.
* :class:`RunningCellBias` keeps each cell's running mean of (mean predicted − mean label): a plain mean
  over its first ``1 / rate`` images, an exponential average after.
* :func:`step_bias_loss` is ``mean_i(b_cell(i) · d_i) / L2_SCALE`` with ``b`` held fixed: its gradient
  moves every image of a biased cell against that cell's bias, which is the gradient of
  ``½ Σ_cells bias²`` with the bias estimated over many steps instead of one batch.

With ``brackets`` (docs/MODEL.md, stage 37) a share of the draws are instead *real* train bracket frames
within ±3 EV of their stack's best frame, whole, at the working size, each in the cell of its stop from
the best frame (``bracket +2 EV``): the real stacks' per-step bias — what ``exposure eval``'s per-EV table
and the stops of correction read — enters the same term.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.valset import HDR_SWEEP_EVS, SWEEP_EVS

#: The validation sweeps' global shifts (photos), and with the metered exposure (HDR crops).
PHOTO_EVS = SWEEP_EVS
HDR_EVS = HDR_SWEEP_EVS
#: Real bracket frames within this many stops of their stack's best frame are drawn (the EV bar's window).
BRACKET_WINDOW = 3


def bracket_cell(relative_ev: float) -> str:
    """The cell of a real bracket frame: its stop from the best frame, rounded (``bracket -2 EV``)."""
    return f"bracket {int(np.round(relative_ev)):+d} EV"


@dataclass(frozen=True)
class Anchor:
    """One render at the working size: RGB H×W×3 float32 in [0, 1], its label H×W, its cell."""

    image: np.ndarray
    label: np.ndarray
    cell: str


class StepAnchors:
    """Train photos and HDR crops of a corpus rendered at random cells of the validation recipe.

    Args:
        corpus: Folder written by ``exposure data build``.
        working_long_side: Long side the network sees (the analyzer's, 320 for the shipped weights).
        split: Which photos render (``train``: the only split training may read).
        brackets: Optional bracket folder (``exposure data brackets``, or its :class:`BracketViews` at this
            working size, to share them with another term); its `split` stacks' frames within
            :data:`BRACKET_WINDOW` stops of the best frame become draws of their own cells.
        bracket_share: Share of draws that are real bracket frames (with `brackets`; 0 < share ≤ 1).
    """

    def __init__(self, corpus: str | Path, working_long_side: int = 320, split: str = "train",
                 brackets: "str | Path | BracketViews | None" = None, bracket_share: float = 0.0) -> None:
        from ..data.valset import recipe_crops, recipe_photos

        self.working_long_side = int(working_long_side)
        self.photos = [unit.ideal for unit in recipe_photos(Path(corpus), split)]
        self.hdr = [(unit.radiance, unit.ideal) for unit in recipe_crops(Path(corpus), split)]
        if not self.photos and not self.hdr:
            raise ValueError(f"{corpus}: no photos or HDR crops in split {split!r} to render step anchors from")
        if brackets is not None and not 0.0 < bracket_share <= 1.0:
            raise ValueError(f"bracket_share must be in (0, 1] with brackets, got {bracket_share}")
        self.bracket_share = float(bracket_share) if brackets is not None else 0.0
        #: cell → [(stack, frame index)], the real frames each bracket cell draws from.
        self.bracket_frames: dict[str, list[tuple[Any, int]]] = {}
        self.bracket_views: BracketViews | None = None
        if brackets is not None:
            self.bracket_views = BracketViews.of(brackets, split, self.working_long_side)
            for stack in self.bracket_views.stacks:
                for k, rel in enumerate(stack.relative_ev_to_best):
                    if abs(rel) <= BRACKET_WINDOW:
                        self.bracket_frames.setdefault(bracket_cell(rel), []).append((stack, k))
            if not self.bracket_frames:
                raise ValueError(f"{self.bracket_views.root}: no {split} bracket frames within ±{BRACKET_WINDOW} EV "
                                 "of a best frame")
        self._bracket_cells = sorted(self.bracket_frames)

    @property
    def cells(self) -> list[str]:
        """Every cell a draw can land in."""
        from .fit_residual_calibration import cell_of

        out = []
        if self.photos:
            out += [cell_of("photo", "original", 0.0)] + [cell_of("photo", "sweep", ev) for ev in PHOTO_EVS]
        if self.hdr:
            out += [cell_of("hdr", "original", 0.0)] + [cell_of("hdr", "sweep", ev) for ev in HDR_EVS]
        return out + self._bracket_cells

    def draw(self, rng: np.random.Generator) -> Anchor:
        """A random unit of a random group (photos and HDR crops half each when both exist), shown at a
        uniformly drawn cell of its group, resized to the working size (area), its label likewise; with
        brackets, a `bracket_share` of draws are a real frame of a uniformly drawn bracket cell instead."""
        from ..data.simulator import render_ev
        from .fit_residual_calibration import cell_of

        if self.bracket_share and rng.random() < self.bracket_share:
            cell = self._bracket_cells[int(rng.integers(len(self._bracket_cells)))]
            stack, k = self.bracket_frames[cell][int(rng.integers(len(self.bracket_frames[cell])))]
            return Anchor(*self.bracket_views.view(stack, k), cell)

        use_hdr = bool(self.hdr) and (not self.photos or rng.random() < 0.5)
        if use_hdr:
            radiance, ideal = self.hdr[int(rng.integers(len(self.hdr)))]
            evs, linear = HDR_EVS, radiance
        else:
            ideal = self.photos[int(rng.integers(len(self.photos)))]
            evs, linear = PHOTO_EVS, None
        choice = int(rng.integers(len(evs) + 1))  # the last choice is the original
        group = "hdr" if use_hdr else "photo"
        if choice == len(evs):
            image, label, cell = ideal, np.zeros(ideal.shape[:2], np.float32), cell_of(group, "original", 0.0)
        else:
            image, label = render_ev(ideal, evs[choice], linear=linear)
            cell = cell_of(group, "sweep", evs[choice])
        return Anchor(*at_working_size(image, label, self.working_long_side), cell)


def at_working_size(image: np.ndarray, label: np.ndarray, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """An image resized to the analyzer's working size (area) and its label resized to match, float32."""
    import cv2

    from ..imageops import to_working_size

    small = to_working_size(image, long_side)
    if label.shape != small.shape[:2]:
        label = cv2.resize(label.astype(np.float32), (small.shape[1], small.shape[0]),
                           interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small, np.float32), label.astype(np.float32)


class BracketViews:
    """The frames of a bracket folder's `split` stacks at the working size, each decoded and resized once and
    kept only at that size (a 1024-px frame and its label take about 3.5 MB, at 320 px about 1 MB), shared by
    the training terms that draw real frames (:class:`StepAnchors`, :class:`~.order_pairs.OrderPairs`).

    Args:
        brackets: Folder written by ``exposure data brackets``.
        split: Which stacks (``train``: the only split training may read).
        working_long_side: Long side the network sees.
    """

    def __init__(self, brackets: str | Path, split: str = "train", working_long_side: int = 320) -> None:
        from ..data.brackets import load_stacks

        self.root, self.split, self.working_long_side = Path(brackets), split, int(working_long_side)
        self.stacks = load_stacks(self.root, split)
        self._views: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def of(cls, brackets: "str | Path | BracketViews", split: str, working_long_side: int) -> "BracketViews":
        """`brackets` itself when it already is the views of that split at that size, else new views of it."""
        if isinstance(brackets, BracketViews):
            if (brackets.split, brackets.working_long_side) != (split, int(working_long_side)):
                raise ValueError(f"bracket views of split {brackets.split!r} at {brackets.working_long_side} px "
                                 f"given where split {split!r} at {working_long_side} px is needed")
            return brackets
        return cls(brackets, split, working_long_side)

    def view(self, stack: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame `k` of `stack` as float32 RGB in [0, 1] at the working size, and its label at the same size."""
        key = (stack.id, k)
        if key not in self._views:
            image = stack.frame(k, keep=False).astype(np.float32) / 255.0
            self._views[key] = at_working_size(image, stack.label(k, keep=False), self.working_long_side)
        return self._views[key]


class RunningCellBias:
    """Each cell's running mean of (mean predicted − mean label) residual.

    Args:
        rate: Weight of a new image once a cell has seen ``1 / rate`` of them (before: the plain mean).
    """

    def __init__(self, rate: float = 0.02) -> None:
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        self.rate = float(rate)
        self.bias: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def update(self, cell: str, difference: float) -> float:
        """Add one image's difference to its cell; returns the cell's updated bias."""
        n = self.count.get(cell, 0) + 1
        weight = max(1.0 / n, self.rate)
        self.bias[cell] = (1.0 - weight) * self.bias.get(cell, 0.0) + weight * float(difference)
        self.count[cell] = n
        return self.bias[cell]

    def largest(self) -> float:
        """The largest |bias| over the cells seen (0 when none)."""
        return max((abs(b) for b in self.bias.values()), default=0.0)

    def to_json(self) -> str:
        return json.dumps({"rate": self.rate, "bias": self.bias, "count": self.count}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunningCellBias":
        data: dict[str, Any] = json.loads(text)
        out = cls(float(data["rate"]))
        out.bias = {str(k): float(v) for k, v in data["bias"].items()}
        out.count = {str(k): int(v) for k, v in data["count"].items()}
        return out


def step_bias_loss(pred_means, label_means, cells: Sequence[str], running: RunningCellBias, scale: float):
    """``mean_i(b_i · (pred_i − label_i)) / scale`` with each image's cell bias ``b_i`` updated by the image
    first and then held fixed (a constant in the graph).

    Args:
        pred_means: Tensor (N,) of the images' mean predicted residuals (with gradients).
        label_means: Tensor (N,) of their mean labels.
        cells: The images' cells.
        running: The cells' running biases; updated in place.
        scale: Divisor of the term; the trainer passes ``loop.L2_SCALE``, the scale of its squared terms.
    """
    import torch

    if len(cells) != pred_means.shape[0]:
        raise ValueError(f"{len(cells)} cells for {pred_means.shape[0]} images")
    diffs = pred_means - label_means
    bias = torch.tensor([running.update(cell, float(d)) for cell, d in zip(cells, diffs.detach().cpu())],
                        dtype=diffs.dtype, device=diffs.device)
    return (bias * diffs).mean() / scale


__all__ = ["Anchor", "BRACKET_WINDOW", "BracketViews", "at_working_size", "HDR_EVS", "PHOTO_EVS", "bracket_cell", "RunningCellBias", "StepAnchors", "step_bias_loss"]
