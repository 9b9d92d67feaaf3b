"""The numba face cascade (exposure_cli.face_cascade) returns scikit-image's boxes, in scikit-image's order.

Exactness is checked two ways on every image: with the detector's own settings (grouped boxes, what
``regions.detect_faces`` returns) and with grouping switched off (``min_neighbor_number=1`` and an overlap
threshold no pair can exceed), which lists every window that passes the cascade, in scan order — one wrong
float32 sum or comparison anywhere shows up there. The images are generated from the photos that ship
inside scikit-image (faces, pasted LFW faces, shifted, zoomed, slightly rotated, noisy, flat, gradients,
tiny); ``corpus/val`` photos are added when that folder is present (set ``EXPOSURE_VAL_DIR`` to use
another copy).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")
skimage_data = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")

from skimage.feature import Cascade  # noqa: E402

from exposure_cli import face_cascade, regions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Grouping off: every window that passes the cascade becomes its own box (overlap scores are at most 1).
RAW = {"min_neighbor_number": 1, "intersection_score_threshold": 2.0}


@pytest.fixture(scope="module")
def reference():
    return Cascade(skimage_data.lbp_frontal_face_cascade_filename())


@pytest.fixture(scope="module")
def fast():
    return face_cascade.default_cascade()


def _grey(rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(rgb, dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    return image / 255.0


def _long_side(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def _photos() -> dict[str, np.ndarray]:
    """Grey float32 [0, 1] copies of the photos bundled in scikit-image's wheel (no download)."""
    names = ["astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
             "retina", "coins", "horse", "moon", "page", "text", "brick", "grass", "gravel", "clock", "cell",
             "microaneurysms", "logo", "colorwheel"]
    return {name: _grey(getattr(skimage_data, name)()) for name in names}


def _pasted(photos: dict[str, np.ndarray], n: int, seed: int) -> list[np.ndarray]:
    """`n` 336×448 photos with one LFW face (25×25, enlarged to 90–330 px) pasted at a random place."""
    faces = skimage_data.lfw_subset()[:100].astype(np.float32)  # the first 100 are faces
    backgrounds = [photos[k] for k in ("coffee", "chelsea", "rocket", "camera", "brick", "grass", "moon")]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = cv2.resize(backgrounds[i % len(backgrounds)], (448, 336), interpolation=cv2.INTER_AREA)
        s = int(rng.integers(90, 331))
        face = cv2.resize(faces[i % 100], (s, s), interpolation=cv2.INTER_LINEAR)
        face = face * rng.uniform(0.5, 1.2) + rng.uniform(-0.1, 0.2)  # contrast and brightness
        r0, c0 = int(rng.integers(0, 336 - s + 1)), int(rng.integers(0, 448 - s + 1))
        photo[r0 : r0 + s, c0 : c0 + s] = np.clip(face, 0, 1)
        out.append(photo)
    return out


def _rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def generated_images() -> list[tuple[str, np.ndarray]]:
    """About 800 deterministic images, 20–112 px long side unless tiny on purpose; names say what each is."""
    photos = _photos()
    rng = np.random.default_rng(7)
    out: list[tuple[str, np.ndarray]] = []
    sides = (20, 23, 24, 25, 28, 31, 40, 48, 57, 64, 72, 80, 96, 100, 111, 112)
    for name, photo in photos.items():
        for side in sides:
            out.append((f"{name}@{side}", _long_side(photo, side)))
    pasted = _pasted(photos, 60, seed=3)
    for i, photo in enumerate(pasted):
        out.append((f"pasted{i}@112", _long_side(photo, 112)))
        out.append((f"pasted{i}@64", _long_side(photo, 64)))
    faces = skimage_data.lfw_subset().astype(np.float32)
    for i in range(0, 200, 4):  # every 4th of the 100 faces and of the 100 non-faces, enlarged
        for side in (26, 40, 64, 112):
            out.append((f"lfw{i}@{side}", cv2.resize(faces[i], (side, side), interpolation=cv2.INTER_LINEAR)))
    astronaut = photos["astronaut"]  # a frontal face at about (rows 40–200, cols 150–260) of 512
    for dy in range(0, 24, 3):  # shifted crops
        for dx in range(0, 24, 5):
            out.append((f"astronaut-shift{dy},{dx}", _long_side(astronaut[dy : dy + 480, dx : dx + 480], 112)))
    for zoom in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.3):  # zoomed around the face (crop or border)
        size = int(512 * zoom)
        padded = cv2.copyMakeBorder(astronaut, 256, 256, 256, 256, cv2.BORDER_REFLECT)
        cy, cx = 120 + 256, 205 + 256
        crop = padded[cy - size // 2 : cy + size // 2, cx - size // 2 : cx + size // 2]
        for side in (64, 112):
            out.append((f"astronaut-zoom{zoom}@{side}", _long_side(crop, side)))
    for degrees in (-12, -7, -4, -2, -1, 1, 2, 4, 7, 12):  # slightly rotated
        out.append((f"astronaut-rot{degrees}", _long_side(_rotated(astronaut, degrees), 112)))
        for i in (0, 1, 5):
            out.append((f"pasted{i}-rot{degrees}", _long_side(_rotated(pasted[i], degrees), 112)))
    for sigma in (0.01, 0.03, 0.1, 0.3):  # noise
        for base_name, photo in (("astronaut", astronaut), ("pasted2", pasted[2])):
            base = _long_side(photo, 112)
            noisy = base + rng.normal(0, sigma, base.shape).astype(np.float32)
            out.append((f"{base_name}-noise{sigma}", np.clip(noisy, 0, 1)))
    for shape in ((112, 112), (84, 112), (112, 63), (30, 112)):
        out.append((f"noise{shape}", rng.random(shape, dtype=np.float32)))
        for value in (0.0, 0.5, 1.0):  # flat frames: every block sum ties with the centre's
            out.append((f"flat{value}{shape}", np.full(shape, value, np.float32)))
        y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        out.append((f"gradient-x{shape}", x / shape[1]))
        out.append((f"gradient-y{shape}", y / shape[0]))
        out.append((f"gradient-xy{shape}", (x + y) / (shape[0] + shape[1])))
        out.append((f"checker{shape}", ((x // 4 + y // 4) % 2).astype(np.float32)))
        out.append((f"rings{shape}", 0.5 + 0.5 * np.sin(np.hypot(x - shape[1] / 2, y - shape[0] / 2) / 3)))
    for shape in ((1, 1), (5, 7), (10, 30), (16, 112), (112, 16), (19, 19), (23, 23), (24, 24), (25, 25),
                  (23, 112), (24, 112), (25, 40), (26, 26)):  # tiny: at most the cascade's 24 px window
        face = cv2.resize(astronaut[40:200, 150:260], shape[::-1], interpolation=cv2.INTER_AREA)
        out.append((f"tiny{shape}", face))
        out.append((f"tiny-noise{shape}", rng.random(shape, dtype=np.float32)))
    # value ranges where float32 integral images round differently: 0–255, a large offset, negatives
    for name in ("astronaut", "camera", "chelsea"):
        small = _long_side(photos[name], 112)
        out.append((f"{name}-x255", small * 255))
        out.append((f"{name}-u8", np.round(small * 255).astype(np.uint8)))
        out.append((f"{name}+1000", small + 1000))
        out.append((f"{name}-neg", small - 0.5))
        out.append((f"{name}-f64", small.astype(np.float64) / 3))
    return out


@pytest.fixture(scope="module")
def images():
    return generated_images()


def _both(reference, fast, image, **kwargs):
    expected = reference.detect_multi_scale(img=np.ascontiguousarray(image, dtype=np.float64), **kwargs)
    got = fast.detect_multi_scale(image, **kwargs)
    return expected, got


def _regions_search(image):
    side = min(image.shape)
    return {"scale_factor": 1.25, "step_ratio": 1, "min_size": (16, 16), "max_size": (side, side)}


def test_the_generated_set_is_varied(images):
    assert len(images) >= 700
    sides = {max(im.shape) for _, im in images}
    assert {20, 24, 64, 112} <= sides and min(sides) < 24


def test_same_boxes_as_scikit_image_on_generated_images(reference, fast, images):
    with_faces = raw_windows = 0
    for name, image in images:
        search = _regions_search(image)
        expected, got = _both(reference, fast, image, **search)
        assert got == expected, name
        with_faces += bool(expected)
        expected, got = _both(reference, fast, image, **search, **RAW)
        assert got == expected, f"{name}: windows that pass the cascade"
        raw_windows += len(expected)
    # the comparison means something only if the cascade fires: faces found and many windows passed
    assert with_faces >= 200, with_faces  # 237 of 837 when written
    assert raw_windows >= 2000, raw_windows  # 2514


#: Other searches than the detector's: scale steps, strides, neighbour counts, overlaps, size limits.
SEARCHES = [
    {"scale_factor": 1.1, "step_ratio": 1, "min_size": (24, 24), "max_size": (200, 200)},
    {"scale_factor": 1.2, "step_ratio": 1.5, "min_size": (30, 30), "max_size": (90, 90)},
    {"scale_factor": 1.3, "step_ratio": 2, "min_size": (20, 40), "max_size": (112, 80)},
    {"scale_factor": 1.5, "step_ratio": 1.3, "min_size": (16, 16), "max_size": (60, 112),
     "min_neighbor_number": 1},
    {"scale_factor": 1.25, "step_ratio": 1, "min_size": (16, 16), "max_size": (112, 112),
     "min_neighbor_number": 2, "intersection_score_threshold": 0.3},
    {"scale_factor": 1.15, "step_ratio": 1.1, "min_size": (26, 26), "max_size": (100, 100),
     "min_neighbor_number": 6, "intersection_score_threshold": 0.7},
    {"scale_factor": 1.25, "step_ratio": 2.6, "min_size": (24, 24), "max_size": (112, 112), **RAW},
]


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_same_boxes_with_other_search_settings(reference, fast, images, search):
    for name, image in images[::4]:
        expected, got = _both(reference, fast, image, **search)
        assert got == expected, name


def test_detect_returns_rows_of_the_same_boxes(fast, images):
    name, image = next((n, im) for n, im in images if n == "astronaut@112")
    boxes = fast.detect(image, **_regions_search(image))
    assert boxes.dtype == np.int64 and boxes.shape == (1, 4)
    as_dicts = fast.detect_multi_scale(image, **_regions_search(image))
    assert [(d["r"], d["c"], d["height"], d["width"]) for d in as_dicts] == [tuple(b) for b in boxes.tolist()]


def test_the_parsed_cascade_matches_the_file(fast, reference):
    assert (fast.window_height, fast.window_width) == (reference.window_height, reference.window_width)
    assert fast.stage_limit.size == reference.stages_number == 20
    assert fast.leaves.shape == (reference.stumps_number, 2) == fast.luts.shape[:1] + (2,)
    assert fast.features.shape == (reference.features_number, 4)
    assert fast.eps == np.float32(reference.eps)


def test_a_step_of_zero_pixels_is_refused(fast):
    with pytest.raises(ValueError, match="step"):  # scikit-image would loop forever
        fast.detect(np.zeros((64, 64)), scale_factor=1.25, step_ratio=0.1, min_size=(24, 24), max_size=(64, 64))


def test_a_colour_image_is_refused(fast):
    with pytest.raises(ValueError, match="2-D"):
        fast.detect(np.zeros((64, 64, 3)), scale_factor=1.25, step_ratio=1, min_size=(24, 24), max_size=(64, 64))


def test_regions_detect_faces_uses_the_numba_kernel(monkeypatch, images, reference):
    calls = []
    detect = face_cascade.LbpCascade.detect

    def spy(self, *args, **kwargs):
        calls.append(args[0].shape)
        return detect(self, *args, **kwargs)

    monkeypatch.setattr(face_cascade.LbpCascade, "detect", spy)
    assert regions._fast_face_cascade() is face_cascade.default_cascade()
    assert "numba" in regions.detector_status()["face"]
    for name, image in images[::3]:
        if min(image.shape) < 20:
            assert regions.detect_faces(image) == []
            continue
        search = _regions_search(image)
        expected = reference.detect_multi_scale(img=np.ascontiguousarray(image, dtype=np.float64), **search)
        assert regions.detect_faces(image) == [(d["r"], d["c"], d["height"], d["width"]) for d in expected], name
    assert len(calls) > 200


def test_without_numba_scikit_image_runs_the_cascade(monkeypatch, images):
    faces_fast = [regions.detect_faces(image) for _, image in images[::10]]
    monkeypatch.setitem(sys.modules, "exposure_cli.face_cascade", None)  # `import` raises ImportError
    regions._fast_face_cascade.cache_clear()
    try:
        assert regions._fast_face_cascade() is None
        assert "run by scikit-image" in regions.detector_status()["face"]
        assert "fast" in regions.detector_status()["face"]  # names the extra to install
        assert [regions.detect_faces(image) for _, image in images[::10]] == faces_fast
        assert any(faces_fast)
    finally:
        monkeypatch.undo()
        regions._fast_face_cascade.cache_clear()
    assert regions._fast_face_cascade() is not None


def _val_dir() -> Path | None:
    folder = Path(os.environ.get("EXPOSURE_VAL_DIR", ROOT / "corpus" / "val"))
    inputs = folder / "Input" if (folder / "Input").is_dir() else folder
    return inputs if inputs.is_dir() else None


@pytest.mark.skipif(_val_dir() is None, reason="no corpus/val here (a clean clone has none; EXPOSURE_VAL_DIR)")
def test_same_boxes_on_validation_photos(reference, fast):
    paths = sorted(p for p in _val_dir().iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    paths = paths[:: max(1, len(paths) // 300)][:300]
    compared = with_faces = 0
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        rgb = bgr[..., ::-1].astype(np.float32) / 255
        for thumb in (None, 64):  # the detector's 112 px copy of the photo, and of a 64 px thumbnail
            factor = 1.0 if thumb is None else thumb / max(rgb.shape[:2])
            source = rgb if thumb is None else cv2.resize(rgb, None, fx=factor, fy=factor,
                                                          interpolation=cv2.INTER_AREA)
            _, grey = regions.region_inputs(source)
            if min(grey.shape) < 20:
                continue
            search = _regions_search(grey)
            for extra in ({}, RAW):
                expected, got = _both(reference, fast, grey, **search, **extra)
                assert got == expected, (path.name, thumb, extra)
            with_faces += bool(expected)
            compared += 1
    assert compared >= 200, compared


def test_import_compiles_nothing_and_the_cache_goes_to_numba_cache_dir(tmp_path):
    """In a fresh process with an empty cache: importing compiles no kernel, the first detection compiles
    them and writes them to ``NUMBA_CACHE_DIR``; ``exposure --help`` does not import numba."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from exposure_cli import face_cascade
        kernels = [face_cascade._detect, face_cascade._group, face_cascade._passes, face_cascade._padded_integral]
        assert all(not k.signatures for k in kernels), "compiled at import"
        boxes = face_cascade.default_cascade().detect(np.zeros((40, 50)), 1.25, 1, (16, 16), (40, 40))
        assert boxes.shape == (0, 4)
        assert face_cascade._detect.signatures
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=ROOT, timeout=300)
    assert list((tmp_path / "numba").rglob("*face_cascade._detect*.nbi"))
    help_check = "import sys\nfrom exposure_cli.cli import main\nsys.argv = ['exposure', '--help']\n" \
                 "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'numba' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", help_check], check=True, env=env, cwd=ROOT, timeout=120,
                   stdout=subprocess.DEVNULL)
