"""Do the two label conventions agree on the same scene? (docs/MODEL.md "Stage 20", the diagnostic)

Real bracket stacks are labelled by Mertens fusion of the camera's own aligned frames (``ideal.png``;
docs/DATA.md "Real exposure brackets"); HDR panoramas by the HDR labeller (:mod:`exposure_cli.data.hdr`):
meter the radiance (mean log luminance → 18 % grey), render a ±4 EV bracket in steps of 2 and fuse it.
This script gives every known-exposure stack (EXIF, file name or list EVs; not estimated ones) both: it
recovers the scene's relative radiance from the frames with Debevec's method (camera response calibrated
on the stack, ``cv2.createCalibrateDebevec`` / ``createMergeDebevec``), labels that radiance with the HDR
labeller, and compares the two ideals' grey levels — their difference is the residual the two conventions
disagree by for every frame of that scene. Nothing is trained; the lockbox is not read.

    python tools/label_conventions.py corpus/brackets_n --split train --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KNOWN = ("exif", "filename", "list")


def scene(stack, long_side: int = 512) -> dict:
    import cv2

    from exposure_cli.color import grey
    from exposure_cli.data.hdr import meter, mertens_ideal

    frames = [stack.frame(k) for k in range(len(stack.frames))]
    h, w = frames[0].shape[:2]
    scale = min(1.0, long_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    frames = [np.ascontiguousarray(cv2.resize(f, size, interpolation=cv2.INTER_AREA)) for f in frames]
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    times = np.asarray([2.0 ** ev for ev in stack.relative_ev], dtype=np.float32)
    response = cv2.createCalibrateDebevec().process(bgr, times)
    radiance = cv2.createMergeDebevec().process(bgr, times, response)[..., ::-1]  # RGB, relative
    radiance = np.nan_to_num(np.maximum(radiance, 0.0), nan=0.0, posinf=0.0).astype(np.float32)
    lum = grey(radiance)
    positive = lum[lum > 0]
    dr = float(np.log2(np.percentile(positive, 99.5) / max(np.percentile(positive, 0.5), 1e-12)))
    hdr_ideal = mertens_ideal(meter(radiance))
    fused = cv2.imread(str(stack.ideal), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
    fused = cv2.resize(fused, size, interpolation=cv2.INTER_AREA)
    g_hdr, g_fused = grey(hdr_ideal), grey(fused)
    diff = g_hdr - g_fused  # > 0: the HDR labeller's ideal is lighter (its labels say "under" more)
    dark = g_fused < 0.2
    bright = g_fused > 0.7
    return {"id": stack.id, "category": stack.category, "split": stack.split, "frames": len(frames),
            "ev_span": float(max(stack.relative_ev) - min(stack.relative_ev)), "dynamic_range_stops": dr,
            "fused_mean_grey": float(g_fused.mean()), "hdr_mean_grey": float(g_hdr.mean()),
            "mean_diff": float(diff.mean()), "mean_abs_diff": float(np.abs(diff).mean()),
            "diff_where_fused_dark": float(diff[dark].mean()) if dark.any() else None,
            "diff_where_fused_bright": float(diff[bright].mean()) if bright.any() else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("brackets", type=Path)
    ap.add_argument("--split", default="train", choices=["train", "val", "all"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    from exposure_cli.data.brackets import load_stacks

    stacks = [s for s in load_stacks(args.brackets, args.split) if s.ev_source in KNOWN]
    print(f"{len(stacks)} known-exposure {args.split} stacks of {args.brackets}", flush=True)
    rows = []
    for s in stacks:
        t = time.time()
        r = scene(s)
        rows.append(r)
        print(f"  {r['id']:32s} {r['category']:8s} DR {r['dynamic_range_stops']:5.1f} stops  fused grey "
              f"{r['fused_mean_grey']:.3f}  HDR-labeller grey {r['hdr_mean_grey']:.3f}  diff {r['mean_diff']:+.3f} "
              f"({time.time() - t:.1f} s)", flush=True)

    def summary(sel: list[dict]) -> dict:
        return {"scenes": len(sel), "mean_diff": statistics.fmean(r["mean_diff"] for r in sel),
                "median_diff": statistics.median(r["mean_diff"] for r in sel),
                "mean_abs_diff": statistics.fmean(r["mean_abs_diff"] for r in sel),
                "lighter_share": sum(r["mean_diff"] > 0 for r in sel) / len(sel)}

    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "split": args.split, "scenes": rows,
           "all": summary(rows), "by_category": {}, "by_dynamic_range": {}}
    for cat in sorted({r["category"] for r in rows}):
        out["by_category"][cat] = summary([r for r in rows if r["category"] == cat])
    cuts = [(0, 10), (10, 14), (14, 99)]
    for lo, hi in cuts:
        sel = [r for r in rows if lo <= r["dynamic_range_stops"] < hi]
        if sel:
            out["by_dynamic_range"][f"{lo}-{hi}"] = summary(sel)
    print("\n| scenes | n | mean grey diff (HDR labeller − fused) | median | mean abs | HDR labeller lighter |")
    print("|---|---|---|---|---|---|")
    for name, s in [("all", out["all"]), *out["by_category"].items(),
                    *((f"DR {k} stops", v) for k, v in out["by_dynamic_range"].items())]:
        print(f"| {name} | {s['scenes']} | {s['mean_diff']:+.3f} | {s['median_diff']:+.3f} | {s['mean_abs_diff']:.3f} | "
              f"{s['lighter_share']:.0%} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
