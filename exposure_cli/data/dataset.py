"""``ExposureDataset``: training pairs (image, residual map) as torch tensors.

Two sources behind one interface:

* :meth:`ExposureDataset.from_corpus` — simulated on the fly from the corpus's well-exposed photos and
  HDR crops (:mod:`.simulator`), random crops, scales and horizontal flips;
* :meth:`ExposureDataset.from_iea40k` — the real IEA40K layout (:mod:`.iea40k`), random crops.

Item ``i`` is a pure function of ``(seed, i)`` — a resumed training run sees the same stream, and
DataLoader workers need no shared random state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .simulator import Sample, SimulatorConfig, simulate_photo, simulate_radiance

#: Share of corpus samples drawn from HDR crops (when the corpus has any for the split).
HDR_FRACTION = 0.15
#: A training window whose ideal has more than this share of crushed pixels (grey < CRUSHED_GREY) is drawn
#: again (up to WINDOW_TRIES times). Why: a zoomed-in crop of a dark background (a jellyfish on black, a
#: night sky) shown as a well-exposed ideal teaches "black is fine" — and the same near-black input is
#: what a frame shot 6 stops too dark looks like. The whole photo still trains at wider windows.
MAX_CRUSHED_SHARE = 0.3
CRUSHED_GREY = 0.03
WINDOW_TRIES = 4


def crushed_share(rgb_u8: np.ndarray) -> float:
    """Share of pixels of an 8-bit RGB image darker than CRUSHED_GREY (on a ≤ 64-px subsample)."""
    step = max(1, max(rgb_u8.shape[:2]) // 64)
    small = rgb_u8[::step, ::step].astype(np.float32) / 255.0
    g = small[..., 0] * 0.299 + small[..., 1] * 0.587 + small[..., 2] * 0.114
    return float((g < CRUSHED_GREY).mean())


def window_not_crushed(rgb_u8: np.ndarray, crop: int, rng: np.random.Generator,
                       max_share: float = MAX_CRUSHED_SHARE) -> tuple[int, int, int]:
    """:func:`random_window`, drawn again while the window is mostly crushed black (see MAX_CRUSHED_SHARE)."""
    h, w = rgb_u8.shape[:2]
    for _ in range(WINDOW_TRIES):
        y, x, s = random_window(h, w, crop, rng)
        if max_share >= 1.0 or crushed_share(rgb_u8[y : y + s, x : x + s]) <= max_share:
            break
    return y, x, s


def item_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of item ``index`` under ``seed`` (independent streams per item)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])


def _to_item(image: np.ndarray, residual: np.ndarray) -> dict[str, torch.Tensor]:
    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    res = torch.from_numpy(np.ascontiguousarray(residual[None], dtype=np.float32))
    return {"image": img, "residual": res}


def random_window(h: int, w: int, crop: int, rng: np.random.Generator,
                  max_zoom_out: float = 3.0) -> tuple[int, int, int]:
    """A square window (y, x, size) to be resized to ``crop``: scale log-uniform between "native
    pixels" (size = crop) and "most of the frame" (size = short side, at most ``max_zoom_out``·crop)."""
    short = min(h, w)
    lo = min(crop, short)
    hi = max(lo, min(short, int(crop * max_zoom_out)))
    size = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi))))) if hi > lo else lo
    size = max(1, min(size, short))
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return y, x, size


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if arr.shape[0] == size and arr.shape[1] == size:
        return arr
    interp = cv2.INTER_AREA if arr.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(arr, (size, size), interpolation=interp)


@dataclass
class _Photo:
    id: str
    rgb: np.ndarray  # uint8 H×W×3


@dataclass
class _HDRCrop:
    id: str
    radiance: np.ndarray  # float16 H×W×3, metered
    ideal: np.ndarray  # uint8 H×W×3


class ExposureDataset(Dataset):
    """A map-style dataset of ``{"image": 3×H×W float32 [0, 1], "residual": 1×H×W float32 [-1, 1]}``.

    Build it with :meth:`from_corpus` or :meth:`from_iea40k`.
    """

    def __init__(self, length: int, make: Callable[[int], Sample], describe: str) -> None:
        self._length = int(length)
        self._make = make
        self.describe = describe

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.sample(index)
        return _to_item(sample.observed, sample.residual)

    def sample(self, index: int) -> Sample:
        """Item ``index`` as numpy arrays with its ideal and simulation parameters (for sheets, debugging)."""
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        return self._make(index)

    def __repr__(self) -> str:
        return f"ExposureDataset({self.describe}, len={self._length})"

    # ------------------------------------------------------------------------------- corpus

    @classmethod
    def from_corpus(
        cls,
        corpus_dir: str | Path,
        split: str = "train",
        crop: int = 256,
        seed: int = 0,
        samples_per_epoch: int = 10_000,
        config: SimulatorConfig | None = None,
        hdr_fraction: float = HDR_FRACTION,
        flip: bool = True,
        max_crushed_share: float = MAX_CRUSHED_SHARE,
        brackets: str | Path | None = None,
        bracket_fraction: float = 0.0,
        whole_view_share: float = 0.0,
        bracket_ideal_share: float = 0.0,
    ) -> "ExposureDataset":
        """Simulated exposure errors on the corpus's photos of ``split`` (``train`` or ``val``).

        Args:
            corpus_dir: Folder written by ``exposure data build``.
            split: ``train`` or ``val`` (fixed per source photo in the manifest).
            crop: Output size (square).
            seed: Stream seed; item ``i`` depends only on (seed, i).
            samples_per_epoch: Dataset length.
            config: Simulator settings (default: :class:`SimulatorConfig`).
            hdr_fraction: Share of items made from HDR crops (if the split has any).
            flip: Random horizontal flips (never vertical: skies stay on top).
            max_crushed_share: Windows whose ideal is crushed black beyond this share are drawn again
                (1.0 turns it off); see MAX_CRUSHED_SHARE.
            brackets: Folder of real exposure brackets (:mod:`.brackets`, ``corpus/brackets``); items of
                its stacks of the same ``split`` are mixed in with ``bracket_fraction``.
            bracket_fraction: Share of items that are real bracket frames with their stack labels.
            whole_view_share: Share of bracket items cut as the frame's widest square view
                (:func:`~exposure_cli.data.brackets.sample_training_item`).
            bracket_ideal_share: Share of the simulator's *photo* items whose ideal is the ideal of one of
                `brackets`' stacks of the same ``split`` (their re-levelled fusion, ``ideal.png``) instead of
                a corpus photo: real scenes — night ones among them — rendered at every simulated exposure,
                camera style and noise, each scene's own ideal level kept as "well exposed". 0 draws
                nothing, so earlier streams are unchanged.
        """
        import cv2

        from .corpus import load_index

        corpus_dir = Path(corpus_dir)
        index = load_index(corpus_dir)
        photos = []
        for p in index["photos"]:
            if p["split"] != split:
                continue
            bgr = cv2.imread(str(corpus_dir / p["path"]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"corpus photo missing: {corpus_dir / p['path']} (rebuild the corpus)")
            photos.append(_Photo(p["id"], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        hdrs = []
        for c in index.get("hdr", []):
            if c["split"] != split:
                continue
            rad = np.load(corpus_dir / c["radiance"], allow_pickle=False)
            ideal = cv2.cvtColor(cv2.imread(str(corpus_dir / c["ideal"]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            hdrs.append(_HDRCrop(c["id"], rad, ideal))
        if not photos and not hdrs:
            raise ValueError(f"{corpus_dir}: no photos in split {split!r}")
        cfg = config or SimulatorConfig()
        p_hdr = hdr_fraction if hdrs and photos else (1.0 if hdrs else 0.0)
        ideals = []
        if brackets is not None and bracket_ideal_share > 0:
            from .brackets import load_stacks

            ideals = [_Photo(f"bracket-ideal:{st.id}", st.ideal_rgb()) for st in load_stacks(Path(brackets), split)]
            if not ideals:
                raise ValueError(f"{brackets}: no bracket stacks in split {split!r} to take ideals from")
        stacks: list[Any] = []
        if brackets is not None and bracket_fraction > 0:
            from .brackets import load_stacks

            stacks = load_stacks(Path(brackets), split)
            if not stacks:
                raise ValueError(f"{brackets}: no bracket stacks in split {split!r}")
        p_bracket = bracket_fraction if stacks else 0.0

        def make(i: int) -> Sample:
            rng = item_rng(seed, i)
            if p_bracket > 0 and rng.random() < p_bracket:
                from .brackets import sample_training_item

                image, res = sample_training_item(stacks, rng, crop, whole_view_share)
                observed = np.ascontiguousarray(np.asarray(image, np.float32).transpose(1, 2, 0))
                residual = np.asarray(res, np.float32).reshape(observed.shape[:2])
                ideal_grey_proxy = np.zeros(observed.shape[:2], np.float32)
                return Sample(observed, residual, observed, ideal_grey_proxy, {"kind": "bracket"})
            if rng.random() < p_hdr:
                src = hdrs[int(rng.integers(len(hdrs)))]
                y, x, s = window_not_crushed(src.ideal, crop, rng, max_crushed_share)
                rad = _resize(src.radiance[y : y + s, x : x + s].astype(np.float32), crop)
                ideal = _resize(src.ideal[y : y + s, x : x + s], crop).astype(np.float32) / 255.0
                if flip and rng.random() < 0.5:
                    rad, ideal = rad[:, ::-1], ideal[:, ::-1]
                sample = simulate_radiance(np.ascontiguousarray(rad), np.ascontiguousarray(ideal), rng, cfg)
                sample.params["source_id"] = src.id
                return sample
            if ideals and rng.random() < bracket_ideal_share:
                photo = ideals[int(rng.integers(len(ideals)))]
            else:
                photo = photos[int(rng.integers(len(photos)))]
            y, x, s = window_not_crushed(photo.rgb, crop, rng, max_crushed_share)
            ideal = _resize(photo.rgb[y : y + s, x : x + s], crop).astype(np.float32) / 255.0
            if flip and rng.random() < 0.5:
                ideal = ideal[:, ::-1]
            sample = simulate_photo(np.ascontiguousarray(ideal), rng, cfg)
            sample.params["source_id"] = photo.id
            return sample

        ds = cls(samples_per_epoch, make, f"corpus={corpus_dir}, split={split}, crop={crop}, seed={seed}, "
                                           f"photos={len(photos)}, hdr_crops={len(hdrs)}, bracket_stacks={len(stacks)}"
                                           + (f", bracket_ideals={len(ideals)} at {bracket_ideal_share:g}" if ideals else ""))
        ds.photo_ids = [p.id for p in photos]  # type: ignore[attr-defined]
        ds.hdr_ids = [h.id for h in hdrs]  # type: ignore[attr-defined]
        ds.bracket_ideal_ids = [p.id for p in ideals]  # type: ignore[attr-defined]
        return ds

    # ------------------------------------------------------------------------------- IEA40K

    @classmethod
    def from_iea40k(
        cls,
        root: str | Path,
        split: str = "train",
        crop: int | None = 256,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        csv_path: str | Path | None = None,
        flip: bool = True,
    ) -> "ExposureDataset":
        """Real labelled images in the IEA40K layout (:mod:`.iea40k`).

        Args:
            root: Dataset folder (``Input/``, ``pixel label/``, ``<split>*.csv``).
            split: Which CSV to read.
            crop: Random square crop size (images smaller than it are scaled up); ``None`` = whole images
                (batch size 1 unless all images share a size).
            seed: Crop/flip seed; item ``i`` depends only on (seed, i).
            samples_per_epoch: Dataset length (default: number of records; items cycle over records).
            csv_path: Explicit CSV instead of looking one up by ``split``.
            flip: Random horizontal flips.
        """
        from .iea40k import read_records

        records = read_records(Path(root), split, Path(csv_path) if csv_path else None)
        if not records:
            raise ValueError(f"{root}: split {split!r} has no records")

        def make(i: int) -> Sample:
            rec = records[i % len(records)]
            img, res = rec.load_image(), rec.load_residual()
            if res.shape != img.shape[:2]:
                import cv2

                res = cv2.resize(res, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
            if crop is not None:
                rng = item_rng(seed, i)
                y, x, s = random_window(*img.shape[:2], crop, rng, max_zoom_out=1.0)
                img, res = _resize(img[y : y + s, x : x + s], crop), _resize(res[y : y + s, x : x + s], crop)
                if flip and rng.random() < 0.5:
                    img, res = img[:, ::-1], res[:, ::-1]
            img, res = np.ascontiguousarray(img), np.ascontiguousarray(res)
            return Sample(img, res, img, np.zeros(res.shape, np.float32),
                          {"kind": "iea40k", "img_id": rec.img_id, "score": rec.score})

        ds = cls(samples_per_epoch or len(records), make, f"iea40k={root}, split={split}, crop={crop}")
        ds.records = records  # type: ignore[attr-defined]
        return ds


def describe_item(item: dict[str, Any]) -> str:
    """One-line summary of an item (shapes and residual range), for logs."""
    r = item["residual"]
    return f"image {tuple(item['image'].shape)} residual {tuple(r.shape)} [{float(r.min()):.2f}, {float(r.max()):.2f}]"


__all__ = ["ExposureDataset", "HDR_FRACTION", "describe_item", "item_rng", "random_window"]
