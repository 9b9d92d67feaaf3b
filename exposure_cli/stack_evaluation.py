"""Real-bracket evaluation: does the map behave like exposure on frames a real camera got wrong?

A *stack* is one scene shot at several exposures (:mod:`exposure_cli.data.brackets`): frames sorted from
darkest to brightest, each with its residual label against the stack's ideal and its exposure relative to
the best frame (``relative_ev_to_best``, stops; the best frame is the one closest to the ideal). For every
analyzer this module reports, per split:

* **ordered** — scenes whose mean predicted residual falls strictly from the darkest to the brightest
  frame, and **reversals** — adjacent frame pairs where it does not (summed over scenes);
* **best pick** — scenes where the frame with the smallest |mean predicted r| is the best frame (exact,
  and within one frame);
* **darkest flagged** — the darkest frame is called *mostly under-exposed* (≥ 50 % of its pixels
  r ≥ 0.1); **brightest flagged** — the brightest frame's verdict is *over* (over-exposed share ≥ 10 % and
  larger than its under-exposed share);
* **EV-correction error** — mean |ev_correction + relative EV| over frames within ±3 EV of the best frame
  (stops; a frame shot 2 stops dark must read +2), with :func:`exposure_cli.correction.ev_correction`
  applied to each analyzer's own map; also over the scenes whose exposure steps are *known* (EXIF, file
  names or a list — not estimated from the frames), the set the issue's 0.5-stop bar is written for;
* **MAE** of the maps against the stack labels.

Two reference analyzers are always added: the one-line heuristic ``0.5 − grey`` (``mean-grey``: its mean
is ``0.5 − mean grey``) and the ``baseline`` analyzer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .analyzers.base import Analyzer, AnalyzerInfo
from .color import grey, residual_from_grey
from .correction import IDENTITY, ev_correction

#: A pixel is flagged over/under at this |r| (the report's default thresholds).
FLAG = 0.1
#: The darkest frame must be flagged under on at least this share of its pixels.
DARKEST_UNDER_SHARE = 0.5
#: The brightest frame must be flagged over on at least this share (and more than under).
BRIGHTEST_OVER_SHARE = 0.1
#: Frames within this many stops of the best frame count for the EV-correction error.
EV_WINDOW = 3.0
#: ``ev_source`` values of stacks whose exposure steps are exact facts, not estimates.
KNOWN_EV_SOURCES = frozenset({"exif", "filename", "list"})

MEAN_GREY = "mean-grey"


class MeanGreyHeuristic(Analyzer):
    """The one-line heuristic every model must beat: ``r = 0.5 − grey`` per pixel."""

    @property
    def info(self) -> AnalyzerInfo:
        return AnalyzerInfo(MEAN_GREY, "1", "", self.working_long_side)

    def analyze_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [residual_from_grey(np.float32(0.5), grey(img)).astype(np.float32) for img in images]


@dataclass
class FrameResult:
    """What one analyzer said about one frame."""

    mean_pred: float
    mean_label: float
    under_share: float
    over_share: float
    ev_correction: float
    relative_ev: float
    mae: float


@dataclass
class SceneResult:
    scene: str
    category: str
    best: int
    frames: list[FrameResult] = field(default_factory=list)
    #: The exposure steps come from EXIF, file names or a list (not estimated from the frames).
    ev_known: bool = True

    @property
    def means(self) -> np.ndarray:
        return np.array([f.mean_pred for f in self.frames])

    def reversals(self) -> int:
        m = self.means
        return int(np.sum(np.diff(m) >= 0))

    def ordered(self) -> bool:
        return self.reversals() == 0

    def pick(self) -> int:
        return int(np.argmin(np.abs(self.means)))

    def darkest_flagged(self) -> bool:
        return self.frames[0].under_share >= DARKEST_UNDER_SHARE

    def brightest_flagged(self) -> bool:
        f = self.frames[-1]
        return f.over_share >= BRIGHTEST_OVER_SHARE and f.over_share > f.under_share

    def ev_errors(self) -> list[float]:
        return [abs(f.ev_correction + f.relative_ev) for f in self.frames if abs(f.relative_ev) <= EV_WINDOW]


def frame_result(image: np.ndarray, pred: np.ndarray, label: np.ndarray, relative_ev: float,
                 calibration=None) -> FrameResult:
    """Score one predicted map (same size as `image`) against its stack label."""
    if label.shape != pred.shape:
        import cv2

        label = cv2.resize(label.astype(np.float32), (pred.shape[1], pred.shape[0]), interpolation=cv2.INTER_AREA)
    return FrameResult(
        mean_pred=float(pred.mean()),
        mean_label=float(label.mean()),
        under_share=float((pred >= FLAG).mean()),
        over_share=float((pred <= -FLAG).mean()),
        ev_correction=ev_correction(grey(image), pred, None, calibration or IDENTITY),
        relative_ev=float(relative_ev),
        mae=float(np.abs(pred - label).mean()),
    )


def summarise(scenes: list[SceneResult]) -> dict[str, Any]:
    """Counts and means over scenes (the numbers the model issue's bars are written in), with the per-EV
    bias and the same counts per scene category."""
    return {**_counts(scenes), "per_ev_bias": per_ev_bias(scenes), "per_category": per_category(scenes)}


def _counts(scenes: list[SceneResult]) -> dict[str, Any]:
    """The counts, EV errors and MAE of a group of scenes (all of them, or one category)."""
    n = len(scenes)
    errors = [e for s in scenes for e in s.ev_errors()]
    known = [e for s in scenes if s.ev_known for e in s.ev_errors()]
    return {
        "scenes": n,
        "frames": sum(len(s.frames) for s in scenes),
        "ordered": sum(s.ordered() for s in scenes),
        "reversals": sum(s.reversals() for s in scenes),
        "best_pick": sum(s.pick() == s.best for s in scenes),
        "best_pick_within_1": sum(abs(s.pick() - s.best) <= 1 for s in scenes),
        "darkest_flagged": sum(s.darkest_flagged() for s in scenes),
        "brightest_flagged": sum(s.brightest_flagged() for s in scenes),
        "ev_correction_error": float(np.mean(errors)) if errors else None,
        "ev_correction_frames": len(errors),
        "ev_correction_error_known": float(np.mean(known)) if known else None,
        "ev_correction_frames_known": len(known),
        "ev_known_scenes": sum(s.ev_known for s in scenes),
        "mae": float(np.mean([f.mae for s in scenes for f in s.frames])) if n else None,
    }


def per_category(scenes: list[SceneResult]) -> list[dict[str, Any]]:
    """The counts and EV errors per scene category (indoor, outdoor, night, backlit…), with the mean
    predicted and labelled residual of the best frames: an average over every stack can hide one kind of
    scene read wrong (night frames called under-exposed, say) behind the others."""
    by: dict[str, list[SceneResult]] = {}
    for s in scenes:
        by.setdefault(s.category or "", []).append(s)
    rows = []
    for category, group in sorted(by.items()):
        best = [s.frames[s.best] for s in group if 0 <= s.best < len(s.frames)]
        rows.append({
            "category": category,
            **_counts(group),
            "best_frame_mean_pred": float(np.mean([f.mean_pred for f in best])) if best else None,
            "best_frame_mean_label": float(np.mean([f.mean_label for f in best])) if best else None,
        })
    return rows


def per_ev_bias(scenes: list[SceneResult]) -> list[dict[str, Any]]:
    """Mean predicted vs labelled residual per (rounded) stop relative to the best frame."""
    buckets: dict[int, list[FrameResult]] = {}
    for s in scenes:
        for f in s.frames:
            buckets.setdefault(int(np.round(f.relative_ev)), []).append(f)
    return [
        {"ev": ev, "frames": len(fs), "mean_pred": float(np.mean([f.mean_pred for f in fs])),
         "mean_label": float(np.mean([f.mean_label for f in fs]))}
        for ev, fs in sorted(buckets.items())
    ]


def evaluate_stacks(
    root: str | Path,
    models: Sequence[tuple[str, str | None]],
    split: str = "val",
    device: str = "cpu",
    working_long_side: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate analyzers on the real bracket stacks of `split` (``train``, ``val`` or ``lockbox``).

    Args:
        root: Folder written by ``exposure data brackets`` (``corpus/brackets``).
        models: ``(analyzer name, weights or None)`` pairs; ``mean-grey`` and ``baseline`` are added.
        split: Which stacks; the lockbox is read only when asked for by name.
    """
    from .analyzers import create_analyzer
    from .data.brackets import load_stacks

    stacks = load_stacks(Path(root), split)
    if not stacks:
        raise ValueError(f"{root}: no bracket stacks in split {split!r}")
    runs = list(models)
    for extra in ("baseline", MEAN_GREY):
        if extra not in [m for m, _ in runs]:
            runs.append((extra, None))
    results = []
    for name, weights in runs:
        if name == MEAN_GREY:
            analyzer: Analyzer = MeanGreyHeuristic()
        else:
            options: dict[str, Any] = {"device": device}
            if weights:
                options["weights"] = str(weights)
            if working_long_side:
                options["working_long_side"] = int(working_long_side)
            analyzer = create_analyzer(name, **options)
        try:
            scenes = []
            for k, stack in enumerate(stacks):
                images = [load_frame(f) for f in stack.frames]
                preds = analyzer.analyze_batch(images)
                res = SceneResult(stack.id, getattr(stack, "category", ""), int(stack.best),
                                  ev_known=getattr(stack, "ev_source", "") in KNOWN_EV_SOURCES)
                for img, pred, lab, rel in zip(images, preds, stack.labels, stack.relative_ev_to_best):
                    res.frames.append(frame_result(img, np.asarray(pred, np.float32), load_label(lab), rel,
                                                   analyzer.ev_calibration))
                scenes.append(res)
                if progress:
                    progress(name, k + 1, len(stacks))
        finally:
            analyzer.close()
        summary = summarise(scenes)
        summary.update(model=name, weights=str(weights or ""),
                       per_scene=[{"scene": s.scene, "category": s.category, "best": s.best, "pick": s.pick(),
                                   "reversals": s.reversals(), "ev_known": s.ev_known,
                                   "darkest_flagged": s.darkest_flagged(), "brightest_flagged": s.brightest_flagged(),
                                   "means": [round(f.mean_pred, 4) for f in s.frames],
                                   "labels": [round(f.mean_label, 4) for f in s.frames],
                                   "relative_ev": [round(f.relative_ev, 2) for f in s.frames],
                                   "ev_correction": [round(f.ev_correction, 2) for f in s.frames]}
                                  for s in scenes])
        results.append(summary)
    return {"data": str(root), "split": split, "scenes": len(stacks), "results": results}


def load_frame(frame: Any) -> np.ndarray:
    """A stack frame (array or image path) as float32 RGB in [0, 1]."""
    arr = _load(frame)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.asarray(arr, np.float32)


def load_label(label: Any) -> np.ndarray:
    """A stack frame's label map (array, .npy or image path) as float32."""
    return np.asarray(_load(label), np.float32)


def _load(x: Any) -> np.ndarray:
    if isinstance(x, (str, Path)):
        p = Path(x)
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        import cv2

        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read {p}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.asarray(x)


#: Table columns: (key, header, format).
STACK_COLUMNS = (
    ("ordered", "ordered↑", "{}"),
    ("reversals", "reversals↓", "{}"),
    ("best_pick", "best↑", "{}"),
    ("best_pick_within_1", "best±1↑", "{}"),
    ("darkest_flagged", "darkest↑", "{}"),
    ("brightest_flagged", "brightest↑", "{}"),
    ("ev_correction_error", "EV err↓", "{:.2f}"),
    ("ev_correction_error_known", "EV err known↓", "{:.2f}"),
    ("mae", "MAE↓", "{:.4f}"),
)


def format_table_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows for a text table: model, then STACK_COLUMNS (counts shown as k/scenes)."""
    rows = []
    n = result["scenes"]
    for r in result["results"]:
        cells = [r["model"]]
        for key, _, fmt in STACK_COLUMNS:
            v = r.get(key)
            if v is None:
                cells.append("–")
            elif key in ("ordered", "best_pick", "best_pick_within_1", "darkest_flagged", "brightest_flagged"):
                cells.append(f"{v}/{n}")
            else:
                cells.append(fmt.format(v))
        rows.append(cells)
    return rows


__all__ = ["MEAN_GREY", "MeanGreyHeuristic", "SceneResult", "evaluate_stacks", "frame_result", "per_category",
           "summarise"]
