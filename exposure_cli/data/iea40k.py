"""The IEA40K layout: read it (users who have the dataset) and write it (our fixed validation set).

The layout, as in the P-IEANet authors' dataset example::

    ROOT/Input/<img_id>               images (PNG/JPEG); ``img_id`` in the CSV includes the extension
    ROOT/pixel label/<stem>.npy       one residual map per image: grey(ideal) − grey(observed) in grey
                                      levels (−255…255), H×W; the loader divides by 255
    ROOT/<split>*.csv                 ``img_id,ref_id,score`` (score: holistic 0–10; ref_id: the ideal)

Folder names are matched loosely (``Input``/``images``, ``pixel label``/``pixel_label``/``labels``) and
extra CSV columns are kept (our validation set adds ``ev``, ``kind`` and ``photo``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

IMAGE_DIRS = ("Input", "input", "images", "Images", "imgs")
LABEL_DIRS = ("pixel label", "pixel_label", "pixel labels", "labels", "residuals", "npy")
#: Scale between stored maps (grey levels) and residuals in [-1, 1].
GREY_LEVELS = 255.0


@dataclass
class IEA40KRecord:
    """One labelled image of an IEA40K-layout set."""

    img_id: str
    ref_id: str
    score: float
    image_path: Path
    label_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def load_image(self) -> np.ndarray:
        """RGB float32 H×W×3 in [0, 1]."""
        import cv2

        bgr = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {self.image_path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0

    def load_residual(self) -> np.ndarray:
        """Residual map H×W float32 in [-1, 1] (stored grey-level difference ÷ 255)."""
        arr = np.load(self.label_path, allow_pickle=False).astype(np.float32)
        if arr.ndim == 3:
            arr = arr[..., 0] if arr.shape[-1] in (1, 3) else arr[0]
        return np.clip(arr / GREY_LEVELS, -1.0, 1.0)


def _find_dir(root: Path, names: tuple[str, ...], what: str) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise FileNotFoundError(f"{root}: no {what} folder (looked for {', '.join(repr(n) for n in names)})")


def find_csv(root: Path, split: str) -> Path:
    """The CSV of ``split``: ``<split>.csv``, else the one file whose name starts with or contains it."""
    root = Path(root)
    exact = root / f"{split}.csv"
    if exact.exists():
        return exact
    cands = sorted(root.glob(f"{split}*.csv")) or sorted(root.glob(f"*{split}*.csv"))
    if len(cands) == 1:
        return cands[0]
    all_csv = sorted(p.name for p in root.glob("*.csv"))
    if not cands:
        raise FileNotFoundError(f"{root}: no CSV for split {split!r} (found: {', '.join(all_csv) or 'none'})")
    raise FileNotFoundError(f"{root}: several CSVs match split {split!r}: {', '.join(p.name for p in cands)}")


def read_records(root: Path, split: str = "train", csv_path: Path | None = None) -> list[IEA40KRecord]:
    """All records of one split of an IEA40K-layout folder (missing files raise, naming the first one)."""
    root = Path(root)
    images = _find_dir(root, IMAGE_DIRS, "image")
    labels = _find_dir(root, LABEL_DIRS, "pixel label")
    path = Path(csv_path) if csv_path else find_csv(root, split)
    out = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"img_id", "ref_id", "score"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for row in reader:
            img_id = row["img_id"].strip()
            rec = IEA40KRecord(
                img_id=img_id,
                ref_id=row["ref_id"].strip(),
                score=float(row["score"]) if row["score"] not in ("", None) else float("nan"),
                image_path=images / img_id,
                label_path=labels / (Path(img_id).stem + ".npy"),
                extra={k: v for k, v in row.items() if k not in ("img_id", "ref_id", "score")},
            )
            for p in (rec.image_path, rec.label_path):
                if not p.exists():
                    raise FileNotFoundError(f"{path}: {img_id}: {p} does not exist")
            out.append(rec)
    return out


class IEA40KWriter:
    """Writes images, residual maps and the CSV of one split in the IEA40K layout."""

    def __init__(self, root: Path, split: str, extra_columns: tuple[str, ...] = ()) -> None:
        self.root = Path(root)
        self.images = self.root / "Input"
        self.labels = self.root / "pixel label"
        self.images.mkdir(parents=True, exist_ok=True)
        self.labels.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.root / f"{split}.csv"
        self.columns = ("img_id", "ref_id", "score", *extra_columns)
        self._rows: list[dict[str, object]] = []

    def add(self, img_id: str, image: np.ndarray, residual: np.ndarray | None, ref_id: str = "",
            score: float | str = "", **extra: object) -> None:
        """Add one image (RGB float [0, 1], written as PNG) and its residual (``None`` for a reference)."""
        import cv2

        name = img_id if img_id.endswith(".png") else img_id + ".png"
        u8 = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        cv2.imwrite(str(self.images / name), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))
        if residual is not None:
            np.save(self.labels / (Path(name).stem + ".npy"), (residual * GREY_LEVELS).astype(np.float32))
            self._rows.append({"img_id": name, "ref_id": ref_id, "score": score, **extra})

    def close(self) -> Path:
        with open(self.csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(self.columns))
            w.writeheader()
            for row in self._rows:
                w.writerow({k: row.get(k, "") for k in self.columns})
        return self.csv_path


def iter_pairs(records: list[IEA40KRecord]) -> Iterator[tuple[IEA40KRecord, np.ndarray, np.ndarray]]:
    for rec in records:
        yield rec, rec.load_image(), rec.load_residual()


__all__ = ["GREY_LEVELS", "IEA40KRecord", "IEA40KWriter", "find_csv", "iter_pairs", "read_records"]
