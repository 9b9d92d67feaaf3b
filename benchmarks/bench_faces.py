"""The face detector: scikit-image's Cython cascade against exposure_cli.face_cascade (numba), side by side.

Usage:
    python benchmarks/bench_faces.py                                  # corpus/photos if present, else generated
    python benchmarks/bench_faces.py --photos /work/main/corpus/photos --json /tmp/faces.json

1. CPU ms per call of ``detect_multi_scale`` with the detector's settings (``regions.detect_faces``: scale
   step 1.25, step ratio 1, windows 24 px up to the copy's short side) on ~200 varied grey copies at the
   detectors' 112 px and on 64 px copies (a 64 px thumbnail is not enlarged). The photos: up to 150 from
   --photos, the rest generated from scikit-image's bundled photos (half with an LFW face pasted in, so
   that some windows run deep into the cascade). Both detectors run on the same copies, in alternating
   rounds; every box list is compared (a mismatch is reported, and fails the run).
2. First-call cost of the numba kernels in a fresh process: ``import`` of the module, then the first
   detection, with an empty ``NUMBA_CACHE_DIR`` (compile and write the cache) and again with that now
   warm directory (load the cache), and the second call for comparison.

One thread, one process at a time; numbers are process CPU time (``time.process_time``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEARCH = {"scale_factor": 1.25, "step_ratio": 1, "min_size": (16, 16)}


def photos(folder: Path | None, n: int, seed: int):
    """`n` RGB float32 [0, 1] photos: up to 150 from `folder`, the rest generated."""
    import cv2
    import numpy as np
    from skimage import data

    rng = np.random.default_rng(seed)
    out = []
    if folder is not None and folder.is_dir():
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for path in rng.permutation(paths)[: min(150, n)]:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is not None:
                out.append(bgr[..., ::-1].astype(np.float32) / 255)
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry(),
               data.hubble_deep_field(), np.dstack([data.camera()] * 3), np.dstack([data.moon()] * 3),
               np.dstack([data.brick()] * 3), np.dstack([data.grass()] * 3)]
    faces = data.lfw_subset()[:100].astype(np.float32)
    while len(out) < n:
        i = len(out)
        photo = sources[i % len(sources)].astype(np.float32) / 255
        h, w = photo.shape[:2]
        top, left = int(rng.integers(0, h // 4)), int(rng.integers(0, w // 4))  # a varied crop
        photo = np.ascontiguousarray(photo[top : top + int(h * rng.uniform(0.7, 0.75)),
                                           left : left + int(w * rng.uniform(0.7, 0.75))])
        if i % 2:  # an LFW face pasted in, a fifth to a half of the short side
            h, w = photo.shape[:2]
            s = int(rng.integers(min(h, w) // 5, min(h, w) // 2))
            face = cv2.resize(faces[i % 100], (s, s), interpolation=cv2.INTER_LINEAR)
            r0, c0 = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            photo[r0 : r0 + s, c0 : c0 + s] = face[..., None]
        out.append(photo)
    return out


def grey_copies(rgbs, long_side: int | None):
    """The detector's grey working copy of each photo, or of its `long_side` px thumbnail."""
    import cv2
    import numpy as np

    from exposure_cli import regions

    out = []
    for rgb in rgbs:
        if long_side is not None:
            scale = long_side / max(rgb.shape[:2])
            rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA)
        grey = regions.region_inputs(rgb)[1]
        out.append(np.ascontiguousarray(grey, dtype=np.float64))
    return out


def per_call(greys, reference, fast, rounds: int) -> dict:
    """Median over rounds of CPU ms per call, both detectors alternating; checks every box list."""
    import numpy as np

    def sk(g):
        return reference.detect_multi_scale(img=g, max_size=(min(g.shape),) * 2, **SEARCH)

    def nb(g):
        return fast.detect_multi_scale(g, max_size=(min(g.shape),) * 2, **SEARCH)

    mismatches = [i for i, g in enumerate(greys) if sk(g) != nb(g)]  # also compiles / warms both
    with_faces = sum(bool(nb(g)) for g in greys)
    times = {"skimage": [], "numba": []}
    for _ in range(rounds):
        for name, fn in (("skimage", sk), ("numba", nb)):
            start = time.process_time()
            for g in greys:
                fn(g)
            times[name].append(1000 * (time.process_time() - start) / len(greys))
    sk_ms, nb_ms = statistics.median(times["skimage"]), statistics.median(times["numba"])
    return {"images": len(greys), "shapes": sorted({g.shape for g in greys})[:3] + ["…"],
            "with_faces": with_faces, "mismatches": mismatches,
            "skimage_ms": round(sk_ms, 3), "numba_ms": round(nb_ms, 3), "ratio": round(sk_ms / nb_ms, 2),
            "skimage_rounds_ms": [round(t, 3) for t in times["skimage"]],
            "numba_rounds_ms": [round(t, 3) for t in times["numba"]],
            "windows_per_image": float(np.mean([_windows(g.shape) for g in greys]))}


def _windows(shape) -> int:
    from exposure_cli.face_cascade import default_cascade

    h, w = shape
    total = 0
    for scale in default_cascade().scales((16, 16), (min(shape),) * 2, SEARCH["scale_factor"]):
        step = int(scale * 1 + 0.5)
        size = int(24 * scale)
        total += len(range(0, h - size, step)) * len(range(0, w - size, step))
    return total


FIRST_CALL = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter(); c0 = time.process_time()
    import numpy as np
    t1 = time.perf_counter()
    from exposure_cli import face_cascade
    t2 = time.perf_counter()
    cascade = face_cascade.default_cascade()
    image = np.random.default_rng(0).random((84, 112))
    t3 = time.perf_counter()
    cascade.detect(image, 1.25, 1, (16, 16), (84, 84))
    t4 = time.perf_counter()
    cascade.detect(image, 1.25, 1, (16, 16), (84, 84))
    t5 = time.perf_counter()
    print(json.dumps({"import_s": t2 - t1, "parse_s": t3 - t2, "first_call_s": t4 - t3,
                      "second_call_ms": 1000 * (t5 - t4), "process_cpu_s": time.process_time() - c0,
                      "module": face_cascade.__file__}))
    """
)


def first_calls() -> dict:
    """A fresh process with an empty NUMBA_CACHE_DIR, then one with that (now warm) directory."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for label in ("empty_cache", "warm_cache"):
            run = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, cwd=ROOT, check=True,
                                 capture_output=True, text=True)
            out[label] = {k: (round(v, 3) if isinstance(v, float) else v)
                          for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}
        out["cache_files"] = sorted(p.name for p in Path(cache).rglob("*.nbi"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=ROOT / "corpus" / "photos",
                    help="a folder of photos (up to 150 are used; the rest are generated)")
    ap.add_argument("-n", type=int, default=200, help="photos (default 200)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import cv2
    import numba
    import skimage
    from skimage import data
    from skimage.feature import Cascade

    from exposure_cli import face_cascade

    cv2.setNumThreads(1)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    # the first calls first, each in its own fresh process, before this one loads anything heavy
    compile_times = first_calls()
    reference = Cascade(data.lbp_frontal_face_cascade_filename())
    fast = face_cascade.default_cascade()
    rgbs = photos(args.photos, args.n, args.seed)
    result = {
        "started": started, "load_average_at_start": round(load, 2), "numba": numba.__version__,
        "skimage": skimage.__version__, "photos_folder": str(args.photos) if args.photos.is_dir() else None,
        "112": per_call(grey_copies(rgbs, None), reference, fast, args.rounds),
        "64": per_call(grey_copies(rgbs, 64), reference, fast, args.rounds),
        "first_call": compile_times,
        "load_average_at_end": round(os.getloadavg()[0], 2),
    }
    print(f"{started}, load average {load:.2f} → {result['load_average_at_end']:.2f}; "
          f"numba {numba.__version__}, scikit-image {skimage.__version__}; "
          f"photos: {result['photos_folder'] or 'generated only'}")
    print("\ncopy   images  with faces  windows/image  skimage ms  numba ms  skimage ÷ numba  mismatches")
    for size in ("112", "64"):
        r = result[size]
        print(f"{size:>4} {r['images']:>8} {r['with_faces']:>11} {r['windows_per_image']:>14.0f} "
              f"{r['skimage_ms']:>11.3f} {r['numba_ms']:>9.3f} {r['ratio']:>16.2f}  {len(r['mismatches'])}")
    print("\nfirst call in a fresh process (wall s): import module, first detection, second detection (ms)")
    for label in ("empty_cache", "warm_cache"):
        r = compile_times[label]
        print(f"  {label:<12} import {r['import_s']:.3f}  first call {r['first_call_s']:.3f}  "
              f"second call {r['second_call_ms']:.2f} ms  process CPU {r['process_cpu_s']:.2f} s")
    empty, warm = compile_times["empty_cache"]["first_call_s"], compile_times["warm_cache"]["first_call_s"]
    print(f"  compile ÷ cache load: {empty / warm:.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if result["112"]["mismatches"] or result["64"]["mismatches"]:
        sys.exit("mismatching box lists: " + str({k: result[k]["mismatches"] for k in ("112", "64")}))


if __name__ == "__main__":
    main()
