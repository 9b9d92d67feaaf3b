"""The ``eat`` analyzer: the EAT-IEA network at a working resolution, maps brought back edge-aware.

Per batch: every photo larger than ``working_long_side`` (the weights card's, 320 for the shipped weights;
docs/MODEL.md "Stage 10") is shrunk so its long side is that; smaller photos keep their own size from
``native_min_long_side`` (256 px) up, and tinier ones go through a thumbnail copy — per size band for the
shipped weights (their card's ``thumbnail_bands``: 256 under 128 px, 384, 224, 320 up to 256), 512 by default
— because their maps measurably suffer otherwise (docs/MODEL.md "Small images"). Photos are grouped by their size padded
to the network's multiple of 32, padded to it by edge replication (as the network pads its input itself) and
stacked — as many per forward pass as fit the pixels of ``batch_size`` working-size photos, so a batch of
small photos costs what its pixels cost — and each map is cropped back to its photo. The network runs under
``torch.inference_mode`` in channels-last layout (bf16/fp16 autocast on CUDA), and each map is brought back to
its photo's size by guided-filter upsampling with the photo's grey image as the guide
(``exposure_cli.imageops``). Weights are found, checked against their card and loaded by
``exposure_cli.weights``.

A card may also name **thumbnail weights** (``thumbnail_weights``: ``below_long_side``, ``path`` relative to
the card's folder, ``sha256``): a network trained for thumbnail copies, used instead of the main one for
photos whose long side is under ``below_long_side`` (docs/MODEL.md "Stage 20"). It is verified when the
analyzer is built and loaded on the first such photo.

A card may carry a **residual calibration** (``residual_calibration``): a fitted table that corrects the
main network's working-size map as a function of its value and the pixel's grey level, applied before the
upsampling (:mod:`exposure_cli.residual_calibration`, docs/MODEL.md "Stage 26").
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .._version import __version__
from ..color import grey
from ..imageops import (
    NATIVE_MIN_LONG_SIDE, THUMBNAIL_LONG_SIDE, ThumbnailCopy, analysis_size, describe_thumbnail, map_to_image_size,
    pad_to, padded_size, thumbnail_copy, to_working_size,
)
from ..residual_calibration import ResidualCalibration
from ..weights import WeightsError, load_model, resolve_weights, verify_weights, weights_in
from .base import DEFAULT_WORKING_LONG_SIDE, Analyzer, AnalyzerInfo


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


#: Default of ``EATAnalyzer(thumbnail_long_side=…, thumbnail_weights=…)``: read it from the weights card.
FROM_CARD = object()


def thumbnail_weights_spec(value: Any, card_folder: os.PathLike | str,
                           native_min_long_side: int = NATIVE_MIN_LONG_SIDE) -> tuple[int, Any] | None:
    """``(below_long_side, LoadedWeights)`` from a card's ``thumbnail_weights`` entry, verified, or None.

    The entry is ``{"below_long_side": N, "path": P, "sha256": H}``: photos whose long side is under N (and
    that go through a thumbnail copy) are read by the weights at P (a file or folder, relative to the card's
    folder), whose own card must say sha256 H.

    Raises:
        ValueError: a malformed entry. WeightsError: the weights are missing or not the ones named.
    """
    if value is None:
        return None
    from pathlib import Path

    try:
        below, rel, sha = int(value["below_long_side"]), str(value["path"]), str(value["sha256"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError("thumbnail_weights must be {\"below_long_side\": N, \"path\": P, \"sha256\": H}, "
                         f"got {value!r}") from exc
    if not 1 <= below <= int(native_min_long_side):
        raise ValueError(f"thumbnail_weights' below_long_side must be from 1 to {native_min_long_side} (photos "
                         f"read through a thumbnail copy), got {below}")
    path = weights_in(Path(card_folder) / rel)
    if not path.is_file():
        raise WeightsError(f"thumbnail weights named by the card are missing: no file {path}")
    loaded = verify_weights(path)
    if loaded.sha256 != sha:
        raise WeightsError(f"thumbnail weights {path} are not the ones the card names: "
                           f"card says {sha}, file is {loaded.sha256}")
    return below, loaded


class EATAnalyzer(Analyzer):
    """Residual maps from the EAT-IEA network.

    Args:
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        weights: Weights file or folder; None → $EXPOSURE_WEIGHTS → shipped default.
        working_long_side: Long side the network sees for larger photos; None → the weights card's
            ``working_long_side`` (chosen by measurement for those weights), else DEFAULT_WORKING_LONG_SIDE.
        native_min_long_side: Photos with a long side from this up to ``working_long_side`` are analysed at
            their own size; smaller ones are upscaled to ``thumbnail_long_side`` (``> working_long_side``:
            every photo at ``working_long_side``, the old way).
        thumbnail_long_side: Long side of the copy a photo smaller than ``native_min_long_side`` is analysed
            at, or size bands of copies (:data:`~exposure_cli.imageops.ThumbnailCopy`; None →
            ``working_long_side``); not given → the weights card's ``thumbnail_bands``, else its
            ``thumbnail_long_side`` (the small-images rule's choice for those weights), else
            THUMBNAIL_LONG_SIDE.
        batch_size: Working-size photos per forward pass; smaller photos fill the same number of pixels.
        thumbnail_weights: Weights for photos under a long side, as a card's ``thumbnail_weights`` entry (see
            :func:`thumbnail_weights_spec`; its path relative to the main weights' folder), or None for the
            main network everywhere; not given → the card's entry when the thumbnail copy comes from the
            card too, else None.
        compile: Wrap the network in ``torch.compile`` (same as ``runtime="compile"``).
        runtime: Inference runtime (:class:`exposure_cli.runtimes.Runtime`; default
            :data:`~exposure_cli.runtimes.DEFAULT_RUNTIME`). ONNX Runtime and OpenVINO need their extras.
        residual_calibration: Apply the card's ``residual_calibration`` table, when it has one, to the main
            network's working-size maps (:mod:`exposure_cli.residual_calibration`); False → the raw maps.
    """

    def __init__(
        self,
        device: str = "auto",
        weights: str | os.PathLike | None = None,
        working_long_side: int | None = None,
        batch_size: int = 8,
        native_min_long_side: int = NATIVE_MIN_LONG_SIDE,
        thumbnail_long_side: int | None | object = FROM_CARD,
        thumbnail_weights: Any = FROM_CARD,
        compile: bool = False,
        runtime: str | None = None,
        residual_calibration: bool = True,
        **_: object,
    ) -> None:
        import torch

        if working_long_side is not None and int(working_long_side) < 32:
            raise ValueError(f"working_long_side must be at least 32, got {working_long_side}")
        self.native_min_long_side = int(native_min_long_side)
        self.batch_size = max(1, int(batch_size))
        self.device = pick_device(device)
        path = resolve_weights(weights)
        model, self._weights = load_model(path, "cpu")
        card = self._weights.card
        if thumbnail_weights is FROM_CARD:
            # the card's thumbnail network was chosen with the card's thumbnail copies
            thumbnail_weights = card.get("thumbnail_weights") if thumbnail_long_side is FROM_CARD else None
        if thumbnail_long_side is FROM_CARD:
            thumbnail_long_side = (card.get("thumbnail_bands") or card.get("thumbnail_long_side")
                                   or THUMBNAIL_LONG_SIDE)
        spec = thumbnail_weights_spec(thumbnail_weights, path.parent, self.native_min_long_side)
        self.thumbnail_weights_below = spec[0] if spec else 0
        self._thumbnail_weights = spec[1] if spec else None
        self._thumbnail_runner = None  # built on the first photo that needs it
        self.thumbnail_long_side: ThumbnailCopy = thumbnail_copy(thumbnail_long_side or None)
        self.working_long_side = int(working_long_side or self._weights.card.get("working_long_side")
                                     or DEFAULT_WORKING_LONG_SIDE)
        #: The card's output calibration of the main network's maps (None: none, or switched off).
        self.residual_calibration = ResidualCalibration.from_card(card) if residual_calibration else None
        from ..runtimes import DEFAULT_RUNTIME, Runtime

        self.runtime = Runtime(runtime or (Runtime.compile if compile else DEFAULT_RUNTIME))
        self._runner = self._build_runner(model)
        self.model = getattr(self._runner, "model", model)
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
            extra={"architecture": str(card.get("architecture", "")), "weights": str(self._weights.path),
                   # only when one applies: without it the maps (and a resumed scan's metadata) are as before
                   **({"residual_calibration": self.residual_calibration.fitted_on or "yes"}
                      if self.residual_calibration is not None else {}),
                   "runtime": self.runtime.value, "native_min_long_side": str(self.native_min_long_side),
                   "thumbnail_long_side": describe_thumbnail(self.thumbnail_long_side or self.working_long_side),
                   "thumbnail_weights": (f"under {self.thumbnail_weights_below} px: "
                                         f"{self._thumbnail_weights.sha256}" if self._thumbnail_weights else "")},
        )

    @property
    def ev_calibration(self):
        from ..correction import EVCalibration

        return EVCalibration.from_card(self._weights.card)

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) the network sees for a `height`×`width` photo (before padding to its multiple)."""
        return analysis_size(height, width, self.working_long_side, self.native_min_long_side,
                             self.thumbnail_long_side)

    def uses_thumbnail_weights(self, height: int, width: int) -> bool:
        """Whether a `height`×`width` photo is read by the thumbnail weights rather than the main ones."""
        longest = max(height, width)
        return (self._thumbnail_weights is not None and longest < self.thumbnail_weights_below
                and longest < self.native_min_long_side <= self.working_long_side)

    def batch_key(self, height: int, width: int) -> tuple[int, ...]:
        """Photos with equal keys share forward passes: the padded shape the network computes on (and,
        for photos the thumbnail weights read, a third element 1)."""
        return self._pass_key(padded_size(*self.network_size(height, width)), height, width)

    def _pass_key(self, padded: tuple[int, int], height: int, width: int) -> tuple[int, ...]:
        """:meth:`batch_key` from the padded shape and the photo's own size."""
        return (*padded, 1) if self.uses_thumbnail_weights(height, width) else padded

    def per_pass(self, key: tuple[int, ...]) -> int:
        """Photos of padded shape `key` per forward pass: the pixels of ``batch_size`` working-size photos."""
        budget = self.batch_size * self.working_long_side * self.working_long_side
        return max(self.batch_size, budget // max(1, key[0] * key[1]))

    def analyze_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [finish() for finish in self.analyze_split(images)]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The photo at the size the network sees (:func:`exposure_cli.imageops.analysis_size`)."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
        return to_working_size(image, self.working_long_side, self.native_min_long_side, self.thumbnail_long_side)

    def analyze_split(self, images: Sequence[np.ndarray], prepared: Sequence[Any] | None = None):
        """The network on every batch now; each photo's guided upsampling to its size when called
        (``image_grey``: the photo's grey image, the guide, if the caller has it)."""
        from functools import partial

        return [partial(map_to_image_size, low_map, small, np.asarray(image, np.float32))
                for image, (small, low_map) in zip(images, self.working_maps(images, prepared))]

    def working_maps(self, images: Sequence[np.ndarray], prepared: Sequence[Any] | None = None
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(working-size photo, its map)`` per photo: photos grouped by padded size, as many per forward
        pass as :meth:`per_pass` allows, each map cropped back to its photo and, for the main network,
        corrected by the card's residual calibration."""
        results: list[Any] = [None] * len(images)
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for index, image in enumerate(images):
            small = prepared[index] if prepared is not None else None
            if small is None:
                small = self.prepare(image)
            key = self._pass_key(padded_size(*small.shape[:2]), *np.shape(image)[:2])
            groups.setdefault(key, []).append((index, small))
        for key, group in groups.items():
            step = self.per_pass(key)
            calibration = self.residual_calibration if len(key) == 2 else None  # not the thumbnail network
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                maps = self._run([pad_to(img, *key[:2]) for _, img in chunk], thumbnail=len(key) > 2)
                for (index, small), low_map in zip(chunk, maps):
                    low_map = low_map[: small.shape[0], : small.shape[1]]
                    if calibration is not None:
                        low_map = calibration.apply(low_map, grey(small))
                    results[index] = (small, low_map)
        return results

    def _thumbnail_network(self):
        """The runner of the thumbnail weights, built on first use (same runtime and device)."""
        if self._thumbnail_runner is None:
            model, _ = load_model(self._thumbnail_weights.path, "cpu")
            self._thumbnail_runner = self._build_runner(model)
        return self._thumbnail_runner

    def _build_runner(self, model):
        """`model` on this analyzer's device, run by its runtime (the main and the thumbnail network alike)."""
        import torch

        from ..runtimes import build_runner

        return build_runner(model.to(self.device, memory_format=torch.channels_last), self.runtime, self.device)

    def _run(self, batch: list[np.ndarray], thumbnail: bool = False) -> list[np.ndarray]:
        """Network maps for same-size working images (by the thumbnail weights if `thumbnail`)."""
        import torch

        runner = self._thumbnail_network() if thumbnail else self._runner

        tensor = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
        if self._pin:
            tensor = tensor.pin_memory()
        tensor = tensor.to(self.device, non_blocking=self._pin).contiguous(memory_format=torch.channels_last)
        if self._autocast_dtype is not None:
            with torch.inference_mode(), torch.autocast("cuda", dtype=self._autocast_dtype):
                maps = runner(tensor)
        else:
            maps = runner(tensor)
        return list(maps)

    def close(self) -> None:
        for runner in (self._runner, self._thumbnail_runner):
            closer = getattr(runner, "close", None)
            if closer is not None:
                closer()
        self._thumbnail_runner = None
        self.model = None


__all__ = ["EATAnalyzer", "pick_device"]
