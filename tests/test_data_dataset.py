"""ExposureDataset over a generated corpus: contract, determinism, splits, contact sheet command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from exposure_cli.cli import app
from exposure_cli.data.dataset import ExposureDataset

from test_data_brackets import stacks_repo  # noqa: F401  (the bracket folder fixture)
from test_data_corpus import make_corpus


@pytest.fixture()
def corpus(tmp_path, monkeypatch):
    return make_corpus(tmp_path, monkeypatch)


def test_items_follow_the_contract(corpus) -> None:
    ds = ExposureDataset.from_corpus(corpus, split="train", crop=64, seed=0, samples_per_epoch=40)
    assert len(ds) == 40
    for i in range(12):
        item = ds[i]
        assert set(item) == {"image", "residual"}
        assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
        assert item["residual"].shape == (1, 64, 64) and item["residual"].dtype == torch.float32
        assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
        assert -1 <= float(item["residual"].min()) and float(item["residual"].max()) <= 1
    with pytest.raises(IndexError):
        ds[40]


def test_stream_is_a_function_of_seed_and_index(corpus) -> None:
    a = ExposureDataset.from_corpus(corpus, split="train", crop=48, seed=5, samples_per_epoch=100)
    b = ExposureDataset.from_corpus(corpus, split="train", crop=48, seed=5, samples_per_epoch=100)
    c = ExposureDataset.from_corpus(corpus, split="train", crop=48, seed=6, samples_per_epoch=100)
    for i in (0, 17, 99):  # order of access does not matter
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["residual"], b[i]["residual"])
    assert not torch.equal(a[3]["image"], c[3]["image"])


def test_mix_has_originals_and_both_directions(corpus) -> None:
    ds = ExposureDataset.from_corpus(corpus, split="train", crop=48, seed=0, samples_per_epoch=200)
    means = []
    originals = 0
    for i in range(200):
        s = ds.sample(i)
        originals += bool(s.params.get("original"))
        means.append(float(s.residual.mean()))
    assert 0.05 < originals / 200 < 0.25
    assert min(means) < -0.1 and max(means) > 0.1


def test_splits_use_different_photos(corpus) -> None:
    tr = ExposureDataset.from_corpus(corpus, split="train", crop=48, samples_per_epoch=4)
    va = ExposureDataset.from_corpus(corpus, split="val", crop=48, samples_per_epoch=4)
    assert tr.photo_ids and va.photo_ids and not set(tr.photo_ids) & set(va.photo_ids)


def test_contact_sheet_command_writes_a_png(corpus, tmp_path) -> None:
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(app, ["data", "contact-sheet", str(corpus), "--out", str(out), "--count", "4",
                                      "--columns", "4", "--size", "96"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    import cv2

    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[1] == 4 * 96
    # the label tiles are coloured: some clearly red or blue pixels exist
    b, g, r = [sheet[..., k].astype(int) for k in range(3)]
    assert ((r - b > 60) | (b - r > 60)).any()


def test_summary_command_prints_markdown() -> None:
    result = CliRunner().invoke(app, ["data", "summary", "--markdown"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "| gcompris | gcompris-qt-data |" in result.output and "**total**" in result.output


def test_unknown_source_is_a_usage_error(tmp_path) -> None:
    result = CliRunner().invoke(app, ["data", "build", str(tmp_path / "c"), "--source", "opencv-dok"])
    assert result.exit_code == 2
    assert "opencv-doc" in result.output


def _add_hdr_crop(corpus, split: str = "train") -> str:
    """One HDR crop (metered radiance + fused ideal) written into a built corpus and its index."""
    import json

    import cv2

    from exposure_cli.data.hdr import meter, mertens_ideal

    rng = np.random.default_rng(3)
    rad = meter(np.exp(rng.normal(0, 1.5, (1, 1, 3))) * cv2.resize(
        rng.uniform(0.01, 8.0, (6, 9, 3)).astype(np.float32), (144, 96), interpolation=cv2.INTER_CUBIC).clip(1e-3))
    (corpus / "hdr").mkdir(exist_ok=True)
    np.save(corpus / "hdr" / "pano.radiance.npy", rad.astype(np.float16))
    ideal = np.round(mertens_ideal(rad) * 255).astype(np.uint8)
    cv2.imwrite(str(corpus / "hdr" / "pano.ideal.png"), cv2.cvtColor(ideal, cv2.COLOR_RGB2BGR))
    index = json.loads((corpus / "index.json").read_text())
    index["hdr"].append({"id": "test-hdr__pano", "radiance": "hdr/pano.radiance.npy", "ideal": "hdr/pano.ideal.png",
                         "width": 144, "height": 96, "source": "test-hdr", "split": split})
    (corpus / "index.json").write_text(json.dumps(index))
    return "test-hdr__pano"


def test_hdr_share_sets_how_many_training_crops_come_from_panoramas(corpus) -> None:
    from exposure_cli.training.sources import open_datasets

    hdr_id = _add_hdr_crop(corpus)

    def hdr_count(share):
        train, _, _ = open_datasets(corpus, crop=48, samples_per_epoch=60, hdr_share=share)
        return sum(train.sample(i).params["source_id"] == hdr_id for i in range(60))

    assert hdr_count(0.0) == 0
    assert hdr_count(1.0) == 60
    assert 0 < hdr_count(None) < hdr_count(0.6) < 60  # the default (15 %) is below 60 %


def test_bracket_ideal_share_renders_train_stack_ideals_as_simulator_photos(corpus, stacks_repo) -> None:
    """`bracket_ideal_share` of the simulator's photo items come from the split's stack ideals (the rest from
    the corpus photos), rendered like a photo: their originals have label 0, their shifts both signs. Val
    never sees a train ideal; 0 leaves the stream exactly as it was."""
    from exposure_cli.data.brackets import load_stacks

    brackets = stacks_repo["out"]
    train_ids = {f"bracket-ideal:{s.id}" for s in load_stacks(brackets, "train")}
    plain = ExposureDataset.from_corpus(corpus, split="train", crop=48, seed=3, samples_per_epoch=200)
    off = ExposureDataset.from_corpus(corpus, split="train", crop=48, seed=3, samples_per_epoch=200,
                                      brackets=brackets, bracket_ideal_share=0.0)
    for i in (0, 5, 77):
        assert torch.equal(plain[i]["image"], off[i]["image"])
    ds = ExposureDataset.from_corpus(corpus, split="train", crop=48, seed=3, samples_per_epoch=300,
                                     brackets=brackets, bracket_ideal_share=0.5, hdr_fraction=0.0)
    assert set(ds.bracket_ideal_ids) == train_ids
    sources = [ds.sample(i) for i in range(300)]
    from_ideals = [s for s in sources if s.params["source_id"] in train_ids]
    assert 0.35 < len(from_ideals) / len(sources) < 0.65
    assert {s.params["source_id"] for s in sources} - train_ids  # corpus photos too
    means = [float(s.residual.mean()) for s in from_ideals]
    assert min(means) < -0.05 and max(means) > 0.05
    assert any(s.params.get("original") and float(abs(s.residual).max()) == 0.0 for s in from_ideals)
    val = ExposureDataset.from_corpus(corpus, split="val", crop=48, seed=3, samples_per_epoch=50,
                                      brackets=brackets, bracket_ideal_share=1.0, hdr_fraction=0.0)
    assert set(val.bracket_ideal_ids) == {f"bracket-ideal:{s.id}" for s in load_stacks(brackets, "val")}
    assert not set(val.bracket_ideal_ids) & train_ids
