"""Side-by-side overlays of validation photos: photo | model's map | label, for docs and eyeballing.

Run: ``python -m exposure_cli.training.overlays corpus/val --weights weights/ --out docs/model/`` —
writes one JPEG per chosen image (red = over-exposed, blue = under-exposed, the scan's overlay style)
plus ``index.md`` listing them with the mean residuals of map and label.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: Default picks from the fixed validation set: a sweep of one photo and some local-error simulations.
DEFAULT_IMAGES = (
    "gcompris__resource_monuments_tajMahal.png",
    "gcompris__resource_monuments_tajMahal_ev-2.png",
    "gcompris__resource_monuments_tajMahal_ev+2.png",
    "skimage__motorcycle_left_sim0.png",
    "plasma-wallpapers__Kite_sim1.png",
    "opencv-doc__messi5_sim0.png",
    "gcompris__resource_india_goldenTemple_sim1.png",
    "blender-hdr__blender_night__y120p00_sim0.png",
    "blender-hdr__blender_night__y060p00.png",
    "blender-hdr__blender_night__y060p00_ev-2.png",
    "pmndrs-hdr__warehouse__y000p00_ev+0.png",
)


def render_row(rgb: np.ndarray, predicted: np.ndarray, label: np.ndarray, caption: str) -> np.ndarray:
    """One BGR uint8 strip: the photo, its overlay from the model, its overlay from the label."""
    import cv2

    from ..report.overlays import render_overlay

    photo = np.clip(rgb[..., ::-1] * 255.0, 0, 255).astype(np.uint8)
    tiles = [photo, render_overlay(rgb, predicted), render_overlay(rgb, label)]
    names = ["photo", "EAT-IEA map", "label"]
    strip = np.concatenate([np.pad(t, ((0, 0), (0, 4), (0, 0)), constant_values=255) for t in tiles], axis=1)
    band = np.full((26, strip.shape[1], 3), 255, np.uint8)
    width = tiles[0].shape[1] + 4
    for i, name in enumerate(names):
        cv2.putText(band, name, (i * width + 4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(band, caption, (3 * width - 4 - 8 * len(caption), 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (80, 80, 80), 1, cv2.LINE_AA)
    return np.concatenate([band, strip], axis=0)


def write_overlays(data: Path, weights: str | None, out: Path, images: tuple[str, ...] = DEFAULT_IMAGES) -> list[Path]:
    """Render the chosen validation images with the model at `weights` into `out`."""
    import cv2

    from ..analyzers import create_analyzer
    from ..data.iea40k import read_records

    records = {r.img_id: r for r in read_records(data, "val")}
    missing = [name for name in images if name not in records]
    if missing:
        raise SystemExit(f"not in {data}: {', '.join(missing)}")
    analyzer = create_analyzer("eat", weights=weights, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    written, lines = [], ["| image | mean r (model) | mean r (label) |", "|---|---|---|"]
    for name in images:
        rec = records[name]
        rgb, label = rec.load_image(), rec.load_residual()
        predicted = analyzer.analyze(rgb)
        caption = f"mean r: model {predicted.mean():+.2f}, label {label.mean():+.2f}"
        path = out / (Path(name).stem + ".jpg")
        cv2.imwrite(str(path), render_row(rgb, predicted, label, caption), [cv2.IMWRITE_JPEG_QUALITY, 85])
        written.append(path)
        lines.append(f"| [{path.name}]({path.name}) | {predicted.mean():+.3f} | {label.mean():+.3f} |")
    (out / "index.md").write_text(
        "# EAT-IEA overlays on validation photos\n\nPhoto | model map | label; red = over-exposed, blue = "
        "under-exposed. Made by `python -m exposure_cli.training.overlays " + f"{data} --out {out}`.\n\n"
        + "\n".join(lines) + "\n", encoding="utf-8")
    return written


def write_stack_overlays(root: Path, split: str, weights: str | None, out: Path,
                         scenes: tuple[str, ...] = (), max_scenes: int = 4, long_side: int = 0) -> list[Path]:
    """Dark, best and bright frame of real bracket stacks (:mod:`exposure_cli.data.brackets`), each as
    photo | model | stack label, with the model's mean r and stops of correction against the truth.

    ``long_side``: shrink each frame and its label to this long side (area) before the analyzer reads it — a
    thumbnail, as the small-images benchmarks make them; the tiles are then shown enlarged (nearest
    neighbour) to at least 256 px so they can be looked at. 0: the frames as built.
    """
    import cv2

    from ..analyzers import create_analyzer
    from ..color import grey
    from ..correction import ev_correction
    from ..data.brackets import load_stacks
    from ..imageops import working_size

    stacks = [s for s in load_stacks(root, split) if len(s.frames) >= 3]
    if scenes:
        stacks = [s for s in stacks if s.id in scenes]
    stacks = stacks[:max_scenes]
    analyzer = create_analyzer("eat", weights=weights, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    written, lines = [], ["| stack frame | stops from best | mean r (model) | mean r (label) | ev_correction (model) |",
                          "|---|---|---|---|---|"]
    for st in stacks:
        for k in sorted({0, st.best, len(st.frames) - 1}):
            rgb = st.frame(k).astype(np.float32) / 255.0
            label = st.label(k)
            if long_side:
                h, w = working_size(rgb.shape[0], rgb.shape[1], long_side)
                size = (w, h)
                rgb = np.clip(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), 0.0, 1.0)
                label = cv2.resize(np.asarray(label, np.float32), size, interpolation=cv2.INTER_AREA)
            predicted = analyzer.analyze(rgb)
            # the stops the product reports: the weights' own stops-of-correction head, as `exposure eval`
            stops = ev_correction(grey(rgb), predicted, None, analyzer.ev_calibration)
            rel = st.relative_ev_to_best[k]
            caption = f"{rel:+.1f} EV: model {predicted.mean():+.2f} ({stops:+.1f} stops), label {label.mean():+.2f}"
            path = out / f"stack_{st.id}_{k:02d}.jpg"
            zoom = max(1, 256 // max(rgb.shape[:2]))
            shown = [np.repeat(np.repeat(a, zoom, axis=0), zoom, axis=1) for a in (rgb, predicted, label)]
            cv2.imwrite(str(path), render_row(*shown, caption), [cv2.IMWRITE_JPEG_QUALITY, 85])
            written.append(path)
            lines.append(f"| [{path.name}]({path.name}) | {rel:+.1f} | {predicted.mean():+.3f} | "
                         f"{label.mean():+.3f} | {stops:+.2f} |")
    (out / "stacks.md").write_text(
        f"# EAT-IEA on real exposure brackets ({split} stacks)\n\nDarkest, best and brightest frame of each stack: "
        "photo | model map | label from the stack (Mertens fusion as the ideal); red = over, blue = under. "
        f"Made by `python -m exposure_cli.training.overlays {root} --brackets --split {split} --out {out}"
        + (f" --weights {weights}" if weights else "") + (f" --long-side {long_side}" if long_side else "")
        + "`.\n\n"
        + "\n".join(lines) + "\n", encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="IEA40K-layout validation folder (corpus/val), or with "
                        "--brackets a bracket folder (corpus/brackets)")
    parser.add_argument("--weights", default=None, help="weights file or folder (default: shipped)")
    parser.add_argument("--out", type=Path, default=Path("docs/model"))
    parser.add_argument("--images", nargs="*", default=list(DEFAULT_IMAGES))
    parser.add_argument("--brackets", action="store_true", help="DATA is a bracket folder: overlay stacks")
    parser.add_argument("--split", default="val", help="bracket split (train, val; lockbox only by name)")
    parser.add_argument("--scenes", nargs="*", default=[], help="bracket scene ids (default: the first ones)")
    parser.add_argument("--max-scenes", type=int, default=4)
    parser.add_argument("--long-side", type=int, default=0,
                        help="with --brackets: shrink frames and labels to this long side first (thumbnails)")
    args = parser.parse_args(argv)
    if args.brackets:
        paths = write_stack_overlays(args.data, args.split, args.weights, args.out, tuple(args.scenes),
                                     args.max_scenes, args.long_side)
    else:
        paths = write_overlays(args.data, args.weights, args.out, tuple(args.images))
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
