"""Where training data comes from: our simulated corpus or a folder in the IEA40K layout.

Both go through :class:`exposure_cli.data.dataset.ExposureDataset`; this module only picks the
constructor, detects the layout of a ``--data`` folder and records what the data was (for the weights
card), so the trainer never needs to know which kind it got.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from ..weights import sha256_file

#: Seed of the validation stream, fixed so runs with different training seeds are compared on the same crops.
VAL_SEED = 10_001


class DataFormat(str, enum.Enum):
    """Layout of a ``--data`` folder."""

    auto = "auto"
    corpus = "corpus"
    iea40k = "iea40k"


def detect_format(root: Path) -> DataFormat:
    """A corpus has ``index.json`` (written by ``exposure data build``); anything else is read as IEA40K."""
    if (root / "index.json").is_file():
        return DataFormat.corpus
    if any(root.rglob("*.npy")) or any(root.rglob("*.csv")):
        return DataFormat.iea40k
    raise ValueError(
        f"{root} is neither a corpus (no index.json; build one with `exposure data build`) nor an IEA40K-layout "
        "folder (no .npy residual maps or CSV files)"
    )


def describe_data(root: Path, fmt: DataFormat) -> dict[str, Any]:
    """What the weights card records about the training data (source, layout, manifest hashes)."""
    info: dict[str, Any] = {"data_format": fmt.value, "data_path": str(root)}
    if fmt is DataFormat.corpus:
        info["corpus_index_sha256"] = sha256_file(root / "index.json")
        try:
            from ..data.corpus import DEFAULT_MANIFEST

            if Path(DEFAULT_MANIFEST).is_file():
                info["corpus_manifest_sha256"] = sha256_file(Path(DEFAULT_MANIFEST))
        except ImportError:  # pragma: no cover - data package without a manifest
            pass
    return info


def open_datasets(
    root: str | Path,
    fmt: DataFormat = DataFormat.auto,
    crop: int = 256,
    seed: int = 0,
    samples_per_epoch: int = 2048,
    val_samples: int = 256,
    simulator: dict[str, Any] | None = None,
    hdr_share: float | None = None,
    brackets: str | Path | None = None,
    bracket_share: float = 0.0,
    whole_view_share: float = 0.0,
    bracket_ideal_share: float = 0.0,
    with_val: bool = True,
) -> tuple[Any, Any | None, dict[str, Any]]:
    """Training dataset, validation dataset (None if the data has no validation split), data description.

    `simulator` overrides fields of the corpus simulator's config for the *training* stream only; the
    validation stream always uses the simulator's defaults, so runs stay comparable. `hdr_share` (corpus
    only) is the share of training crops cut from HDR panoramas [default: ``HDR_FRACTION``]. With
    `brackets`, real bracket frames of the train stacks make `bracket_share` of the training stream and
    frames of the val stacks the same share of the validation stream (the lockbox is never read).
    `whole_view_share` of the training stream's bracket frames are cut as their widest square view
    (validation keeps the default windows, so runs stay comparable); `bracket_ideal_share` of the training
    stream's simulated photo items render a train stack's ideal instead of a corpus photo (validation: none).
    ``with_val=False`` opens no validation
    stream (None): nothing of the val split is read.
    """
    from ..data.dataset import HDR_FRACTION, ExposureDataset
    from ..data.simulator import SimulatorConfig

    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"training data folder {root} does not exist")
    if fmt is DataFormat.auto:
        fmt = detect_format(root)
    if fmt is DataFormat.corpus:
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (simulator or {}).items()}
        train = ExposureDataset.from_corpus(root, split="train", crop=crop, seed=seed, samples_per_epoch=samples_per_epoch,
                                            config=SimulatorConfig(**overrides),
                                            hdr_fraction=HDR_FRACTION if hdr_share is None else hdr_share,
                                            brackets=brackets, bracket_fraction=bracket_share,
                                            whole_view_share=whole_view_share,
                                            bracket_ideal_share=bracket_ideal_share)
        val = None
        if with_val:
            try:
                val = ExposureDataset.from_corpus(root, split="val", crop=crop, seed=VAL_SEED,
                                                  samples_per_epoch=val_samples, brackets=brackets,
                                                  bracket_fraction=bracket_share)
            except (ValueError, FileNotFoundError, KeyError):
                val = None
    else:
        train = ExposureDataset.from_iea40k(root, split="train", crop=crop)
        try:
            val = ExposureDataset.from_iea40k(root, split="val", crop=crop)
            if len(val) == 0:
                val = None
        except (ValueError, FileNotFoundError, KeyError):
            val = None
    return train, val, describe_data(root, fmt)


__all__ = ["DataFormat", "describe_data", "detect_format", "open_datasets"]
