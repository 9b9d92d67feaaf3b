"""Model weights: where they are found, their sha256, their card, loading and saving.

Weights are a ``model.safetensors`` file plus a JSON card (``card.json``) next to it. They are found in
this order: an explicit path (``--weights``), the ``EXPOSURE_WEIGHTS`` environment variable, the weights
shipped in the package. The card's sha256 of the safetensors file is always checked before loading;
nothing is unpickled. The scanner (``analyzers/eat.py``) and training (``training/loop.py``) both read and
write weights only through this module.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_ENV = "EXPOSURE_WEIGHTS"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
#: What a card says about the network's input and output (the output is the residual of ``color.residual``).
CARD_INPUT = "RGB float [0,1], any size (padded to a multiple of 32)"
CARD_OUTPUT = "r = grey(ideal) - grey(observed) in [-1,1]; r<0 over-exposed, r>0 under-exposed"


class WeightsError(RuntimeError):
    """Weights missing, unreadable, or not matching their card."""


@dataclass(frozen=True)
class LoadedWeights:
    """A weights file resolved and verified against its card."""

    path: Path
    card: dict[str, Any]
    sha256: str


def sha256_file(path: str | os.PathLike) -> str:
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
    candidates = [packaged, Path(__file__).resolve().parents[1] / "weights"]
    for folder in candidates:
        if folder is not None and (folder / WEIGHTS_FILE).is_file():
            return folder
    return None


def weights_in(location: str | os.PathLike) -> Path:
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
        path = weights_in(weights)
        if path.is_file():
            return path
        raise WeightsError(f"no EAT weights at {weights} (no file {path})")
    tried.append("--weights (not given)")
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = weights_in(env)
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


def make_card(
    architecture: str,
    config: dict[str, Any],
    parameters: int,
    working_long_side: int = 512,
    **fields: Any,
) -> dict[str, Any]:
    """A weights card: the architecture and its config, the working resolution, what goes in and out.

    ``fields`` adds the rest (training settings, validation metrics, data manifest hashes, lineage);
    :func:`save_weights` adds the sha256 of the weights file.
    """
    return {
        "architecture": architecture,
        "config": config,
        "parameters": int(parameters),
        "working_long_side": int(working_long_side),
        "input": CARD_INPUT,
        "output": CARD_OUTPUT,
        **fields,
    }


def load_model(weights_path: Path, device: Any = "cpu"):
    """Build the card's architecture and load the verified safetensors weights (no pickle)."""
    from safetensors.torch import load_file

    from .models import create_model

    loaded = verify_weights(weights_path)
    model = create_model(loaded.card["architecture"], loaded.card.get("config"))
    state = load_file(str(weights_path), device="cpu")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), loaded


def save_weights(model, folder: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` + ``card.json`` into `folder` (card gets the file's sha256).

    The card should hold at least ``architecture`` and ``config`` (see :func:`make_card`); training adds
    the training config, data manifest hash and validation metrics. Files are written to temporary names
    and renamed, so a reader never sees a half-written pair.
    """
    from safetensors.torch import save

    from .atomic import atomic_write, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    data = save(state, metadata={"architecture": str(card.get("architecture", ""))})
    card = {**card, "sha256": hashlib.sha256(data).hexdigest(), "weights_file": WEIGHTS_FILE}

    def write_weights(fh) -> None:
        fh.write(data)
        os.fchmod(fh.fileno(), 0o644)  # shipped weights must be world-readable whatever the umask

    atomic_write(folder / WEIGHTS_FILE, write_weights)
    atomic_write_text(folder / CARD_FILE, json.dumps(card, indent=2, sort_keys=True) + "\n")
    return folder / WEIGHTS_FILE


__all__ = [
    "CARD_FILE",
    "LoadedWeights",
    "WEIGHTS_ENV",
    "WEIGHTS_FILE",
    "WeightsError",
    "load_model",
    "make_card",
    "read_card",
    "resolve_weights",
    "save_weights",
    "sha256_file",
    "shipped_weights_dir",
    "verify_weights",
    "weights_in",
]
