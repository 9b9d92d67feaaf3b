"""The IEA40K layout: a tiny generated dataset is read back exactly; the torch dataset crops it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from exposure_cli.data.dataset import ExposureDataset
from exposure_cli.data.iea40k import IEA40KWriter, find_csv, read_records

from conftest import photo_like, write_image


def _make_iea40k(root, n: int = 3, h: int = 40, w: int = 56):
    """Write the layout by hand, the way the dataset ships: PNGs, grey-level .npy maps, a CSV."""
    (root / "Input").mkdir(parents=True)
    (root / "pixel label").mkdir()
    rows = []
    labels = {}
    for i in range(n):
        ref = f"a{i:04d}-ref.png"
        write_image(root / "Input" / ref, photo_like(h, w, seed=i))
        for tag, level in (("N1", 51.0), ("P1", -25.5)):
            name = f"a{i:04d}-ref_{tag}.png"
            write_image(root / "Input" / name, photo_like(h, w, seed=10 + i))
            grey_levels = np.full((h, w), level, np.float32)
            grey_levels[: h // 2] = 0.0
            np.save(root / "pixel label" / name.replace(".png", ".npy"), grey_levels)
            labels[name] = grey_levels / 255.0
            rows.append((name, ref, 5.5))
    with open(root / "train_256_2ev.csv", "w", newline="") as fh:
        w_ = csv.writer(fh)
        w_.writerow(["img_id", "ref_id", "score"])
        w_.writerows(rows)
    return labels


def test_reader_divides_grey_levels_by_255(tmp_path) -> None:
    labels = _make_iea40k(tmp_path)
    recs = read_records(tmp_path, "train")
    assert len(recs) == 6
    for rec in recs:
        assert rec.score == 5.5 and rec.ref_id.endswith("-ref.png")
        assert np.allclose(rec.load_residual(), labels[rec.img_id])
        img = rec.load_image()
        assert img.shape == (40, 56, 3) and img.dtype == np.float32 and img.max() <= 1.0
    assert recs[0].load_residual().max() == pytest.approx(0.2)  # 51 grey levels = 0.2 under


def test_missing_label_is_named(tmp_path) -> None:
    _make_iea40k(tmp_path, n=1)
    (tmp_path / "pixel label" / "a0000-ref_P1.npy").unlink()
    with pytest.raises(FileNotFoundError, match="a0000-ref_P1"):
        read_records(tmp_path, "train")


def test_csv_lookup(tmp_path) -> None:
    _make_iea40k(tmp_path, n=1)
    assert find_csv(tmp_path, "train").name == "train_256_2ev.csv"
    with pytest.raises(FileNotFoundError, match="no CSV for split 'test'"):
        find_csv(tmp_path, "test")


def test_writer_round_trip(tmp_path) -> None:
    w = IEA40KWriter(tmp_path / "set", "val", ("kind", "ev"))
    img = photo_like(20, 30, seed=1).astype(np.float32) / 255
    res = np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30)
    w.add("x_ev+1", img, res, ref_id="x.png", score=7.0, kind="sweep", ev=1.0)
    w.close()
    (rec,) = read_records(tmp_path / "set", "val")
    assert rec.img_id == "x_ev+1.png" and rec.extra == {"kind": "sweep", "ev": "1.0"}
    assert np.allclose(rec.load_residual(), res, atol=1e-6)
    assert np.abs(rec.load_image() - img).max() <= 0.5 / 255 + 1e-6


def test_torch_dataset_from_iea40k_layout(tmp_path) -> None:
    _make_iea40k(tmp_path, h=40, w=56)
    ds = ExposureDataset.from_iea40k(tmp_path, split="train", crop=32, seed=0)
    assert len(ds) == 6
    item = ds[1]
    assert item["image"].shape == (3, 32, 32) and item["residual"].shape == (1, 32, 32)
    assert item["image"].dtype == torch.float32 and item["residual"].dtype == torch.float32
    # the label values survive cropping (0 in the top half, 0.2 under or 0.1 over in the bottom)
    values = np.unique(item["residual"].numpy())
    assert all(np.isclose(values[:, None], [0.0, 0.2, -0.1], atol=1e-6).any(axis=1))
    again = ExposureDataset.from_iea40k(tmp_path, split="train", crop=32, seed=0)[1]
    assert torch.equal(item["image"], again["image"]) and torch.equal(item["residual"], again["residual"])
    whole = ExposureDataset.from_iea40k(tmp_path, split="train", crop=None)[0]
    assert whole["image"].shape == (3, 40, 56)
