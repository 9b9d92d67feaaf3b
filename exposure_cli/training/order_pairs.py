"""A training term that keeps the mean verdict strictly ordered down into the deep darks (docs/MODEL.md, stage 40).

Every remaining ordering failure of the shipped line is at the dark end: the two real val stacks with a
reversal reverse between frames 4–8 stops under their best frame, and a photo darkened by 5 and by 6 stops
(chelsea, ``tests/test_model_physics.py``) reads the same mean residual. There the network's mean output
plateaus near its top while the labels still rise, and the twin ranking term (:mod:`.twins`) is blind to
it: its pairs are training *crops* a random 0.5–2 stops apart, and it ignores pairs whose labels differ by
less than 0.01 — most deep-dark pairs.

This term shows the network **whole pairs of the same scene one exposure step apart**, each at the
analyzer's working size with batch normalisation reading its running statistics (the analyzer's function,
as :mod:`.step_bias` does):

* *real* pairs: two adjacent frames of a **train** bracket stack (any two neighbours, however far from the
  best frame), with the stack's residual labels;
* *rendered* pairs: a train photo of the corpus at −k and −(k + 1) EV, k = 0 … :data:`DEEPEST_STOP` − 1
  (:func:`exposure_cli.data.simulator.render_ev`, the physics tests' rendering), with their exact labels.

:func:`order_loss` is a hinge on each pair's mean residuals: the darker view must read more under-exposed
than the brighter by at least half of the labels' gap, and never by less than :data:`MIN_MARGIN`. Nothing of
val or the lockbox is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Rendered pairs are −k and −(k + 1) EV for k = 0 … DEEPEST_STOP − 1 (the physics test darkens by 1 … 6).
DEEPEST_STOP = 7
#: The smallest gap (in mean residual) a pair's darker view must read above its brighter one.
MIN_MARGIN = 0.004


@dataclass(frozen=True)
class OrderedPair:
    """The same scene at two exposures, at the working size: ``dark`` is the less exposed view."""

    dark: np.ndarray
    bright: np.ndarray
    dark_label: float
    bright_label: float
    source: str


class OrderPairs:
    """Pairs of one scene one exposure step apart, from train photos and (optionally) train bracket stacks.

    Args:
        corpus: Folder written by ``exposure data build`` (its train photos render the synthetic pairs).
        working_long_side: Long side the network sees (the analyzer's).
        brackets: Optional bracket folder (``exposure data brackets``, or its
            :class:`~.step_bias.BracketViews` at this working size): its train stacks give the real pairs.
        bracket_share: Share of pairs that are real adjacent bracket frames (with `brackets`; 0 < share ≤ 1).
        split: The split read (``train``: the only one training may read).
    """

    def __init__(self, corpus: str | Path, working_long_side: int = 320, brackets: Any = None,
                 bracket_share: float = 0.5, split: str = "train") -> None:
        from ..data.valset import recipe_photos

        self.working_long_side = int(working_long_side)
        self.photos = [unit.ideal for unit in recipe_photos(Path(corpus), split)]
        if brackets is not None and not 0.0 < bracket_share <= 1.0:
            raise ValueError(f"bracket_share must be in (0, 1] with brackets, got {bracket_share}")
        self.bracket_share = float(bracket_share) if brackets is not None else 0.0
        #: (stack, k): frames k and k + 1 of a train stack.
        self.bracket_pairs: list[tuple[Any, int]] = []
        self.bracket_views = None
        if brackets is not None:
            from .step_bias import BracketViews

            self.bracket_views = BracketViews.of(brackets, split, self.working_long_side)
            for stack in self.bracket_views.stacks:
                self.bracket_pairs += [(stack, k) for k in range(len(stack.frames) - 1)]
            if not self.bracket_pairs:
                raise ValueError(f"{self.bracket_views.root}: no {split} bracket stack with two frames")
        if not self.photos and not self.bracket_pairs:
            raise ValueError(f"{corpus}: no {split} photos (and no bracket stacks) to make ordered pairs from")
        if not self.photos:
            self.bracket_share = 1.0

    def draw(self, rng: np.random.Generator) -> OrderedPair:
        """A real adjacent pair (a `bracket_share` of draws) or a train photo at −k and −(k + 1) EV, k uniform."""
        from ..data.simulator import render_ev
        from .step_bias import at_working_size

        size = self.working_long_side
        if self.bracket_pairs and rng.random() < self.bracket_share:
            stack, k = self.bracket_pairs[int(rng.integers(len(self.bracket_pairs)))]
            views = [self.bracket_views.view(stack, j) for j in (k, k + 1)]
            source = f"bracket {stack.id} {k}/{k + 1}"
        else:
            ideal = self.photos[int(rng.integers(len(self.photos)))]
            k = int(rng.integers(DEEPEST_STOP))
            views = [at_working_size(*render_ev(ideal, -float(j)), size) for j in (k + 1, k)]
            source = f"photo -{k + 1}/-{k} EV"
        (dark, dark_label), (bright, bright_label) = views
        return OrderedPair(dark, bright, float(dark_label.mean()), float(bright_label.mean()), source)


def order_loss(dark_means, bright_means, dark_labels, bright_labels, min_margin: float = MIN_MARGIN):
    """Mean hinge ``relu(max(½ · label gap, min_margin) − (dark − bright))`` over pairs whose darker view's
    label mean is the larger (a pair the labels do not order is left out).

    Args:
        dark_means, bright_means: Tensors (N,) of the views' mean predicted residuals (with gradients).
        dark_labels, bright_labels: Tensors (N,) of their mean labels.
        min_margin: The least gap asked for, however close the labels are.
    """
    import torch

    gap_label = dark_labels - bright_labels
    margin = torch.clamp(0.5 * gap_label, min=min_margin)
    hinge = torch.relu(margin - (dark_means - bright_means))
    valid = (gap_label > 0).to(hinge.dtype)
    return (hinge * valid).sum() / valid.sum().clamp_min(1.0)


__all__ = ["DEEPEST_STOP", "MIN_MARGIN", "OrderPairs", "OrderedPair", "order_loss"]
