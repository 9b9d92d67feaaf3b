"""A fitted output calibration of a network's residual maps: ``r' = clip(r + T(r, grey), −1, 1)``.

A network can be wrong in a way that depends only on what it already says and on how bright the pixel is —
the shipped weights read over-exposure timidly even on frames they were trained on (docs/MODEL.md, stage
14) — and that part of its error is removed by a table ``T`` on a grid of (residual, grey level), read
with bilinear interpolation, without retraining the network. A weights card may carry one
(``residual_calibration``); the ``eat`` analyzer applies it to the working-size map before upsampling it.

The table is fitted by :class:`CalibrationFit` (``python -m exposure_cli.training.fit_residual_calibration``)
from pairs of a network map and its label on training data: each node is the tent-weighted mean of
``label − r`` over the pixels near it (every image weighing the same in total), shrunk towards 0 by a
pseudo-count, and then ``r + T`` is made non-decreasing along the residual axis at every grey node (a
weighted isotonic fit), so that the calibration never reorders two pixels of the same grey level.
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


class CalibrationFit:
    """Accumulates (map, grey, label) triples and fits a :class:`ResidualCalibration`."""

    def __init__(self) -> None:
        self.shape = (_nodes(-1.0, 1.0, R_STEP), _nodes(0.0, 1.0, GREY_STEP))
        self.weight = np.zeros(self.shape, np.float64)
        self.sum = np.zeros(self.shape, np.float64)
        self.images = 0

    def add(self, residual: np.ndarray, grey: np.ndarray, label: np.ndarray, weight: float = 1.0) -> None:
        """One image's pixels, weighing `weight` in total (spread evenly over its pixels)."""
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
        for di, wi in ((0, 1.0 - t), (1, t)):
            for dj, wj in ((0, 1.0 - u), (1, u)):
                w = (wi * wj).astype(np.float64) * per_pixel
                flat = (i + di) * n_g + (j + dj)
                self.weight += np.bincount(flat, weights=w, minlength=n_r * n_g).reshape(self.shape)
                self.sum += np.bincount(flat, weights=w * error, minlength=n_r * n_g).reshape(self.shape)
        self.images += 1

    def fit(self, pseudo_count: float = 0.5, fitted_on: str = "") -> ResidualCalibration:
        """Shrunk node means, then ``r + T`` made non-decreasing in r at every grey node."""
        denominator = self.weight + float(pseudo_count)
        table = np.divide(self.sum, denominator, out=np.zeros_like(self.sum), where=denominator > 0)
        nodes = np.linspace(-1.0, 1.0, self.shape[0])
        for j in range(self.shape[1]):
            level = isotonic(nodes + table[:, j], self.weight[:, j] + float(pseudo_count))
            table[:, j] = level - nodes
        return ResidualCalibration(table.astype(np.float32), fitted_on)


__all__ = ["GREY_STEP", "R_STEP", "CalibrationFit", "ResidualCalibration", "isotonic"]
