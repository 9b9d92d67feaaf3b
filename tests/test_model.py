"""EAT-IEA architecture: Haar DWT, shapes, ranges, gradients, the explore/exploit schedule, the registry."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from exposure_cli.models import MODELS, VARIANTS, create_model, model_config  # noqa: E402
from exposure_cli.models.dwt import haar_dwt, haar_idwt  # noqa: E402
from exposure_cli.models.eat_iea import EATBlock  # noqa: E402
from exposure_cli.registry import RegistryError  # noqa: E402

torch.set_num_threads(1)


def test_haar_round_trip_is_exact():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 10, 14, generator=gen, dtype=torch.float64)
    low, high = haar_dwt(x)
    assert low.shape == (2, 3, 5, 7) and high.shape == (2, 9, 5, 7)
    assert torch.allclose(haar_idwt(low, high), x, atol=1e-12, rtol=0)


def test_haar_bands_of_one_block():
    block = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # a=1 b=2 / c=3 d=4
    low, high = haar_dwt(block)
    assert low.item() == pytest.approx(5.0)  # (1+2+3+4)/2
    assert high.flatten().tolist() == pytest.approx([-2.0, -1.0, 0.0])  # LH, HL, HH
    # Orthonormal: energy is preserved.
    assert (low.pow(2).sum() + high.pow(2).sum()).item() == pytest.approx(block.pow(2).sum().item())


def test_haar_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even"):
        haar_dwt(torch.zeros(1, 1, 5, 4))


@pytest.mark.parametrize("size", [(37, 53), (64, 64), (31, 96), (1, 1)])
def test_tiny_model_any_size_shape_range_finite(size):
    torch.manual_seed(0)
    model = create_model("eat_iea_test").eval()
    x = torch.rand(2, 3, *size)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (2, 1, *size)
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 1.0


def test_extreme_inputs_stay_finite():
    model = create_model("eat_iea_test").eval()
    x = torch.cat([torch.zeros(1, 3, 40, 40), torch.ones(1, 3, 40, 40)])
    with torch.inference_mode():
        y = model(x)
    assert torch.isfinite(y).all()


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = create_model("eat_iea_test").train()
    model.set_explore(0.5)
    x = torch.rand(2, 3, 64, 96)
    target = torch.rand(2, 1, 64, 96) * 2 - 1
    # One step first so the zero-initialised output layers (offsets, head gains) leave zero, then check.
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    (model(x) - target).abs().mean().backward()
    opt.step()
    opt.zero_grad()
    (model(x) - target).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def _block_with_offsets(use_schedule: bool = True) -> tuple[EATBlock, torch.Tensor]:
    torch.manual_seed(1)
    block = EATBlock(dim=16, heads=2, ref_grid=4, interest_points=2, use_schedule=use_schedule)
    torch.nn.init.normal_(block.offset_net[-1].weight, std=0.5)  # non-zero offsets to schedule
    feat = torch.randn(2, 16, 8, 8)
    return block, feat


def _positions(block: EATBlock, feat: torch.Tensor, explore: float) -> torch.Tensor:
    block.explore.fill_(explore)
    with torch.no_grad():
        return block.sample_positions(feat, block.interest_coordinates(feat))


def test_schedule_changes_offsets_only_while_exploring():
    block, feat = _block_with_offsets()
    block.train()
    free = _positions(block, feat, 0.0)
    exploring = _positions(block, feat, 0.5)
    assert not torch.allclose(free, exploring)
    block.eval()  # inference: no schedule whatever the strength
    assert torch.equal(_positions(block, feat, 0.5), _positions(block, feat, 0.0))
    assert torch.allclose(_positions(block, feat, 0.0), free)


def test_schedule_damps_offsets_towards_interest_quadrant_and_amplifies_others():
    block, feat = _block_with_offsets()
    block.train()
    g = block.ref_grid
    reference = torch.stack(
        torch.meshgrid((torch.arange(g) + 0.5) / g * 2 - 1, (torch.arange(g) + 0.5) / g * 2 - 1, indexing="ij")[::-1],
        dim=-1,
    )
    interest = block.interest_coordinates(feat).detach()
    free = (_positions(block, feat, 0.0).reshape(2, block.heads, g, g, 2) - reference)
    damped = (_positions(block, feat, 0.5).reshape(2, block.heads, g, g, 2) - reference)
    ratio = damped.norm(dim=-1) / free.norm(dim=-1).clamp_min(1e-9)
    interior = (reference.abs() < 0.6).all(-1)  # away from the clamp at the border
    # Nearest interest point per reference point, and whether the free offset heads into its quadrant.
    towards = interest[:, None, None, :, :] - reference[None, :, :, None, :]  # B, g, g, P, 2
    nearest = towards.pow(2).sum(-1).argmin(-1)
    direction = torch.gather(towards, 3, nearest[..., None, None].expand(-1, -1, -1, 1, 2)).squeeze(3)
    same = ((torch.sign(free) * torch.sign(direction[:, None])) > 0).all(-1)
    valid = interior[None, None] & (free.norm(dim=-1) > 1e-4)
    assert (same & valid).any() and (~same & valid).any()
    assert torch.allclose(ratio[same & valid], torch.tensor(0.5), atol=1e-4)
    assert torch.allclose(ratio[~same & valid], torch.tensor(1.5), atol=1e-4)


def test_no_schedule_variant_ignores_exploration():
    block, feat = _block_with_offsets(use_schedule=False)
    block.train()
    assert torch.equal(_positions(block, feat, 0.5), _positions(block, feat, 0.0))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_registered_variant_runs(name):
    model = create_model(name).eval()
    with torch.inference_mode():
        y = model(torch.rand(1, 3, 70, 45))
    assert y.shape == (1, 1, 70, 45)


def test_full_model_size_and_working_resolution():
    model = create_model("eat_iea").eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 < n_params <= 3_000_000
    with torch.inference_mode():
        y = model(torch.rand(1, 3, 512, 384))
    assert y.shape == (1, 1, 512, 384)


def test_ablations_differ_from_full_model():
    full = model_config("eat_iea")
    assert model_config("eat_iea_no_dwt")["use_dwt"] is False and full["use_dwt"] is True
    assert model_config("eat_iea_no_structure")["use_structure"] is False
    assert model_config("eat_iea_no_schedule")["use_schedule"] is False
    n = lambda name: sum(p.numel() for p in create_model(name).parameters())  # noqa: E731
    assert n("eat_iea_no_structure") < n("eat_iea")


def test_registry_fails_loudly():
    with pytest.raises(RegistryError, match="did you mean 'eat_iea'"):
        create_model("eat_ia")
    with pytest.raises(TypeError, match="unknown EAT-IEA config keys"):
        create_model("eat_iea_test", config={"widths_typo": 3})
    assert "eat_iea_test" in MODELS


def test_mixed_precision_forward_and_backward():
    # The CUDA training/inference path uses bf16 autocast; CPU autocast exercises the same op coverage.
    torch.manual_seed(0)
    model = create_model("eat_iea_test").train()
    model.set_explore(0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(torch.rand(2, 3, 64, 48))
    assert y.shape == (2, 1, 64, 48) and torch.isfinite(y.float()).all()
    y.float().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
