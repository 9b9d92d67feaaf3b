"""Small images (issue 18): analysed at their own size (not upscaled to the working resolution), maps
at the photo's size, thumbnails batched many per forward pass, and accuracy kept."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from exposure_cli.analyzers import create_analyzer  # noqa: E402
from exposure_cli.imageops import (  # noqa: E402
    NATIVE_MIN_LONG_SIDE,
    NETWORK_MULTIPLE,
    THUMBNAIL_LONG_SIDE,
    analysis_size,
    pad_to,
    padded_size,
    working_size,
)
from exposure_cli.models import create_model, model_config  # noqa: E402
from exposure_cli.weights import save_weights  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture()
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "w"
    save_weights(create_model("eat_iea_test"), folder,
                 {"architecture": "eat_iea_test", "config": model_config("eat_iea_test")})
    return folder


class ForwardLog:
    """Records the shape of every tensor the network is called with (a forward pre-hook)."""

    def __init__(self, model) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.handle = model.register_forward_pre_hook(lambda _m, args: self.shapes.append(tuple(args[0].shape)))


def test_network_multiple_is_the_models():
    from exposure_cli.models.eat_iea import MULTIPLE

    assert NETWORK_MULTIPLE == MULTIPLE


@pytest.mark.parametrize(("shape", "expected"), [
    ((96, 128), (96, 128)),        # a small photo keeps its size
    ((256, 192), (256, 192)),
    ((512, 384), (512, 384)),
    ((3000, 4000), (384, 512)),    # larger photos shrink to the working resolution
    ((600, 20), (512, 17)),
    ((48, 64), (384, 512)),        # below native_min_long_side: the working resolution
])
def test_analysis_size_follows_small_photos_and_shrinks_large_ones(shape, expected):
    assert analysis_size(*shape, 512, native_min_long_side=128) == expected


@pytest.mark.parametrize(("shape", "expected"), [
    ((48, 64), (384, 512)),        # 64 px thumbnails: the 512 copy (every cheaper choice hurt, MODEL.md)
    ((96, 128), (384, 512)),       # 128 px: the 512 copy (own size: natural MAE +0.008, brackets +0.010)
    ((120, 255), (241, 512)),      # just below the line: the rule of the measured size below it
    ((192, 256), (192, 256)),      # from 256 px: own size (better or equal on all three sets)
    ((384, 512), (384, 512)),
])
def test_default_rule_is_the_measured_one(shape, expected):
    assert NATIVE_MIN_LONG_SIDE == 256
    assert analysis_size(*shape, 512) == expected


@pytest.mark.parametrize("shape", [(48, 64), (96, 128), (120, 255), (1, 1)])
def test_thumbnails_go_to_the_thumbnail_copy_whatever_the_working_size(shape):
    """Below NATIVE_MIN_LONG_SIDE the copy is THUMBNAIL_LONG_SIDE (the rule's choice), at any working size
    from 256 up (the shipped weights' 320 included)."""
    for working in (256, 320, 512):
        assert analysis_size(*shape, working, thumbnail_long_side=THUMBNAIL_LONG_SIDE) == \
            working_size(*shape, THUMBNAIL_LONG_SIDE)


def _small_rule():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "small_rule.py"
    spec = importlib.util.spec_from_file_location("small_rule", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_threshold_is_the_rule_applied_to_the_shipped_weights():
    """NATIVE_MIN_LONG_SIDE is what benchmarks/small_rule.py decided for the weights that ship: when the
    weights change, the three tables are re-measured (one command) before the threshold is trusted."""
    import json
    from pathlib import Path

    from exposure_cli.weights import resolve_weights, verify_weights

    sha = verify_weights(resolve_weights(None)).sha256
    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "results_small_rule" / sha[:8]
    if not (folder / "decision.json").exists():
        pytest.fail(f"no small-image rule measurement for the shipped weights {sha[:8]}…: run "
                    f"`python benchmarks/small_rule.py --weights weights` (docs/MODEL.md \"Small images\")")
    decision = json.loads((folder / "decision.json").read_text())
    assert decision["weights_sha256"] == sha
    assert decision["tolerance"] == 0.005
    assert decision["native_min_long_side"] == NATIVE_MIN_LONG_SIDE
    rule = _small_rule()  # the decision follows from the committed measurements by the rule as written
    again = rule.decide(rule.tables(folder))
    assert again["native_min_long_side"] == NATIVE_MIN_LONG_SIDE


def test_thumbnail_copy_is_the_rule_applied_to_the_shipped_weights():
    """THUMBNAIL_LONG_SIDE is the smallest copy the rule finds acceptable at every measured size below the
    threshold, over the full-rule folder of the shipped weights and its levels_* subfolders (copies between
    256 and 512), re-decided from the committed JSON; 512 when none is."""
    import json
    from pathlib import Path

    from exposure_cli.weights import resolve_weights, verify_weights

    sha = verify_weights(resolve_weights(None)).sha256
    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "results_small_rule" / sha[:8]
    if not (folder / "thumbnail.json").exists():
        pytest.fail(f"no thumbnail-copy decision for the shipped weights {sha[:8]}…: run "
                    f"`python benchmarks/small_rule.py --weights weights --apply-only` (docs/MODEL.md)")
    committed = json.loads((folder / "thumbnail.json").read_text())
    again = _small_rule().combined_thumbnail(folder)
    assert again == committed
    assert committed["weights_sha256"] == sha and committed["tolerance"] == 0.005
    assert committed["sizes"] and all(s < NATIVE_MIN_LONG_SIDE for s in committed["sizes"])
    # What the analyzer uses for the shipped weights (their card's choice, else the module default).
    card_choice = json.loads((resolve_weights(None).parent / "card.json").read_text()).get("thumbnail_long_side")
    assert (card_choice or THUMBNAIL_LONG_SIDE) == committed["long_side"]


def test_thumbnail_bands_are_the_rule_per_size_applied_to_the_shipped_weights():
    """The card's thumbnail bands are what `small_rule.py` decides per photo size from the committed
    measurements (re-decided here), and the analyzer gives every measured size its chosen copy."""
    import json
    from pathlib import Path

    from exposure_cli.imageops import thumbnail_long_side_for
    from exposure_cli.weights import resolve_weights, verify_weights

    sha = verify_weights(resolve_weights(None)).sha256
    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "results_small_rule" / sha[:8]
    committed = json.loads((folder / "thumbnail_bands.json").read_text())
    assert _small_rule().thumbnail_bands(folder) == committed
    assert committed["weights_sha256"] == sha and committed["below"] == NATIVE_MIN_LONG_SIDE
    card = json.loads((resolve_weights(None).parent / "card.json").read_text())
    expected = [list(band) for band in committed["bands"]]
    per_size = {int(size): chosen for size, chosen in committed["per_size"].items()}
    spec = card.get("thumbnail_weights")
    if spec:  # stage 20: the smallest photos are read by thumbnail weights through the copy that rule chose
        import importlib.util

        module = importlib.util.spec_from_file_location(
            "thumbnail_weights_rule", Path(__file__).resolve().parents[1] / "benchmarks" / "thumbnail_weights_rule.py")
        rule = importlib.util.module_from_spec(module)
        module.loader.exec_module(rule)
        # Stage 20's rule applied with the shipped weights as the reference (stage 32's procedure): the
        # decision sits with the shipped weights' measurements and follows from the committed files.
        decision = json.loads((folder / "thumbnail_weights_decision.json").read_text())
        assert decision["reference_sha256"] == sha and decision["candidate_sha256"] == spec["sha256"]
        assert decision["chosen"] and decision["size"] < spec["below_long_side"]
        stage20_w = Path(__file__).resolve().parents[1] / "benchmarks" / "results_small_rule" / "stage20" / "W"
        assert rule.decide(stage20_w, folder, decision["size"]) == decision
        per_size = {s: decision["chosen"] if s < spec["below_long_side"] else c for s, c in per_size.items()}
        expected = _small_rule().bands_of(per_size)
    assert card["thumbnail_bands"] == expected
    analyzer = create_analyzer("eat", device="cpu")
    for s, chosen in per_size.items():
        assert analyzer.uses_thumbnail_weights(s * 3 // 4, s) == bool(spec and s < spec["below_long_side"])
        assert thumbnail_long_side_for(s, analyzer.thumbnail_long_side) in (chosen, 0 if chosen == s else chosen)
        expected = (s * 3 // 4, s) if chosen == s else working_size(s * 3 // 4, s, chosen)
        assert analyzer.network_size(s * 3 // 4, s) == expected


def _thumb_table(maes):
    """A small_rule table for S = 64, 128 from {S: {L: MAE}}; ordering equal everywhere."""
    def cell(size):
        return {lv: {"mae": m, "mono": 1.0} for lv, m in maes[size].items()}

    return {"weights_sha256": "x", "scenes": 38,
            "val": {s: cell(s) for s in maes}, "natural": {s: cell(s) for s in maes},
            "brackets": {s: {lv: {"mae": m, "ordered": 30, "reversals": 5} for lv, m in maes[s].items()}
                         for s in maes}}


@pytest.mark.parametrize(("maes", "copy"), [
    ({64: {320: 0.104, 384: 0.101, 512: 0.10}, 128: {320: 0.104, 384: 0.10, 512: 0.10}}, 320),
    ({64: {320: 0.106, 384: 0.101, 512: 0.10}, 128: {320: 0.104, 384: 0.10, 512: 0.10}}, 384),  # 320 fails at 64
    ({64: {320: 0.104, 384: 0.101, 512: 0.10}, 128: {320: 0.106, 384: 0.106, 512: 0.10}}, 512),  # none at 128
])
def test_thumbnail_copy_is_one_size_acceptable_at_every_size(maes, copy):
    decision = _small_rule().decide(_thumb_table(maes))
    assert decision["native_min_long_side"] is None  # own sizes not measured: not this run's to decide
    assert decision["thumbnail"]["sizes"] == [64, 128]
    assert decision["thumbnail"]["long_side"] == copy


def _table(val, natural, brackets):
    """A small_rule table for S = 256 from (own, 512) pairs: val/natural (MAE, mono), brackets (MAE,
    ordered, reversals)."""
    def photo(mae, mono):
        return {"mae": mae, "mono": mono}

    return {"weights_sha256": "x", "scenes": 38,
            "val": {256: {256: photo(*val[0]), 512: photo(*val[1])}},
            "natural": {256: {256: photo(*natural[0]), 512: photo(*natural[1])}},
            "brackets": {256: {lv: {"mae": b[0], "ordered": b[1], "reversals": b[2]}
                               for lv, b in zip((256, 512), brackets)}}}


@pytest.mark.parametrize(("change", "passes"), [
    ({}, True),
    ({"val": ((0.0849, 1.0), (0.08, 1.0))}, True),           # MAE +0.0049: within 0.005
    ({"val": ((0.0851, 1.0), (0.08, 1.0))}, False),          # MAE +0.0051
    ({"natural": ((0.05, 0.96), (0.08, 1.0))}, False),       # better MAE, fewer monotonic sweeps
    ({"brackets": ((0.10, 30, 5), (0.12, 31, 5))}, False),   # one ordered stack fewer
    ({"brackets": ((0.10, 31, 6), (0.12, 31, 5))}, False),   # one reversal more
])
def test_small_rule_conditions(change, passes):
    rule = _small_rule()
    args = {"val": ((0.08, 1.0), (0.08, 1.0)), "natural": ((0.08, 1.0), (0.08, 1.0)),
            "brackets": ((0.10, 31, 5), (0.12, 31, 5))}
    args.update(change)
    decision = rule.decide(_table(**args))
    assert (decision["per_size"][256]["chosen"] == 256) is passes
    assert decision["native_min_long_side"] == (256 if passes else 320)  # none below 320 passes: 320


def test_analysis_size_thresholds():
    assert analysis_size(48, 64, 512, native_min_long_side=1) == (48, 64)  # every size native
    assert analysis_size(96, 128, 512, native_min_long_side=513) == (384, 512)  # the old policy
    assert 1 <= NATIVE_MIN_LONG_SIDE <= 512


def test_padded_size_and_pad_to_replicate_edges():
    assert padded_size(48, 64) == (64, 64) and padded_size(33, 1) == (64, 32) and padded_size(64, 96) == (64, 96)
    img = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1)
    out = pad_to(img, 4, 5)
    assert out.shape == (4, 5, 1)
    np.testing.assert_array_equal(out[:2, :3], img)
    np.testing.assert_array_equal(out[3, :3, 0], img[1, :, 0])  # last row repeated
    np.testing.assert_array_equal(out[:2, 4, 0], img[:, 2, 0])  # last column repeated
    with pytest.raises(ValueError):
        pad_to(img, 1, 5)


def test_a_small_photo_is_not_upscaled_and_its_map_keeps_its_size(tiny_weights):
    analyzer = create_analyzer("eat", weights=tiny_weights, device="cpu")  # working 512, default floor
    log = ForwardLog(analyzer.model)
    rng = np.random.default_rng(0)
    (m,) = analyzer.analyze_batch([rng.random((200, 300, 3), dtype=np.float32)])
    assert m.shape == (200, 300) and m.dtype == np.float32 and np.abs(m).max() <= 1.0
    # the network saw 224×320 (200×300 padded to its multiple of 32), not 341×512
    assert log.shapes == [(1, 3, 224, 320)]


def test_a_tiny_thumbnail_follows_the_measured_rule(tiny_weights):
    analyzer = create_analyzer("eat", weights=tiny_weights, device="cpu")
    log = ForwardLog(analyzer.model)
    (m,) = analyzer.analyze_batch([np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)])
    assert m.shape == (48, 64)
    h, w = padded_size(*analysis_size(48, 64, 512, NATIVE_MIN_LONG_SIDE, THUMBNAIL_LONG_SIDE))
    assert log.shapes == [(1, 3, h, w)]


def test_the_thumbnail_copy_comes_from_the_weights_card_unless_given(tmp_path):
    torch.manual_seed(0)
    plain, chosen = tmp_path / "plain", tmp_path / "chosen"
    card = {"architecture": "eat_iea_test", "config": model_config("eat_iea_test")}
    model = create_model("eat_iea_test")
    save_weights(model, plain, card)
    save_weights(model, chosen, {**card, "thumbnail_long_side": 320})
    thumb = (48, 64)
    assert create_analyzer("eat", weights=plain, device="cpu").network_size(*thumb) == (384, 512)
    analyzer = create_analyzer("eat", weights=chosen, device="cpu")
    assert analyzer.network_size(*thumb) == (240, 320)
    assert analyzer.info.extra["thumbnail_long_side"] == "320"
    log = ForwardLog(analyzer.model)
    (m,) = analyzer.analyze_batch([np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)])
    assert m.shape == thumb and log.shapes == [(1, 3, 256, 320)]
    # An explicit value wins over the card; None means the working size.
    assert create_analyzer("eat", weights=chosen, device="cpu", thumbnail_long_side=512).network_size(*thumb) == \
        (384, 512)
    assert create_analyzer("eat", weights=chosen, device="cpu", working_long_side=256,
                           thumbnail_long_side=None).network_size(*thumb) == (192, 256)


def test_thumbnail_bands_give_each_size_band_its_copy():
    from exposure_cli.imageops import describe_thumbnail, thumbnail_copy, thumbnail_long_side_for

    bands = thumbnail_copy([[1, 512], [160, 320], [224, 0]])
    assert bands == ((1, 512), (160, 320), (224, 0))
    # the band starting at or below the photo's long side; below every start, the first band
    assert [thumbnail_long_side_for(s, bands) for s in (20, 64, 159, 160, 223, 224, 255)] == \
        [512, 512, 512, 320, 320, 0, 0]
    assert thumbnail_long_side_for(10, thumbnail_copy([[64, 256], [128, 320]])) == 256
    working = 320
    assert analysis_size(48, 64, working, NATIVE_MIN_LONG_SIDE, bands) == (384, 512)
    assert analysis_size(150, 200, working, NATIVE_MIN_LONG_SIDE, bands) == (240, 320)
    assert analysis_size(168, 224, working, NATIVE_MIN_LONG_SIDE, bands) == (168, 224)  # 0: its own size
    assert analysis_size(192, 256, working, NATIVE_MIN_LONG_SIDE, bands) == (192, 256)  # not a thumbnail
    assert analysis_size(3000, 4000, working, NATIVE_MIN_LONG_SIDE, bands) == (240, 320)
    assert describe_thumbnail(bands) == "1 px+: 512; 160 px+: 320; 224 px+: own"
    assert thumbnail_copy(320) == 320 and thumbnail_copy(None) is None
    for bad in ([[160, 320], [100, 512]], [[0, 512]], [[1, 16]], [], [[1]], "512", 8, [[1, 512], [1, 320]]):
        with pytest.raises(ValueError):
            thumbnail_copy(bad)


def test_the_weights_card_can_give_thumbnail_bands(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "banded"
    card = {"architecture": "eat_iea_test", "config": model_config("eat_iea_test"),
            "thumbnail_long_side": 512, "thumbnail_bands": [[1, 512], [192, 320]]}
    save_weights(create_model("eat_iea_test"), folder, card)
    analyzer = create_analyzer("eat", weights=folder, device="cpu")
    assert analyzer.network_size(48, 64) == (384, 512)  # bands win over the one-size field
    assert analyzer.network_size(168, 224) == (240, 320)
    assert analyzer.info.extra["thumbnail_long_side"] == "1 px+: 512; 192 px+: 320"
    log = ForwardLog(analyzer.model)
    rng = np.random.default_rng(0)
    small, crop = rng.random((48, 64, 3), dtype=np.float32), rng.random((168, 224, 3), dtype=np.float32)
    maps = analyzer.analyze_batch([small, crop])
    assert [m.shape for m in maps] == [(48, 64), (168, 224)]
    assert sorted(log.shapes) == [(1, 3, 256, 320), (1, 3, 384, 512)]
    save_weights(create_model("eat_iea_test"), tmp_path / "bad", {**card, "thumbnail_bands": [[200, 320], [100, 512]]})
    with pytest.raises(ValueError, match="ascending"):
        create_analyzer("eat", weights=tmp_path / "bad", device="cpu")


def test_native_policy_runs_a_thumbnail_at_its_own_size(tiny_weights):
    analyzer = create_analyzer("eat", weights=tiny_weights, device="cpu", native_min_long_side=1)
    log = ForwardLog(analyzer.model)
    (m,) = analyzer.analyze_batch([np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)])
    assert m.shape == (48, 64) and log.shapes == [(1, 3, 64, 64)]


def test_old_policy_still_available_upscales(tiny_weights):
    analyzer = create_analyzer("eat", weights=tiny_weights, device="cpu", native_min_long_side=513)
    log = ForwardLog(analyzer.model)
    (m,) = analyzer.analyze_batch([np.full((48, 64, 3), 0.4, np.float32)])
    assert m.shape == (48, 64) and log.shapes == [(1, 3, 384, 512)]


@pytest.mark.parametrize("shape", [(48, 64), (37, 53), (200, 150), (511, 3), (1, 1)])
def test_small_maps_keep_their_size(tiny_weights, shape):
    for native_from in (1, NATIVE_MIN_LONG_SIDE):
        analyzer = create_analyzer("eat", weights=tiny_weights, device="cpu", native_min_long_side=native_from)
        (m,) = analyzer.analyze_batch([np.random.default_rng(1).random((*shape, 3), dtype=np.float32)])
        assert m.shape == shape and np.isfinite(m).all()


def test_thumbnails_share_forward_passes_and_match_one_by_one(tiny_weights):
    analyzer = create_analyzer("eat", weights=tiny_weights, device="cpu", working_long_side=128, batch_size=2,
                               native_min_long_side=1)
    rng = np.random.default_rng(2)
    # 40×70 and 50×90 both pad to 64×96: one bucket; 20 of them fit the pixels of 2 working-size photos
    images = [rng.random(((40, 70), (50, 90))[i % 2] + (3,), dtype=np.float32) for i in range(4)]
    images += [rng.random((30, 30, 3), dtype=np.float32) for _ in range(20)]
    log = ForwardLog(analyzer.model)
    together = analyzer.analyze_batch(images)
    assert sorted(log.shapes) == [(4, 3, 64, 96), (20, 3, 32, 32)]  # two passes, not 24 / batch_size = 12
    assert analyzer.per_pass((32, 32)) == 2 * 128 * 128 // (32 * 32)
    assert analyzer.per_pass((128, 96)) == 2  # working-size photos: batch_size per pass, as before
    alone = [analyzer.analyze(img) for img in images]
    for a, b, img in zip(together, alone, images):
        assert a.shape == img.shape[:2]
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_scan_batches_thumbnails_many_per_pass(tiny_weights, tmp_path):
    import cv2

    from exposure_cli.pipeline import scan

    folder = tmp_path / "thumbs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(40):
        cv2.imwrite(str(folder / f"t{i:02d}.jpg"), (rng.random((192, 256, 3)) * 255).astype(np.uint8))
    analyzer = create_analyzer("eat", weights=tiny_weights, device="cpu", batch_size=2)
    key = analyzer.batch_key(192, 256)
    assert key == (192, 256)  # its own size
    log = ForwardLog(analyzer.model)
    result = scan([folder], analyzer=analyzer, out=tmp_path / "out", regions=False)
    assert result.processed == 40 and result.errors == 0
    assert all(s[2:] == key for s in log.shapes), log.shapes
    assert analyzer.per_pass(key) > 2
    assert len(log.shapes) < 40 / 2  # more than batch_size thumbnails per pass
    assert sum(s[0] for s in log.shapes) == 40


#: The tolerance of docs/MODEL.md "Small images": where a photo is analysed at its own size, its maps' MAE
#: against the labels stays within this of the upscale-to-512 maps — on each of the rule's three sets.
NATIVE_MAE_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def shipped_pair():
    new = create_analyzer("eat", device="cpu")
    # every photo at 512: the rule's reference copy (the card's working size is 320 since stage 10)
    old = create_analyzer("eat", device="cpu", working_long_side=512, native_min_long_side=513)
    yield new, old
    new.close()
    old.close()


FOUR = ("astronaut", "coffee", "chelsea", "rocket")


def _at_native_min(name):
    import cv2
    from skimage import data

    from exposure_cli.imageops import working_size

    photo = getattr(data, name)().astype(np.float32) / 255.0
    h, w = working_size(*photo.shape[:2], NATIVE_MIN_LONG_SIDE)  # the smallest photo analysed at its own size
    return cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", FOUR)
def test_own_size_is_not_upscaled_and_darker_by_each_stop_reads_more_under_exposed(shipped_pair, name):
    from exposure_cli.data.simulator import render_ev

    new, _ = shipped_pair
    photo = _at_native_min(name)
    log = ForwardLog(new.model)
    means = [float(m.mean()) for m in new.analyze_batch([render_ev(photo, -k)[0] for k in range(5)])]
    log.handle.remove()
    assert log.shapes == [(5, 3, *padded_size(*photo.shape[:2]))]  # not upscaled
    assert all(b > a for a, b in zip(means, means[1:])), (name, means)


def test_four_photos_at_own_size_within_the_tolerance(shipped_pair):
    """A four-photo sample of the rule's natural set (same protocol: shrunk to 256 px, −2/0/+2 EV). With
    the stage-4 weights it read 0.0658 vs 0.0645; the stage-7 and stage-31 weights missed it on this sample
    (stage 7: 0.0978 vs 0.0911) while the whole set passed the rule, so it was a strict xfail; the stage-46
    weights shipped at stage 47 read 0.0822 at own size vs 0.0902 at 512 (docs/MODEL.md, Stage 47)."""
    from exposure_cli.data.simulator import render_ev

    new, old = shipped_pair
    errors = {"own size": [], "512": []}
    for name in FOUR:
        photo = _at_native_min(name)
        frames, labels = zip(*[render_ev(photo, ev) for ev in (-2.0, 0.0, 2.0)])
        for key, analyzer in (("own size", new), ("512", old)):
            maps = analyzer.analyze_batch(list(frames))
            assert [m.shape for m in maps] == [photo.shape[:2]] * 3
            errors[key] += [float(np.abs(m - lab).mean()) for m, lab in zip(maps, labels)]
    assert np.mean(errors["own size"]) <= np.mean(errors["512"]) + NATIVE_MAE_TOLERANCE, \
        {k: round(float(np.mean(v)), 4) for k, v in errors.items()}


def _banded_pair(tmp_path, below=128):
    """A main weights folder whose card names thumbnail weights (another network) for photos under `below`."""
    from exposure_cli.weights import sha256_file

    torch.manual_seed(1)
    thumbs = save_weights(create_model("eat_iea_test"), tmp_path / "main" / "thumbnails",
                          {"architecture": "eat_iea_test", "config": model_config("eat_iea_test")})
    torch.manual_seed(0)
    card = {"architecture": "eat_iea_test", "config": model_config("eat_iea_test"),
            "thumbnail_bands": [[1, 320], [160, 224]],
            "thumbnail_weights": {"below_long_side": below, "path": "thumbnails", "sha256": sha256_file(thumbs)}}
    save_weights(create_model("eat_iea_test"), tmp_path / "main", card)
    return tmp_path / "main", thumbs.parent, card


def test_a_card_can_name_thumbnail_weights_for_the_smallest_photos(tmp_path):
    main, thumbs, _ = _banded_pair(tmp_path)
    analyzer = create_analyzer("eat", weights=main, device="cpu", working_long_side=320)
    rng = np.random.default_rng(0)
    tiny, small, crop, big = (rng.random(s, dtype=np.float32) for s in
                              [(48, 64, 3), (90, 120, 3), (150, 200, 3), (600, 800, 3)])
    # the same photos read by each network alone, with the same copies
    alone_thumb = create_analyzer("eat", weights=thumbs, device="cpu", working_long_side=320,
                                  thumbnail_long_side=[[1, 320], [160, 224]])
    alone_main = create_analyzer("eat", weights=main, device="cpu", working_long_side=320,
                                 thumbnail_long_side=[[1, 320], [160, 224]])
    assert alone_main.thumbnail_weights_below == 0  # an explicit copy: the card's thumbnail weights are not used
    maps = analyzer.analyze_batch([tiny, small, crop, big])
    for got, photo in zip(maps[:2], (tiny, small)):  # under 128 px: the thumbnail weights
        (want,) = alone_thumb.analyze_batch([photo])
        np.testing.assert_allclose(got, want, atol=1e-6)  # batch composition: float rounding only
        (other,) = alone_main.analyze_batch([photo])
        assert np.abs(got - other).max() > 1e-3  # really another network
    for got, photo in zip(maps[2:], (crop, big)):  # 128 px and up: the main weights
        (want,) = alone_main.analyze_batch([photo])
        np.testing.assert_allclose(got, want, atol=1e-6)  # batch composition: float rounding only
    # batching keeps the two networks' photos apart; the report says which weights read thumbnails
    assert analyzer.batch_key(48, 64) != alone_main.batch_key(48, 64)
    assert analyzer.batch_key(48, 64)[:2] == alone_main.batch_key(48, 64)
    assert analyzer.batch_key(150, 200) == alone_main.batch_key(150, 200)
    assert analyzer.info.extra["thumbnail_weights"].startswith("under 128 px: ")
    assert alone_main.info.extra["thumbnail_weights"] == ""
    analyzer.close()


def test_thumbnail_weights_must_be_the_ones_the_card_names(tmp_path):
    import json

    from exposure_cli.weights import WeightsError

    main, thumbs, card = _banded_pair(tmp_path)
    cases = {
        "other sha": ({**card["thumbnail_weights"], "sha256": "0" * 64}, WeightsError, "not the ones"),
        "missing": ({**card["thumbnail_weights"], "path": "nowhere"}, WeightsError, "missing"),
        "malformed": ({"path": "thumbnails"}, ValueError, "below_long_side"),
        "too large": ({**card["thumbnail_weights"], "below_long_side": 300}, ValueError, "from 1 to 256"),
    }
    for name, (entry, error, message) in cases.items():
        card_path = main / "card.json"
        saved = json.loads(card_path.read_text())
        saved["thumbnail_weights"] = entry
        card_path.write_text(json.dumps(saved))
        with pytest.raises(error, match=message):
            create_analyzer("eat", weights=main, device="cpu")
    # and None (or an explicit thumbnail copy) means the main network everywhere
    assert create_analyzer("eat", weights=main, device="cpu", thumbnail_weights=None).thumbnail_weights_below == 0


def test_a_scan_reads_thumbnails_with_the_thumbnail_weights(tmp_path):
    import cv2

    from exposure_cli.pipeline import scan
    from exposure_cli.report.writers import read_report

    main, thumbs, _ = _banded_pair(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i, size in enumerate([(48, 64), (96, 128), (72, 96), (240, 320)]):
        cv2.imwrite(str(photos / f"p{i}.png"), (rng.random((*size, 3)) * 255).astype(np.uint8))
    reports = {}
    for name, kw in {"banded": {}, "main only": {"thumbnail_weights": None}}.items():
        analyzer = create_analyzer("eat", weights=main, device="cpu", working_long_side=320, **kw)
        scan([photos], analyzer=analyzer, out=tmp_path / name, regions="none", rules=[])
        df, meta = read_report(tmp_path / name / "report.parquet")
        reports[name] = (df.set_index("path"), meta)
    banded, main_only = reports["banded"][0], reports["main only"][0]
    # under 128 px the two differ (another network), from 128 px they are the same rows
    assert banded.loc["p0.png", "mean_residual"] != main_only.loc["p0.png", "mean_residual"]
    assert banded.loc["p2.png", "mean_residual"] != main_only.loc["p2.png", "mean_residual"]
    for p in ("p1.png", "p3.png"):
        assert banded.loc[p, "mean_residual"] == main_only.loc[p, "mean_residual"]
    assert "under 128 px" in str(reports["banded"][1]["analyzer"])


def test_sizes_the_product_shrinks_to_its_working_size_do_not_decide_the_threshold():
    """Stage 32: a photo from the cards' working long side (320) up is shrunk to it, so a failure read at
    its own size there (S = 384) must not move the threshold decided below 320."""
    rule = _small_rule()
    ok = {"mae": 0.08, "mono": 1.0}
    table = {"weights_sha256": "x", "scenes": 38, "val": {}, "natural": {},
             "brackets": {256: {256: {"mae": 0.10, "ordered": 31, "reversals": 5},
                                512: {"mae": 0.10, "ordered": 31, "reversals": 5}},
                          384: {384: {"mae": 0.10, "ordered": 30, "reversals": 6},  # fails at its own size
                                512: {"mae": 0.10, "ordered": 31, "reversals": 5}}}}
    table["val"] = {256: {256: ok, 512: ok}}
    decision = rule.decide(table)
    assert decision["per_size"][384]["chosen"] == 512
    assert decision["native_min_long_side"] == 256
    assert "384" in decision["note"]


def test_the_rules_working_size_is_the_shipped_cards():
    import json

    from exposure_cli.weights import resolve_weights

    card = json.loads((resolve_weights(None).parent / "card.json").read_text())
    assert card["working_long_side"] == _small_rule().PRODUCT_LONG_SIDE


def test_a_size_the_shipped_check_moved_takes_its_next_acceptable_copy(tmp_path):
    """Stage 32b: thumbnail_bands reads shipped_check.json and moves each listed size from its smallest
    acceptable copy to the next acceptable one (never to one the rule rejects)."""
    import json
    import shutil
    from pathlib import Path

    rule = _small_rule()
    source = Path(__file__).resolve().parents[1] / "benchmarks" / "results_small_rule" / "a4d83e2b"
    folder = tmp_path / "a4d83e2b"
    shutil.copytree(source, folder)
    (folder / rule.SHIPPED_CHECK).unlink()
    unmoved = rule.thumbnail_bands(folder)
    assert unmoved["per_size"]["224"] == 224 and "moved_by_shipped_check" not in unmoved
    (folder / rule.SHIPPED_CHECK).write_text(json.dumps({"moved_sizes": [224]}))
    moved = rule.thumbnail_bands(folder)
    assert moved["per_size"]["224"] == 320  # 256 fails the rule at 224 px, so 320 is the next acceptable
    assert moved["bands"][-1] == [224, 320] and moved["moved_by_shipped_check"] == [224]
    assert {k: v for k, v in moved["per_size"].items() if k != "224"} == \
        {k: v for k, v in unmoved["per_size"].items() if k != "224"}
