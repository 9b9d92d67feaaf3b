"""The CPU inference path (``models/eat_iea_inference.py``) gives the trained network's maps, and leaves the
trained network, the one training uses, exactly as it was.

The reference is ``EATIEA`` itself in eval mode (what training builds and saves); the fast path is
``fold_for_inference`` of it.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from exposure_cli.models import create_model  # noqa: E402
from exposure_cli.models import eat_iea_inference as fast_path  # noqa: E402
from exposure_cli.models.eat_iea_inference import FoldedEATIEA, fold_for_inference  # noqa: E402

#: Largest absolute difference between the two paths' maps (units of r, maps in [-1, 1]).
TOLERANCE = 1e-5
#: Sizes from thumbnails to the working resolution; the odd ones are padded to a multiple of 32.
SIZES = [(64, 64), (96, 128), (192, 256), (384, 512), (61, 97), (100, 130)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as a scan runs the network on this 2-core machine (two spin less under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _max_diff(reference, fast, x) -> float:
    with torch.inference_mode():
        expected = reference(x.contiguous(memory_format=torch.channels_last))
        got = fast(x)
    assert got.shape == expected.shape == (x.shape[0], 1, *x.shape[-2:])
    return float((expected - got).abs().max())


def _images(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth photo-like content plus clipped regions and noise (not only uniform noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 5, 7, generator=g) * 1.4 - 0.2
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (x + 0.03 * torch.randn(batch, 3, h, w, generator=g)).clamp(0, 1)


def _randomised(name: str, seed: int):
    """A registered variant with random weights everywhere, BatchNorm statistics and zero-initialised heads
    included (so every fold has something to fold), in eval mode."""
    torch.manual_seed(seed)
    model = create_model(name)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for parameter in model.parameters():
            if not parameter.abs().sum():
                parameter.normal_(0, 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def shipped():
    from exposure_cli.weights import load_model, resolve_weights

    try:
        model, _ = load_model(resolve_weights(None), "cpu")
    except Exception as exc:  # pragma: no cover - a checkout without weights
        pytest.skip(f"no shipped weights: {exc}")
    model = model.to(memory_format=torch.channels_last)
    return model, fold_for_inference(model)


#: (batch, size): batch 1 at every size, batch 8 up to 192×256 (the 384×512 batch of 8 costs the most
#: and exercises nothing batch 1 does not; benchmarks/bench_model_speed.py checks it).
CASES = [(1, size) for size in SIZES] + [(8, size) for size in SIZES if size[0] * size[1] <= 192 * 256]


@pytest.fixture(scope="module")
def shipped_float64(shipped):
    """The shipped network in float64: what both float32 paths round."""
    import copy

    reference, _ = shipped
    return copy.deepcopy(reference).to(memory_format=torch.contiguous_format).double()


@pytest.mark.parametrize("batch,size", CASES, ids=[f"b{b}-{h}x{w}" for b, (h, w) in CASES])
def test_shipped_weights_same_maps(shipped, shipped_float64, size, batch):
    """The fold changes only the rounding: the fast path is as close to the float64 network as the trained
    module in float32 is, both within TOLERANCE. (The two float32 paths differ from each other by up to the
    sum of their roundings: 1.1e-5 at b8-192x256 with the stage-46 weights, each 7.6e-6 / 8.5e-6 from
    float64 there.)"""
    reference, fast = shipped
    x = _images(batch, *size, seed=batch)
    with torch.inference_mode():
        truth = shipped_float64(x.double())
        eager = reference(x.contiguous(memory_format=torch.channels_last)).double()
        got = fast(x).double()
    assert got.shape == eager.shape == truth.shape == (batch, 1, *size)
    assert float((eager - truth).abs().max()) <= TOLERANCE
    assert float((got - truth).abs().max()) <= TOLERANCE


@pytest.mark.parametrize("name", ["eat_iea", "eat_iea_test", "eat_iea_no_dwt", "eat_iea_no_structure",
                                  "eat_iea_no_schedule"])
def test_random_weights_same_maps(name):
    reference = _randomised(name, seed=len(name))
    fast = fold_for_inference(reference)
    for batch, size in ((1, (64, 64)), (3, (61, 97)), (1, (192, 256))):
        assert _max_diff(reference, fast, _images(batch, *size, seed=batch)) <= TOLERANCE


@pytest.mark.parametrize("fused", [False, True], ids=["separate-ops", "fused-always"])
def test_both_convolution_paths_same_maps(shipped, monkeypatch, fused):
    """Small maps take separate ops and large ones oneDNN's fused op: force each everywhere."""
    if fused and not fast_path.FUSED_CONV:
        pytest.skip("this PyTorch has no mkldnn::_convolution_pointwise")
    monkeypatch.setattr(fast_path, "FUSED_CONV", fused)
    monkeypatch.setattr(fast_path, "FUSED_MIN_PIXELS", 0)
    reference, fast = shipped
    for batch, size in ((1, (64, 96)), (2, (128, 160))):
        assert _max_diff(reference, fast, _images(batch, *size)) <= TOLERANCE


def test_fold_leaves_the_training_module_alone():
    model = _randomised("eat_iea_test", seed=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    parameters = list(model.parameters())
    fast = fold_for_inference(model)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert list(model.parameters()) == parameters
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # nothing shared: the folded copy's tensors are its own
    own = {t.data_ptr() for t in list(fast.parameters()) + list(fast.buffers()) if t is not None and t.numel()}
    assert own.isdisjoint({t.data_ptr() for t in after.values() if t.numel()})
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    assert isinstance(fast, FoldedEATIEA)


def test_training_still_trains_and_keeps_its_state_dict_keys():
    """Training imports the same module: a few steps lower the loss, the saved keys stay the same."""
    torch.manual_seed(0)
    model = create_model("eat_iea_test").train()
    model.set_explore(0.3)
    keys = list(model.state_dict().keys())
    x = _images(2, 64, 64, seed=5)
    grey = (x * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
    target = (0.5 - grey).clamp(-1, 1)  # brighten the dark, darken the bright
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    assert list(model.state_dict().keys()) == keys
    # and the trained weights fold to the same maps
    model.eval()
    assert _max_diff(model, fold_for_inference(model), x) <= TOLERANCE


def test_shipped_state_dict_keys_unchanged():
    from safetensors.torch import load_file

    from exposure_cli.weights import read_card, resolve_weights

    try:
        path = resolve_weights(None)
    except Exception as exc:  # pragma: no cover
        pytest.skip(f"no shipped weights: {exc}")
    card = read_card(path)
    model = create_model(card["architecture"], card.get("config"))
    assert set(model.state_dict()) == set(load_file(str(path)))


def test_eager_runtime_folds_on_cpu_only(shipped):
    from exposure_cli.runtimes import build_runner

    reference, _ = shipped
    run = build_runner(reference, "eager", "cpu")
    assert isinstance(run.model, FoldedEATIEA)
    assert build_runner(reference, "eager", "cuda").model is reference  # GPUs (autocast): the trained module
    x = _images(2, 96, 128)
    with torch.inference_mode():
        expected = reference(x)[:, 0].clamp(-1, 1).numpy()
    assert float(abs(run(x) - expected).max()) <= TOLERANCE


def test_fold_rejects_other_modules():
    with pytest.raises(ValueError, match="EATIEA"):
        fold_for_inference(torch.nn.Conv2d(3, 3, 1))
