"""Stage 44's probe: can a stops head that reads the network's pooled bottleneck track real exposures better
than today's head over the map? (docs/MODEL.md, stage 44; train stacks only.)

    python tools/ev_feature_head_cv.py --weights weights --brackets corpus/brackets_n [--json OUT]

For every train frame within ±3 EV of its stack's best frame (the frames
:func:`exposure_cli.training.calibrate.collect` reads, in its order) it takes the map's stops and the ten head
inputs, and the spatial mean of the network's bottleneck (the output of the last EAT block) at the analyzer's
working size. Forms **P** (ridge on the stops and the pooled bottleneck) and **Q** (the same plus the ten
inputs) are scored by stage 36's grouped 5-fold CV (whole stacks per fold, the same folds), their ridge
penalty chosen inside each outer fold by an inner grouped 4-fold CV on that fold's training stacks, and
compared with today's two-number head (A-all) by stage 44's rule.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exposure_cli.correction import LIMIT  # noqa: E402

_spec = importlib.util.spec_from_file_location("ev_head_cv", ROOT / "tools" / "ev_head_cv.py")
ev_head_cv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ev_head_cv)

#: The penalties the inner CV chooses among (stage 44's plan).
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: Stage 44's rule: the margin on CV-known a form needs over A-all, and the most CV-all may rise.
KNOWN_MARGIN, ALL_SLACK = 0.05, 0.02


def pooled_bottleneck(weights: str | Path, brackets: str | Path, split: str = "train") -> np.ndarray:
    """N×C: each frame's spatial mean of the last EAT block's output, the frames and order of ``collect``."""
    import torch

    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.data.brackets import load_stacks
    from exposure_cli.training.calibrate import WINDOW
    from exposure_cli.weights import load_model, resolve_weights

    path = resolve_weights(weights)
    model, _ = load_model(path, "cpu")
    analyzer = create_analyzer("eat", weights=str(path), device="cpu")  # only for its working size
    captured: list[torch.Tensor] = []
    hook = model.eat[-1].register_forward_hook(lambda _m, _i, out: captured.append(out.mean(dim=(2, 3))))
    rows = []
    try:
        with torch.inference_mode():
            for stack in load_stacks(Path(brackets), split):
                for k, rel in enumerate(stack.relative_ev_to_best):
                    if abs(rel) > WINDOW:
                        continue
                    image = analyzer.prepare(stack.frame(k).astype(np.float32) / 255.0)
                    captured.clear()
                    model(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])
                    rows.append(captured[0][0].numpy().astype(np.float64))
    finally:
        hook.remove()
        analyzer.close()
    return np.array(rows)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge on standardised columns with a free intercept → (mean, scale, weights, intercept)."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (x - mean) / scale
    intercept = float(y.mean())
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - intercept))
    return mean, scale, w, intercept


def predict_ridge(model, x: np.ndarray) -> np.ndarray:
    mean, scale, w, intercept = model
    return np.clip((x - mean) / scale @ w + intercept, -LIMIT, LIMIT)


def inner_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The penalty with the lowest mean |error| of a grouped 4-fold CV on these (training) frames."""
    fold = ev_head_cv.folds_of(groups, 4)
    best = None
    for alpha in ALPHAS:
        errors = np.empty(len(y))
        for i in range(4):
            fit, test = fold != i, fold == i
            errors[test] = np.abs(predict_ridge(fit_ridge(x[fit], y[fit], alpha), x[test]) - y[test])
        if best is None or errors.mean() < best[0]:
            best = (errors.mean(), alpha)
    return best[1]


def nested_cv_errors(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5) -> tuple[np.ndarray, list[float]]:
    """Each frame's held-out |error| (stage 36's outer folds) and the penalty each outer fold chose."""
    fold = ev_head_cv.folds_of(groups, folds)
    errors, chosen = np.empty(len(y)), []
    for i in range(folds):
        fit, test = fold != i, fold == i
        alpha = inner_alpha(x[fit], y[fit], groups[fit])
        chosen.append(alpha)
        errors[test] = np.abs(predict_ridge(fit_ridge(x[fit], y[fit], alpha), x[test]) - y[test])
    return errors, chosen


def decide(rows: dict[str, dict[str, float]]) -> str | None:
    """Stage 44's rule: the lower CV-known of the forms at least KNOWN_MARGIN below A-all's whose CV-all is at
    most ALL_SLACK above A-all's; None keeps today's head."""
    ref = rows["A-all"]
    ok = [n for n in rows if n != "A-all" and rows[n]["cv_known"] <= ref["cv_known"] - KNOWN_MARGIN
          and rows[n]["cv_all"] <= ref["cv_all"] + ALL_SLACK]
    return min(ok, key=lambda n: rows[n]["cv_known"]) if ok else None


def main() -> None:
    from exposure_cli.training.calibrate import collect

    args = ev_head_cv.parse_arguments(__doc__.splitlines()[0])
    stops, extra, targets, groups, known = collect(args.weights, args.brackets, "train")
    pooled = pooled_bottleneck(args.weights, args.brackets, "train")
    assert len(pooled) == len(targets), (len(pooled), len(targets))
    print(f"{len(targets)} frames of {len(set(groups))} train stacks ({known.sum()} known); bottleneck {pooled.shape[1]} channels")
    rows: dict[str, dict] = {}
    errors = ev_head_cv.grouped_cv_errors(stops, extra, targets, groups, known, [], "all")
    rows["A-all"] = {"cv_all": float(errors.mean()), "cv_known": float(errors[known].mean())}
    designs = {"P": np.hstack([stops[:, None], pooled]), "Q": np.hstack([stops[:, None], extra, pooled])}
    for name, x in designs.items():
        errors, chosen = nested_cv_errors(x, targets, groups)
        rows[name] = {"cv_all": float(errors.mean()), "cv_known": float(errors[known].mean()),
                      "cv_estimated": float(errors[~known].mean()), "alphas": chosen}
    for name, row in rows.items():
        print(f"{name:6s} CV-all {row['cv_all']:.3f}  CV-known {row['cv_known']:.3f}"
              + (f"  CV-estimated {row['cv_estimated']:.3f}  α per fold {row['alphas']}" if "alphas" in row else ""))
    choice = decide(rows)
    print(f"decision: {choice or 'none — today’s head stays'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "decision": choice}, indent=1))


if __name__ == "__main__":
    main()
