"""The ``eat`` analyzer: the EAT-IEA network at a working resolution, maps brought back edge-aware.

Per batch: every photo is resized so its long side is ``working_long_side`` (512 by default), photos of the
same working size are stacked into one tensor (the network pads to its multiple of 32 and crops back), the
network runs under ``torch.inference_mode`` in channels-last layout (bf16/fp16 autocast on CUDA), and each
map is brought back to its photo's size by guided-filter upsampling with the photo's grey image as the
guide, so heatmap edges follow the photo's edges instead of the working-resolution pixel grid.

Weights are a ``model.safetensors`` file plus a JSON card (``card.json``) next to it. They are found in
this order: the ``weights`` option, the ``EXPOSURE_WEIGHTS`` environment variable, the weights shipped in
the package. The card's sha256 of the safetensors file is checked before loading; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..color import grey
from .base import Analyzer, AnalyzerInfo

WEIGHTS_ENV = "EXPOSURE_WEIGHTS"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
#: Guided-filter radius (pixels at working resolution) and regulariser for the map upsampling.
GUIDE_RADIUS = 2
GUIDE_EPS = 1e-3


class WeightsError(RuntimeError):
    """Weights missing, unreadable, or not matching their card."""


@dataclass(frozen=True)
class LoadedWeights:
    """A weights file resolved and verified against its card."""

    path: Path
    card: dict[str, Any]
    sha256: str


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shipped_weights_dir() -> Path | None:
    """The folder holding the default weights: inside the installed wheel, or ``weights/`` of a checkout."""
    from importlib import resources

    try:
        packaged = Path(str(resources.files("exposure_cli") / "_weights"))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - zip imports
        packaged = None
    candidates = [packaged, Path(__file__).resolve().parents[2] / "weights"]
    for folder in candidates:
        if folder is not None and (folder / WEIGHTS_FILE).is_file():
            return folder
    return None


def _weights_in(location: str | os.PathLike) -> Path:
    """A weights path may name the safetensors file or the folder holding it."""
    path = Path(location).expanduser()
    return path / WEIGHTS_FILE if path.is_dir() else path


def resolve_weights(weights: str | os.PathLike | None = None) -> Path:
    """Find the weights file: `weights`, then $EXPOSURE_WEIGHTS, then the shipped default.

    Raises:
        WeightsError: when `weights` is given but holds no weights file (no fallback to other weights), or
            naming all three places when none holds a weights file.
    """
    tried: list[str] = []
    if weights:
        # an explicit choice never falls back to other weights: a typo must not silently scan with the default
        path = _weights_in(weights)
        if path.is_file():
            return path
        raise WeightsError(f"no EAT weights at {weights} (no file {path})")
    tried.append("--weights (not given)")
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = _weights_in(env)
        if path.is_file():
            return path
        tried.append(f"${WEIGHTS_ENV}={env} (no file {path})")
    else:
        tried.append(f"${WEIGHTS_ENV} (not set)")
    shipped = shipped_weights_dir()
    if shipped is not None:
        return shipped / WEIGHTS_FILE
    tried.append("shipped default weights (none packaged with this install)")
    raise WeightsError("no EAT weights found; looked at: " + "; ".join(tried))


def read_card(weights_path: Path) -> dict[str, Any]:
    """The JSON card next to a weights file."""
    card_path = weights_path.with_name(CARD_FILE)
    if not card_path.is_file():
        raise WeightsError(f"weights {weights_path} have no card {card_path}")
    try:
        return json.loads(card_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"unreadable weights card {card_path}: {exc}") from exc


def verify_weights(weights_path: Path) -> LoadedWeights:
    """Check the weights file's sha256 against its card."""
    card = read_card(weights_path)
    actual = sha256_file(weights_path)
    expected = card.get("sha256", "")
    if actual != expected:
        raise WeightsError(
            f"checksum mismatch for {weights_path}: card says {expected or '(missing)'}, file is {actual}"
        )
    return LoadedWeights(weights_path, card, actual)


def load_model(weights_path: Path, device: Any = "cpu"):
    """Build the card's architecture and load the verified safetensors weights (no pickle)."""
    from safetensors.torch import load_file

    from ..models import create_model

    loaded = verify_weights(weights_path)
    model = create_model(loaded.card["architecture"], loaded.card.get("config"))
    state = load_file(str(weights_path), device="cpu")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), loaded


def save_weights(model, folder: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` + ``card.json`` into `folder` (card gets the file's sha256).

    The card should hold at least ``architecture`` and ``config``; training adds the working resolution,
    data manifest hash, training config and validation metrics. Files are written to temporary names and
    renamed, so a reader never sees a half-written pair.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp_weights = folder / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp_weights), metadata={"architecture": str(card.get("architecture", ""))})
    os.chmod(tmp_weights, 0o644)  # safetensors writes 0600; shipped weights must be world-readable
    card = {**card, "sha256": sha256_file(tmp_weights), "weights_file": WEIGHTS_FILE}
    tmp_card = folder / (CARD_FILE + ".tmp")
    tmp_card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp_weights, folder / WEIGHTS_FILE)
    os.replace(tmp_card, folder / CARD_FILE)
    return folder / WEIGHTS_FILE


def pick_device(device: str = "auto") -> str:
    """Map the device option ("auto", "cpu", "cuda", "cuda:N", "mps") to an available torch device."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch build sees no CUDA GPU")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' asked for, but MPS is not available")
    if device != "cpu" and not device.startswith("cuda") and device != "mps":
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def working_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size (h, w) with the long side at `long_side`, aspect ratio kept, at least 1 pixel each."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _box(img: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    return cv2.boxFilter(img, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def guided_upsample(
    low_map: np.ndarray, low_guide: np.ndarray, full_guide: np.ndarray, radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS
) -> np.ndarray:
    """Bring a map to the guide's full size with a fast guided filter (He & Sun, 2015).

    The filter fits ``map ≈ a · guide + b`` in every (2·radius+1)² window at low resolution, averages the
    coefficients, upsamples *them* bilinearly and applies them to the full-resolution guide, so the map's
    edges snap to the guide's edges while flat regions stay smooth.

    Args:
        low_map: h×w float32 map.
        low_guide: h×w float32 guide (grey image at the map's resolution).
        full_guide: H×W float32 guide at the target resolution.
        radius: Window radius at low resolution.
        eps: Regulariser; larger = smoother, less edge-following.
    """
    import cv2

    low_map = low_map.astype(np.float32)
    low_guide = low_guide.astype(np.float32)
    mean_i = _box(low_guide, radius)
    mean_p = _box(low_map, radius)
    cov_ip = _box(low_guide * low_map, radius) - mean_i * mean_p
    var_i = _box(low_guide * low_guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a = _box(a, radius)
    mean_b = _box(b, radius)
    height, width = full_guide.shape
    a_full = cv2.resize(mean_a, (width, height), interpolation=cv2.INTER_LINEAR)
    b_full = cv2.resize(mean_b, (width, height), interpolation=cv2.INTER_LINEAR)
    return a_full * full_guide.astype(np.float32) + b_full


class EATAnalyzer(Analyzer):
    """Residual maps from the EAT-IEA network.

    Args:
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        weights: Weights file or folder; None → $EXPOSURE_WEIGHTS → shipped default.
        working_long_side: Long side the network sees (the card's training resolution is a good choice).
        batch_size: Images per forward pass.
        compile: Wrap the network in ``torch.compile`` (about 20 % faster on this 2-core CPU at batch 8,
            after a one-off compile of about a minute: worth it for scans of a few thousand photos).
    """

    def __init__(
        self,
        device: str = "auto",
        weights: str | os.PathLike | None = None,
        working_long_side: int = 512,
        batch_size: int = 8,
        compile: bool = False,
        **_: object,
    ) -> None:
        import torch

        if int(working_long_side) < 32:
            raise ValueError(f"working_long_side must be at least 32, got {working_long_side}")
        self.working_long_side = int(working_long_side)
        self.batch_size = max(1, int(batch_size))
        self.device = pick_device(device)
        path = resolve_weights(weights)
        model, self._weights = load_model(path, "cpu")
        self.model = model.to(self.device, memory_format=torch.channels_last)
        if compile:
            self.model = torch.compile(self.model)
        # On CUDA, host batches go through a pinned buffer so the copy to the GPU is asynchronous.
        self._pin = self.device.startswith("cuda")
        self._autocast_dtype = None
        if self.device.startswith("cuda"):
            self._autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @property
    def info(self) -> AnalyzerInfo:
        card = self._weights.card
        return AnalyzerInfo(
            name="eat",
            version=f"{__version__}+{card.get('architecture', 'eat_iea')}",
            weights_sha256=self._weights.sha256,
            working_long_side=self.working_long_side,
            extra={"architecture": str(card.get("architecture", "")), "weights": str(self._weights.path)},
        )

    def analyze_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        import cv2

        results: list[np.ndarray | None] = [None] * len(images)
        resized: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
        for index, image in enumerate(images):
            image = np.asarray(image, dtype=np.float32)
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
            h, w = working_size(image.shape[0], image.shape[1], self.working_long_side)
            interpolation = cv2.INTER_AREA if h < image.shape[0] else cv2.INTER_LINEAR
            small = image if (h, w) == image.shape[:2] else cv2.resize(image, (w, h), interpolation=interpolation)
            resized.setdefault((h, w), []).append((index, np.clip(small, 0.0, 1.0)))
        for group in resized.values():
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                maps = self._run([img for _, img in chunk])
                for (index, small), low_map in zip(chunk, maps):
                    results[index] = self._to_input_size(low_map, small, np.asarray(images[index], np.float32))
        return [r for r in results if r is not None]

    def _run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Network maps for same-size working images."""
        import torch

        tensor = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
        if self._pin:
            tensor = tensor.pin_memory()
        tensor = tensor.to(self.device, non_blocking=self._pin).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self._autocast_dtype is not None:
                with torch.autocast("cuda", dtype=self._autocast_dtype):
                    out = self.model(tensor)
            else:
                out = self.model(tensor)
            maps = out.float()[:, 0].clamp(-1.0, 1.0).cpu().numpy()
        return list(maps)

    @staticmethod
    def _to_input_size(low_map: np.ndarray, small: np.ndarray, image: np.ndarray) -> np.ndarray:
        import cv2

        height, width = image.shape[:2]
        if (height, width) == low_map.shape:
            out = low_map
        elif height * width < low_map.size:
            out = cv2.resize(low_map, (width, height), interpolation=cv2.INTER_AREA)
        else:
            out = guided_upsample(low_map, grey(small), grey(np.clip(image, 0.0, 1.0)))
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    def close(self) -> None:
        self.model = None


__all__ = [
    "CARD_FILE",
    "EATAnalyzer",
    "WEIGHTS_ENV",
    "WEIGHTS_FILE",
    "WeightsError",
    "guided_upsample",
    "load_model",
    "resolve_weights",
    "save_weights",
    "sha256_file",
    "verify_weights",
]
