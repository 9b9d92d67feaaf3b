"""A fitted output calibration of a network's residual maps: ``r' = clip(r + T(r, grey), −1, 1)``.

A network can be wrong in a way that depends only on what it already says and on how bright the pixel is —
the shipped weights read over-exposure timidly even on frames they were trained on (docs/MODEL.md, stage
14) — and that part of its error is removed by a table ``T`` on a grid of (residual, grey level), read
with bilinear interpolation, without retraining the network. A weights card may carry one
(``residual_calibration``); the ``eat`` analyzer applies it to the working-size map before upsampling it.

The table is fitted by :class:`CalibrationFit` (``python -m exposure_cli.training.fit_residual_calibration``)
from pairs of a network map and its label on training data, in one of two ways:

* :meth:`CalibrationFit.fit` — each node is the tent-weighted mean of ``label − r`` over the pixels near it
  (every image weighing the same in total), shrunk towards 0 by a pseudo-count, and then ``r + T`` is made
  non-decreasing along the residual axis at every grey node (a weighted isotonic fit), so that the
  calibration never reorders two pixels of the same grey level. This is a conditional mean: unbiased
  *given what the network saw*.
* :meth:`CalibrationFit.fit_unbiased` — least squares of the pixel error plus a penalty on the mean bias of
  every *cell* of images (e.g. the photos shifted by +2 EV), so that the maps are unbiased *given the true
  exposure step*, which is what a per-EV bias table measures (docs/MODEL.md, stages 26–28). Every table
  entry enters an image's mean map linearly, so the whole fit is a small convex quadratic programme
  (solved by ADMM), with ``r + T`` non-decreasing in r and, optionally, ``T`` non-increasing in grey (at the
  same reading a darker pixel is never corrected towards over more than a brighter one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

#: Grid steps of the table: residual (−1 … 1) and grey level (0 … 1).
R_STEP = 0.05
GREY_STEP = 1.0 / 16.0


def _nodes(lo: float, hi: float, step: float) -> int:
    return int(round((hi - lo) / step)) + 1


def _tent(values: np.ndarray, lo: float, step: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower node index and the weight of the upper node for each value (clamped to the grid)."""
    position = np.clip((values.astype(np.float32) - np.float32(lo)) / np.float32(step), 0.0, n - 1)
    lower = np.minimum(position.astype(np.int32), n - 2)
    return lower, (position - lower).astype(np.float32)


@dataclass(frozen=True)
class ResidualCalibration:
    """The table ``T`` at the nodes ``r = −1 + i·R_STEP``, ``grey = j·GREY_STEP`` (shape n_r × n_grey)."""

    table: np.ndarray
    #: Where it was fitted (free text for the card and the report's analyzer info).
    fitted_on: str = ""

    def __post_init__(self) -> None:
        table = np.asarray(self.table, dtype=np.float32)
        expected = (_nodes(-1.0, 1.0, R_STEP), _nodes(0.0, 1.0, GREY_STEP))
        if table.shape != expected:
            raise ValueError(f"residual calibration table must be {expected[0]}×{expected[1]}, got {table.shape}")
        if not np.all(np.isfinite(table)):
            raise ValueError("residual calibration table has non-finite entries")
        object.__setattr__(self, "table", table)

    def apply(self, residual: np.ndarray, grey: np.ndarray) -> np.ndarray:
        """``clip(r + T(r, grey), −1, 1)`` for a map and the grey levels of the same pixels (float32)."""
        r = np.asarray(residual, dtype=np.float32)
        g = np.asarray(grey, dtype=np.float32)
        if r.shape != g.shape:
            raise ValueError(f"residual {r.shape} and grey {g.shape} differ in shape")
        n_r, n_g = self.table.shape
        i, t = _tent(r, -1.0, R_STEP, n_r)
        j, u = _tent(g, 0.0, GREY_STEP, n_g)
        T = self.table
        low = T[i, j] * (1.0 - u) + T[i, j + 1] * u
        high = T[i + 1, j] * (1.0 - u) + T[i + 1, j + 1] * u
        out = r + (low * (1.0 - t) + high * t)
        return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)

    def to_card(self) -> dict[str, Any]:
        return {"r_step": R_STEP, "grey_step": GREY_STEP, "fitted_on": self.fitted_on,
                "table": [[round(float(v), 5) for v in row] for row in self.table]}

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> "ResidualCalibration | None":
        """The card's table, or None when it has none."""
        entry = card.get("residual_calibration")
        if not entry:
            return None
        if float(entry.get("r_step", R_STEP)) != R_STEP or float(entry.get("grey_step", GREY_STEP)) != GREY_STEP:
            raise ValueError(f"residual calibration grid {entry.get('r_step')} × {entry.get('grey_step')} is not "
                             f"this version's {R_STEP} × {GREY_STEP}")
        return cls(np.asarray(entry["table"], dtype=np.float32), str(entry.get("fitted_on", "")))


def isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted least-squares non-decreasing fit of a sequence (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for v, w in zip(np.asarray(values, np.float64), np.asarray(weights, np.float64)):
        blocks.append([float(v), max(float(w), 1e-12), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks[-1]
            blocks[-1] = [(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2]
    return np.concatenate([np.full(n, v) for v, _, n in blocks])


def _differences(table: np.ndarray) -> np.ndarray:
    """The constraint values of a table (n_r × n_grey): steps along r, then falls along grey (flat)."""
    return np.concatenate([(table[1:] - table[:-1]).ravel(), (table[:, :-1] - table[:, 1:]).ravel()])


def _differences_adjoint(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The transpose of :func:`_differences` applied to `values` (flat table)."""
    n_r, n_g = shape
    split = (n_r - 1) * n_g
    along_r, along_grey = values[:split].reshape(n_r - 1, n_g), values[split:].reshape(n_r, n_g - 1)
    out = np.zeros(shape)
    out[1:] += along_r
    out[:-1] -= along_r
    out[:, :-1] += along_grey
    out[:, 1:] -= along_grey
    return out.ravel()


def _difference_gram(shape: tuple[int, int], grey: bool = True) -> np.ndarray:
    """``DᵀD`` of the first differences along r (and, with `grey`, along grey) of a flat table."""
    size = shape[0] * shape[1]
    n_steps = (shape[0] - 1) * shape[1]
    keep = np.ones(n_steps + shape[0] * (shape[1] - 1), bool)
    keep[n_steps:] = grey
    columns = [np.where(keep, _differences(unit.reshape(shape)), 0.0) for unit in np.eye(size)]
    D = np.stack(columns, axis=1)
    return D.T @ D


@dataclass(frozen=True)
class HeldOut:
    """How a table does on a fit's images: mean squared pixel error (every image equal, before clipping)
    and the mean bias (predicted − labelled) of every cell."""

    mse: float
    cell_bias: dict[str, float]


class CalibrationFit:
    """Accumulates (map, grey, label) triples and fits a :class:`ResidualCalibration`."""

    def __init__(self) -> None:
        self.shape = (_nodes(-1.0, 1.0, R_STEP), _nodes(0.0, 1.0, GREY_STEP))
        size = self.shape[0] * self.shape[1]
        self.weight = np.zeros(self.shape, np.float64)
        self.sum = np.zeros(self.shape, np.float64)
        self.images = 0
        # the quadratic form of the pixel loss in the table (each image's share weighted; its linear part
        # is `sum`), and per image its cell, mean tent weights, mean residual and mean label (the per-cell
        # biases are linear in T)
        self.total_weight = 0.0
        self.gram = np.zeros((size, size), np.float64)
        self.square = 0.0
        self.cells: list[str | None] = []
        self.image_tents: list[np.ndarray] = []
        self.image_residuals: list[float] = []
        self.image_labels: list[float] = []

    def add(self, residual: np.ndarray, grey: np.ndarray, label: np.ndarray, weight: float = 1.0,
            cell: str | None = None) -> None:
        """One image's pixels, weighing `weight` in total (spread evenly over its pixels); `cell` names the
        group of images whose mean bias :meth:`fit_unbiased` holds to zero (None: the pixel loss only)."""
        r = np.asarray(residual, np.float32).ravel()
        g = np.asarray(grey, np.float32).ravel()
        y = np.asarray(label, np.float32).ravel()
        if not (r.size == g.size == y.size) or r.size == 0:
            raise ValueError("residual, grey and label must be non-empty and of one size")
        n_r, n_g = self.shape
        i, t = _tent(r, -1.0, R_STEP, n_r)
        j, u = _tent(g, 0.0, GREY_STEP, n_g)
        per_pixel = float(weight) / r.size
        error = (y - r).astype(np.float64)
        size = n_r * n_g
        flats, tents = [], []
        for di, wi in ((0, 1.0 - t), (1, t)):
            for dj, wj in ((0, 1.0 - u), (1, u)):
                flats.append((i + di) * n_g + (j + dj))
                tents.append((wi * wj).astype(np.float64))
        flat, tent = np.concatenate(flats), np.concatenate(tents)
        node_share = np.bincount(flat, weights=tent, minlength=size)  # each pixel's tent weights sum to 1
        self.weight += (node_share * per_pixel).reshape(self.shape)
        self.sum += np.bincount(flat, weights=tent * np.tile(error, 4) * per_pixel, minlength=size).reshape(self.shape)
        pairs = np.concatenate([a * size + b for a in flats for b in flats])
        products = np.concatenate([a * b for a in tents for b in tents])
        self.gram += np.bincount(pairs, weights=products * per_pixel, minlength=size * size).reshape(size, size)
        self.square += float(np.square(error).mean()) * float(weight)
        self.total_weight += float(weight)
        self.cells.append(cell)
        self.image_tents.append((node_share / r.size).astype(np.float32))
        self.image_residuals.append(float(r.mean()))
        self.image_labels.append(float(y.mean()))
        self.images += 1

    def merge(self, other: "CalibrationFit") -> "CalibrationFit":
        """A fit of this one's images and `other`'s (neither is changed)."""
        out = CalibrationFit()
        for name in ("weight", "sum", "gram", "images", "total_weight", "square",  # sums (arrays, numbers)
                     "cells", "image_tents", "image_residuals", "image_labels"):  # per image (lists, joined)
            setattr(out, name, getattr(self, name) + getattr(other, name))
        return out

    def _cell_terms(self) -> dict[str, tuple[np.ndarray, float]]:
        """Per cell: the mean over its images of their mean tent weights, and of ``label − r``."""
        members: dict[str, list[int]] = {}
        for k, cell in enumerate(self.cells):
            if cell is not None:
                members.setdefault(cell, []).append(k)
        tents = np.asarray(self.image_tents, np.float64) if self.image_tents else np.zeros((0, self.gram.shape[0]))
        error = np.asarray(self.image_labels) - np.asarray(self.image_residuals)
        return {cell: (tents[ks].mean(axis=0), float(error[ks].mean())) for cell, ks in sorted(members.items())}

    def held_out(self, calibration: "ResidualCalibration | None") -> HeldOut:
        """How `calibration` (None: no table) does on this fit's images."""
        table = np.zeros(self.gram.shape[0]) if calibration is None else calibration.table.astype(np.float64).ravel()
        n = max(self.total_weight, 1e-12)
        mse = float(table @ self.gram @ table / n - 2.0 * self.sum.ravel() @ table / n + self.square / n)
        return HeldOut(mse, {cell: float(tent @ table - error) for cell, (tent, error) in self._cell_terms().items()})

    def fit_unbiased(self, bias_weight: float, smoothness: float = 0.0, grey_monotone: bool = True,
                     ridge: float = 1e-4, fitted_on: str = "", iterations: int = 3000) -> ResidualCalibration:
        """The table minimising the mean squared pixel error + `bias_weight` · Σ cells (mean bias)² +
        `smoothness` · Σ (neighbouring entries' difference)² + `ridge` · |T|², with ``r + T``
        non-decreasing in r and, if `grey_monotone`, ``T`` non-increasing in grey (ADMM)."""
        if self.total_weight <= 0:
            raise ValueError("nothing to fit: no images were added")
        shape, size = self.shape, self.gram.shape[0]
        P = self.gram / self.total_weight + float(ridge) * np.eye(size)
        q = self.sum.ravel() / self.total_weight
        for tent, error in self._cell_terms().values():
            P += float(bias_weight) * np.outer(tent, tent)
            q += float(bias_weight) * tent * error
        if smoothness > 0:
            P += float(smoothness) * _difference_gram(shape, grey=True)
        # constraints C·T ≥ h: steps along r ≥ −R_STEP; with grey_monotone also falls along grey ≥ 0
        n_steps = (shape[0] - 1) * shape[1]
        h = np.concatenate([np.full(n_steps, -R_STEP), np.zeros(shape[0] * (shape[1] - 1))])
        active = np.ones(h.size, bool)
        if not grey_monotone:
            active[n_steps:] = False
        h = h * active

        def C(table: np.ndarray) -> np.ndarray:
            return np.where(active, _differences(table.reshape(shape)), 0.0)

        def Ct(values: np.ndarray) -> np.ndarray:
            return _differences_adjoint(np.where(active, values, 0.0), shape)

        rho = float(np.trace(P)) / size
        inverse = np.linalg.inv(P + rho * _difference_gram(shape, grey=grey_monotone))
        table, z, scaled = np.zeros(size), np.zeros(h.size), np.zeros(h.size)
        for _ in range(iterations):
            table = inverse @ (q + rho * Ct(h + z - scaled))
            gap = C(table) - h
            z_new = np.maximum(gap + scaled, 0.0) * active
            scaled += gap - z_new
            # stop once the constraints hold to 1e-8 and the slack no longer moves
            converged = np.abs(gap - z_new).max() < 1e-8 and np.abs(z_new - z).max() < 1e-8
            z = z_new
            if converged:
                break
        return ResidualCalibration(table.reshape(shape).astype(np.float32), fitted_on)

    def fit(self, pseudo_count: float = 0.5, fitted_on: str = "") -> ResidualCalibration:
        """Shrunk node means, then ``r + T`` made non-decreasing in r at every grey node."""
        denominator = self.weight + float(pseudo_count)
        table = np.divide(self.sum, denominator, out=np.zeros_like(self.sum), where=denominator > 0)
        nodes = np.linspace(-1.0, 1.0, self.shape[0])
        for j in range(self.shape[1]):
            level = isotonic(nodes + table[:, j], self.weight[:, j] + float(pseudo_count))
            table[:, j] = level - nodes
        return ResidualCalibration(table.astype(np.float32), fitted_on)


__all__ = ["GREY_STEP", "R_STEP", "CalibrationFit", "HeldOut", "ResidualCalibration", "isotonic"]
