"""The ``eat`` analyzer: weights lookup and checksum, maps at input size, guided upsampling."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from exposure_cli.analyzers import create_analyzer  # noqa: E402
from exposure_cli import weights as weights_module  # noqa: E402
from exposure_cli.imageops import guided_upsample  # noqa: E402
from exposure_cli.weights import (  # noqa: E402
    CARD_FILE,
    WEIGHTS_ENV,
    WEIGHTS_FILE,
    WeightsError,
    load_model,
    resolve_weights,
    save_weights,
)
from exposure_cli.models import create_model, model_config  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture()
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    model = create_model("eat_iea_test")
    folder = tmp_path / "w"
    save_weights(model, folder, {"architecture": "eat_iea_test", "config": model_config("eat_iea_test")})
    return folder


def test_save_and_load_round_trip(tiny_weights):
    card = json.loads((tiny_weights / CARD_FILE).read_text())
    assert card["architecture"] == "eat_iea_test" and len(card["sha256"]) == 64
    model, loaded = load_model(tiny_weights / WEIGHTS_FILE)
    assert loaded.sha256 == card["sha256"]
    torch.manual_seed(0)
    reference = create_model("eat_iea_test").eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model(x), reference(x))


def test_checksum_mismatch_raises(tiny_weights):
    path = tiny_weights / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last tensor byte
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_model(path)


def test_missing_card_raises(tiny_weights):
    (tiny_weights / CARD_FILE).unlink()
    with pytest.raises(WeightsError, match="no card"):
        load_model(tiny_weights / WEIGHTS_FILE)


def test_lookup_order_and_one_error_naming_all_three(tmp_path, tiny_weights, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(weights_module, "shipped_weights_dir", lambda: None)
    with pytest.raises(WeightsError) as info:
        resolve_weights(None)
    message = str(info.value)
    assert "--weights" in message and WEIGHTS_ENV in message and "shipped" in message
    monkeypatch.setenv(WEIGHTS_ENV, str(tiny_weights))
    assert resolve_weights(None) == tiny_weights / WEIGHTS_FILE  # env var when no explicit weights
    # an explicit path that holds nothing is an error, never a silent fallback to the env var or shipped weights
    monkeypatch.setattr(weights_module, "shipped_weights_dir", lambda: tiny_weights)
    with pytest.raises(WeightsError, match="nowhere"):
        resolve_weights(tmp_path / "nowhere")
    other = tmp_path / "other"
    other.mkdir()
    (other / WEIGHTS_FILE).write_bytes(b"x")
    assert resolve_weights(other) == other / WEIGHTS_FILE  # explicit beats the env var


@pytest.mark.parametrize("size", [(37, 53), (600, 401), (20, 900), (512, 512)])
def test_analyzer_maps_at_input_size(tiny_weights, size):
    analyzer = create_analyzer("eat", weights=tiny_weights, device="cpu", working_long_side=128, batch_size=2)
    rng = np.random.default_rng(0)
    images = [rng.random((*size, 3), dtype=np.float32), rng.random((size[1], size[0], 3), dtype=np.float32)]
    maps = analyzer.analyze_batch(images)
    assert [m.shape for m in maps] == [size, (size[1], size[0])]
    for m in maps:
        assert m.dtype == np.float32 and np.isfinite(m).all() and np.abs(m).max() <= 1.0
    info = analyzer.info
    assert info.name == "eat" and len(info.weights_sha256) == 64 and info.working_long_side == 128


def test_batched_equals_one_by_one(tiny_weights):
    analyzer = create_analyzer("eat", weights=tiny_weights, device="cpu", working_long_side=96, batch_size=3)
    rng = np.random.default_rng(1)
    images = [rng.random((90, 60, 3), dtype=np.float32) for _ in range(3)] + [rng.random((50, 70, 3), dtype=np.float32)]
    together = analyzer.analyze_batch(images)
    alone = [analyzer.analyze(img) for img in images]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("model", ["eat", "baseline"])
def test_split_analysis_with_prepared_inputs_equals_analyze_batch(tiny_weights, model):
    """What a scan runs (prepare on a decode thread, the batched part, each map finished later) gives
    analyze_batch's maps exactly, prepared or not."""
    kw = {"weights": tiny_weights, "device": "cpu"} if model == "eat" else {}
    analyzer = create_analyzer(model, working_long_side=96, batch_size=2, **kw)
    rng = np.random.default_rng(2)
    images = [rng.random((90, 60, 3), dtype=np.float32) for _ in range(3)] + [rng.random((150, 210, 3), dtype=np.float32)]
    expected = analyzer.analyze_batch(images)
    prepared = [analyzer.prepare(img) for img in images]
    prepared[1] = None  # one photo not prepared (its preparation failed): prepared again, same map
    from exposure_cli.color import grey

    split = analyzer.analyze_split(images, prepared)
    given_grey = [f(image_grey=grey(img)) for f, img in zip(split, images)]  # the scan hands the grey image over
    for got in ([f() for f in analyzer.analyze_split(images, prepared)], [f() for f in analyzer.analyze_split(images)],
                given_grey):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_guided_upsampling_follows_guide_edges():
    import cv2

    # Guide: a sharp vertical edge between columns 100 and 101; the low-res map knows it only blurred.
    full = np.zeros((64, 200), np.float32)
    full[:, 101:] = 1.0
    low_guide = cv2.resize(full, (50, 16), interpolation=cv2.INTER_AREA)
    low_map = cv2.GaussianBlur(np.where(low_guide > 0.5, -0.8, 0.4).astype(np.float32), (5, 5), 1.0)
    naive = cv2.resize(low_map, (200, 64), interpolation=cv2.INTER_LINEAR)
    guided = guided_upsample(low_map, low_guide, full)
    row = guided[32]
    # The guided map jumps exactly at the guide's edge; bilinear upsampling smears the jump over many pixels.
    assert row[100] - row[101] > 0.8
    assert naive[32, 100] - naive[32, 101] < 0.2
    assert np.abs(np.diff(row[:100])).max() < 0.05 and np.abs(np.diff(row[101:])).max() < 0.05


def test_unknown_device_is_rejected(tiny_weights):
    with pytest.raises(ValueError, match="device"):
        create_analyzer("eat", weights=tiny_weights, device="tpu")


def test_default_analyzer_is_eat_with_the_shipped_weights(monkeypatch):
    from exposure_cli.analyzers import DEFAULT_ANALYZER
    from exposure_cli.weights import shipped_weights_dir, verify_weights

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    shipped = shipped_weights_dir()
    assert DEFAULT_ANALYZER == "eat"
    assert shipped is not None, "no weights shipped: weights/model.safetensors + card.json are missing"
    loaded = verify_weights(shipped / WEIGHTS_FILE)
    assert loaded.card["architecture"] == "eat_iea"
    # The working size is the card's, chosen by measurement for these weights (docs/MODEL.md, stage 10).
    assert loaded.card["working_long_side"] == 320
    analyzer = create_analyzer()  # the default, with the shipped weights
    assert analyzer.info.name == "eat" and analyzer.info.weights_sha256 == loaded.sha256
    assert analyzer.working_long_side == 320
    assert analyzer.network_size(3000, 4000) == (240, 320)  # a large photo: shrunk to the card's size
    assert analyzer.network_size(192, 256) == (192, 256)  # from 256 px up to it: its own size
    from exposure_cli.imageops import THUMBNAIL_LONG_SIDE, thumbnail_copy, thumbnail_long_side_for, working_size

    # a thumbnail: the small-images rule's copy for its size (the card's bands, else its one copy, else the
    # module default), whatever the working size
    chosen = thumbnail_copy(loaded.card.get("thumbnail_bands") or loaded.card.get("thumbnail_long_side")
                            or THUMBNAIL_LONG_SIDE)
    copy = thumbnail_long_side_for(64, chosen)
    assert analyzer.network_size(48, 64) == working_size(48, 64, copy) != (48, 64)
    assert create_analyzer(working_long_side=448).working_long_side == 448  # an explicit size wins
    rng = np.random.default_rng(0)
    dark = (rng.random((90, 120, 3)) * 0.08).astype(np.float32)
    bright = np.clip(0.9 + rng.random((90, 120, 3)) * 0.1, 0, 1).astype(np.float32)
    dark_map, bright_map = analyzer.analyze_batch([dark, bright])
    assert dark_map.shape == (90, 120) and dark_map.mean() > bright_map.mean()
