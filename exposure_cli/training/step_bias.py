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
    """

    def __init__(self, corpus: str | Path, working_long_side: int = 320, split: str = "train") -> None:
        from ..data.valset import recipe_crops, recipe_photos

        self.working_long_side = int(working_long_side)
        self.photos = [unit.ideal for unit in recipe_photos(Path(corpus), split)]
        self.hdr = [(unit.radiance, unit.ideal) for unit in recipe_crops(Path(corpus), split)]
        if not self.photos and not self.hdr:
            raise ValueError(f"{corpus}: no photos or HDR crops in split {split!r} to render step anchors from")

    @property
    def cells(self) -> list[str]:
        """Every cell a draw can land in."""
        from .fit_residual_calibration import cell_of

        out = []
        if self.photos:
            out += [cell_of("photo", "original", 0.0)] + [cell_of("photo", "sweep", ev) for ev in PHOTO_EVS]
        if self.hdr:
            out += [cell_of("hdr", "original", 0.0)] + [cell_of("hdr", "sweep", ev) for ev in HDR_EVS]
        return out

    def draw(self, rng: np.random.Generator) -> Anchor:
        """A random unit of a random group (photos and HDR crops half each when both exist), shown at a
        uniformly drawn cell of its group, resized to the working size (area), its label likewise."""
        import cv2

        from ..data.simulator import render_ev
        from ..imageops import to_working_size
        from .fit_residual_calibration import cell_of

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
        small = to_working_size(image, self.working_long_side)
        if label.shape != small.shape[:2]:
            label = cv2.resize(label.astype(np.float32), (small.shape[1], small.shape[0]),
                               interpolation=cv2.INTER_AREA)
        return Anchor(np.ascontiguousarray(small, np.float32), label.astype(np.float32), cell)


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


__all__ = ["Anchor", "HDR_EVS", "PHOTO_EVS", "RunningCellBias", "StepAnchors", "step_bias_loss"]
