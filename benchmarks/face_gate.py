"""What the face detector costs, and whether a cheaper pass could decide when to run it (issue 18).

Usage:
    python benchmarks/face_gate.py --photos /work/main/corpus/photos            # 250 photos, 600 pasted faces
    python benchmarks/face_gate.py --photos DIR --plain 250 --pasted 800 --seed 3

The detector is ``regions.detect_faces`` on the detectors' 112 px copy (scikit-image's LBP cascade, scale
step 1.25, every position at the two smallest scales). Everything runs on one thread; CPU ms per image.

1. Cost per window size: the cascade restricted to one scale at a time.
2. Gates: a cheaper pass that returns every window passing the cascade (no grouping), on fewer positions
   (``step_ratio`` 1.6 or 2: every 2nd–6th position) and/or with a looser cascade (``eps``: each stage's
   threshold lowered by eps). When the gate finds nothing the photo is taken to have no face; otherwise the
   full detector runs, so its answer is unchanged. For each gate: its cost, how often it fires on plain
   photos (`--photos`, sampled, plus the folder benchmark's generated images if present), the expected
   cost per photo (gate + fire rate × detector), and on photos with one LFW face pasted in (a random
   photo, a face of 26 px to the copy's short side, random place and contrast) how many of the faces the
   full detector finds the gate would lose.
3. An exact gate: a cascade cut after its first K stages passes every window the whole cascade passes, so
   "no window passes K stages" proves "no face". Its cost and how often it proves it.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import random
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import cv2
    import numpy as np
    from skimage import data
    from skimage.feature import Cascade

    from exposure_cli import regions as R

    cv2.setNumThreads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=None, help="a folder of photos (JPEG/PNG) for backgrounds")
    ap.add_argument("--bench", type=Path, default=Path("/tmp/small_bench/data/jpeg256_1000"),
                    help="the folder benchmark's 256 px JPEGs (64 of them are added to the plain photos)")
    ap.add_argument("--plain", type=int, default=250)
    ap.add_argument("--pasted", type=int, default=600)
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    full = R._face_cascade()
    xml = data.lbp_frontal_face_cascade_filename()

    def load(path):
        im = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_2)
        return None if im is None else R.region_inputs(im[..., ::-1].astype(np.float32) / 255)[1].astype(np.float64)

    photos = []
    if args.photos is not None:
        photos = sorted(p for p in glob.glob(str(args.photos / "**" / "*"), recursive=True)
                        if p.lower().endswith((".jpg", ".jpeg", ".png")))
    backgrounds = [cv2.cvtColor(im, cv2.COLOR_RGB2BGR) if im.ndim == 3 else im
                   for im in (data.coffee(), data.chelsea(), data.rocket(), data.camera())]

    def background():
        if photos:
            g = load(rng.choice(photos))
            if g is not None:
                return g
        im = backgrounds[rng.randrange(len(backgrounds))]
        im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if im.ndim == 2 else im
        return R.region_inputs(im[..., ::-1].astype(np.float32) / 255)[1].astype(np.float64)

    plain = [g for g in (load(p) for p in (rng.sample(photos, min(args.plain, len(photos))) if photos else []))
             if g is not None]
    plain += [g for g in (load(p) for p in sorted(glob.glob(str(args.bench / "*" / "*.jpg")))[:64]) if g is not None]
    if not plain:
        plain = [background() for _ in range(args.plain)]

    def raw(cascade, g, step_ratio, smin=16, smax=None):
        side = min(g.shape) if smax is None else smax
        return cascade.detect_multi_scale(img=g, scale_factor=1.25, step_ratio=step_ratio, min_size=(smin, smin),
                                          max_size=(side, side), min_neighbor_number=1,
                                          intersection_score_threshold=2.0)  # every window: no merging

    def cpu_ms(fn, items):
        t = time.process_time()
        out = [fn(g) for g in items]
        return 1000 * (time.process_time() - t) / len(items), out

    load_before = os.getloadavg()[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load_before:.1f}; "
          f"{len(plain)} plain photos (copies {plain[0].shape})\n")
    detector_ms, has_face = cpu_ms(lambda g: bool(R.detect_faces(g)), plain)
    print(f"full detector: {detector_ms:.2f} ms CPU per photo; faces in {sum(has_face)} of {len(plain)}\n")

    print("| window (px) | step | CPU ms per photo |\n|---|---|---|")
    for size in (24, 30, 37, 46, 58, 73):
        scale = size / 24
        ms, _ = cpu_ms(lambda g: full.detect_multi_scale(img=g, scale_factor=1.25, step_ratio=1, min_size=(size, size),
                                                         max_size=(size + 1, size + 1)), plain)
        print(f"| {size} | {max(1, int(np.floor(scale + 0.5)))} | {ms:.2f} |")

    loose = {eps: Cascade(xml, eps=eps) for eps in (0.05, 0.1, 0.2)}
    gates = {
        "step 1.6": lambda g: len(raw(full, g, 1.6)) > 0,
        "step 2.0": lambda g: len(raw(full, g, 2.0)) > 0,
        "step 1.6, eps 0.05": lambda g: len(raw(loose[0.05], g, 1.6)) > 0,
        "step 1.6, eps 0.1": lambda g: len(raw(loose[0.1], g, 1.6)) > 0,
        "step 1.6, eps 0.2": lambda g: len(raw(loose[0.2], g, 1.6)) > 0,
        "step 2.0, eps 0.2": lambda g: len(raw(loose[0.2], g, 2.0)) > 0,
    }
    rows = {}
    for name, gate in gates.items():
        ms, fired = cpu_ms(gate, plain)
        rows[name] = [ms, float(np.mean(fired)), sum(f and h for f, h in zip(fired, has_face))]

    found, missed = 0, dict.fromkeys(gates, 0)
    faces = data.lfw_subset()[:100]
    for _ in range(args.pasted):
        g = background().copy()
        h, w = g.shape
        s = rng.randint(26, min(h, w) - 2)
        face = cv2.resize(faces[rng.randrange(100)].astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR)
        r0, c0 = rng.randrange(0, h - s + 1), rng.randrange(0, w - s + 1)
        g[r0 : r0 + s, c0 : c0 + s] = face * rng.uniform(0.6, 1.1)
        if not R.detect_faces(g):
            continue
        found += 1
        for name, gate in gates.items():
            missed[name] += not gate(g)
    print(f"\n{args.pasted} pasted faces, the full detector finds {found}\n")
    print("| gate | gate CPU ms | fires on plain photos | expected CPU ms (gate + fire × detector) | "
          "plain photos' faces kept | pasted faces lost |\n|---|---|---|---|---|---|")
    for name, (ms, fire, kept) in rows.items():
        print(f"| {name} | {ms:.2f} | {100 * fire:.0f} % | {ms + fire * detector_ms:.2f} (detector {detector_ms:.2f}) "
              f"| {kept} of {sum(has_face)} | **{missed[name]} of {found}** |")

    print("\n| exact gate: the first K stages | CPU ms per photo | photos it proves face-free |\n|---|---|---|")
    tree = ET.parse(xml)
    for k in (4, 8, 12, 16):
        t = ET.parse(xml)
        stages = t.find(".//stages")
        for stage in list(stages)[k:]:
            stages.remove(stage)
        t.find(".//stageNum").text = str(k)
        buf = io.BytesIO()
        t.write(buf)
        buf.seek(0)
        cut = Cascade(buf)
        ms, hits = cpu_ms(lambda g: len(raw(cut, g, 1.0)), plain)
        print(f"| {k} of {len(tree.find('.//stages'))} | {ms:.2f} | {100 * np.mean([n == 0 for n in hits]):.0f} % |")
    print(f"\nload average {load_before:.1f} → {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
