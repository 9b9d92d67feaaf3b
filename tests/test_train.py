"""The training loop: it learns, checkpoints, resumes, exports loadable weights; schedules behave."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from exposure_cli.analyzers import create_analyzer  # noqa: E402
from exposure_cli.weights import CARD_FILE, WEIGHTS_FILE, verify_weights  # noqa: E402
from exposure_cli.color import grey, linear_to_srgb, srgb_to_linear  # noqa: E402
from exposure_cli.models import create_model  # noqa: E402
from exposure_cli.training import TrainConfig, exposure_loss, explore_strength, learning_rate, train  # noqa: E402
from exposure_cli.training.loop import evaluate_mae  # noqa: E402

torch.set_num_threads(1)


class GlobalShiftDataset(torch.utils.data.Dataset):
    """Smooth random colour fields shown at a random global exposure (a test stand-in, not a simulator)."""

    def __init__(self, n: int, size: int = 64, seed: int = 0) -> None:
        self.n, self.size, self.seed = n, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import cv2

        rng = np.random.default_rng(self.seed * 10_000 + index)
        coarse = rng.uniform(0.15, 0.75, (4, 4, 3)).astype(np.float32)
        ideal = cv2.resize(coarse, (self.size, self.size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        ev = rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0])
        observed = linear_to_srgb(srgb_to_linear(ideal) * 2.0**ev)
        residual = np.clip(grey(ideal) - grey(observed), -1, 1)
        return {
            "image": torch.from_numpy(observed).permute(2, 0, 1).contiguous(),
            "residual": torch.from_numpy(residual)[None],
        }


def _config(**overrides) -> TrainConfig:
    values = dict(architecture="eat_iea_test", steps=60, batch_size=8, lr=5e-3, seed=0, threads=1,
                  log_every_s=0.0, checkpoint_every_s=3600, validate_every_s=3600, val_batches=2)
    values.update(overrides)
    return TrainConfig(**values)


def test_short_training_lowers_the_loss_and_exports_loadable_weights(tmp_path):
    train_set, val_set = GlobalShiftDataset(64, seed=0), GlobalShiftDataset(16, seed=1)
    val_batches = list(torch.utils.data.DataLoader(val_set, batch_size=8))
    torch.manual_seed(0)
    untrained = create_model("eat_iea_test")  # same seed → same init as the run
    before = evaluate_mae(untrained, val_batches, "cpu")["val_mae"]

    export = tmp_path / "export"
    result = train(_config(), train_set, tmp_path / "run", val_dataset=val_set, export_dir=export,
                   card_extra={"data_format": "test"})
    assert result.steps == 60
    assert result.best_val_mae is not None and result.best_val_mae < 0.8 * before

    card = json.loads((export / CARD_FILE).read_text())
    assert card["architecture"] == "eat_iea_test" and card["data_format"] == "test"
    assert card["validation"]["val_mae"] == pytest.approx(result.best_val_mae)
    assert card["training"]["steps_done"] == 60
    verify_weights(export / WEIGHTS_FILE)
    analyzer = create_analyzer("eat", weights=export, device="cpu", working_long_side=64)
    dark = linear_to_srgb(srgb_to_linear(np.full((48, 80, 3), 0.45, np.float32)) * 0.25)
    assert analyzer.analyze(dark).shape == (48, 80)

    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "val" for r in lines) and any(r["kind"] == "train" for r in lines)
    assert "finished" in (tmp_path / "run" / "train.log").read_text()


def test_resume_continues_where_it_stopped(tmp_path):
    data = GlobalShiftDataset(16)
    first = train(_config(steps=4), data, tmp_path / "run")
    assert first.steps == 4 and (tmp_path / "run" / "checkpoint.pt").is_file()
    second = train(_config(steps=7), data, tmp_path / "run")
    assert second.steps == 7  # 3 more steps, not 7 new ones
    assert "resumed" in (tmp_path / "run" / "train.log").read_text()
    with pytest.raises(ValueError, match="holds a 'eat_iea_test' run"):
        train(_config(steps=9, architecture="eat_iea_no_dwt"), data, tmp_path / "run")


def test_fine_tuning_starts_from_the_given_weights_and_records_them(tmp_path):
    from safetensors.torch import load_file

    data = GlobalShiftDataset(16)
    first = train(_config(steps=3), data, tmp_path / "first", export_dir=tmp_path / "w")
    assert first.steps == 3
    start = load_file(str(tmp_path / "w" / WEIGHTS_FILE))
    init_sha = verify_weights(tmp_path / "w" / WEIGHTS_FILE).sha256

    # lr 0: AdamW leaves every weight where it started, so the run's weights are the init weights
    frozen = train(_config(steps=2, lr=0.0, init_weights=str(tmp_path / "w")), data, tmp_path / "frozen",
                   val_dataset=GlobalShiftDataset(8, seed=1), export_dir=tmp_path / "w2")
    after = load_file(str(tmp_path / "w2" / WEIGHTS_FILE))
    assert frozen.steps == 2 and set(after) == set(start)
    params = {name for name, _ in create_model("eat_iea_test").named_parameters()}  # not BatchNorm's running stats
    assert params and all(torch.equal(after[k], start[k]) for k in params)
    card = json.loads((tmp_path / "w2" / CARD_FILE).read_text())
    assert card["training"]["init_sha256"] == init_sha
    # the checkpoint keeps where the run started, so a resumed run's cards still say it
    assert torch.load(tmp_path / "frozen" / "checkpoint.pt", weights_only=True)["init_sha256"] == init_sha
    resumed = train(_config(steps=3, lr=1e-3), data, tmp_path / "frozen", val_dataset=GlobalShiftDataset(8, seed=1),
                    export_dir=tmp_path / "w3")
    assert resumed.steps == 3
    assert torch.load(tmp_path / "frozen" / "checkpoint.pt", weights_only=True)["init_sha256"] == init_sha
    assert "initialised from" in (tmp_path / "frozen" / "train.log").read_text()

    # a fresh random init differs from those weights
    torch.manual_seed(0)
    fresh = create_model("eat_iea_test").state_dict()
    assert any(not torch.equal(fresh[k], start[k]) for k in start)

    with pytest.raises(ValueError, match="another config"):
        train(_config(steps=1, architecture="eat_iea_no_dwt", init_weights=str(tmp_path / "w")), data,
              tmp_path / "mismatch")


def test_a_budget_is_required(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        train(_config(steps=None, minutes=None), GlobalShiftDataset(4), tmp_path / "run")


def test_schedules():
    cfg = TrainConfig(steps=100, explore_share=0.3, explore_strength=0.5, warmup_share=0.1, lr=1e-3)
    assert explore_strength(0.0, cfg) == pytest.approx(0.5)
    assert 0 < explore_strength(0.15, cfg) < 0.5
    assert explore_strength(0.3, cfg) == 0.0 and explore_strength(0.9, cfg) == 0.0
    assert learning_rate(0.05, cfg) < learning_rate(0.1, cfg) == pytest.approx(1e-3)
    assert learning_rate(1.0, cfg) == pytest.approx(5e-5)
    no_explore = TrainConfig(steps=10, explore_share=0.0)
    assert explore_strength(0.0, no_explore) == 0.0


def test_loss_values_the_overall_verdict():
    target = torch.zeros(2, 1, 8, 8)
    noise = torch.zeros(2, 1, 8, 8)
    noise[..., ::2, :] = 0.2
    noise[..., 1::2, :] = -0.2  # zero-mean error
    shift = torch.full((2, 1, 8, 8), 0.2)  # same per-pixel error, wrong overall verdict
    loss_noise, _ = exposure_loss(noise, target, mean_weight=1.0, gradient_weight=0.0)
    loss_shift, parts = exposure_loss(shift, target, mean_weight=1.0, gradient_weight=0.0)
    assert parts["l1"] == pytest.approx(0.2) and loss_shift > loss_noise


def _write_iea40k(root, n_train: int = 6, n_val: int = 2) -> None:
    from exposure_cli.data.iea40k import IEA40KWriter

    for split, n, offset in (("train", n_train, 0), ("val", n_val, 100)):
        writer = IEA40KWriter(root, split)
        data = GlobalShiftDataset(n, size=48, seed=offset)
        for i in range(n):
            item = data[i]
            writer.add(f"{split}_{i:03d}", item["image"].permute(1, 2, 0).numpy(), item["residual"][0].numpy(),
                       ref_id=f"ref_{i}", score=5.0)
        writer.close()


def test_train_command_on_an_iea40k_folder(tmp_path):
    from typer.testing import CliRunner

    from exposure_cli.cli import app

    _write_iea40k(tmp_path / "iea")
    out, export = tmp_path / "run", tmp_path / "weights"
    args = ["train", "--data", str(tmp_path / "iea"), "--model", "eat_iea_test", "--steps", "3", "--batch-size", "2",
            "--crop", "64", "--workers", "0", "--threads", "1", "--out", str(out), "--export", str(export)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "trained 3 steps" in result.output
    card = json.loads((export / CARD_FILE).read_text())
    assert card["data_format"] == "iea40k" and card["training"]["crop"] == 64
    verify_weights(export / WEIGHTS_FILE)
    # Same command again with a larger budget resumes the run.
    result = CliRunner().invoke(app, [*args[:6], "5", *args[7:]], catch_exceptions=False)
    assert "trained 5 steps" in result.output


def test_train_command_usage_errors(tmp_path):
    from typer.testing import CliRunner

    from exposure_cli.cli import app

    runner = CliRunner()
    no_budget = runner.invoke(app, ["train", "--data", str(tmp_path)])
    assert no_budget.exit_code == 2 and "budget" in no_budget.output
    bad_model = runner.invoke(app, ["train", "--data", str(tmp_path), "--steps", "1", "--model", "eat_ie"])
    assert bad_model.exit_code == 2 and "eat_iea" in bad_model.output
    bad_device = runner.invoke(app, ["train", "--data", str(tmp_path), "--steps", "1", "--device", "gpu0"])
    assert bad_device.exit_code == 2 and "--device" in bad_device.output
    empty = runner.invoke(app, ["train", "--data", str(tmp_path), "--steps", "1"])
    assert empty.exit_code == 2 and "neither a corpus" in empty.output
    no_brackets = runner.invoke(app, ["train", "--data", str(tmp_path), "--steps", "1", "--step-bias-bracket-share", "0.5"])
    assert no_brackets.exit_code == 2 and "needs --step-bias-weight and --brackets" in no_brackets.output
    no_init = runner.invoke(app, ["train", "--data", str(tmp_path), "--steps", "1", "--init", str(tmp_path / "none")])
    assert no_init.exit_code == 2 and "--init" in no_init.output and "no EAT weights at" in no_init.output
    train(_config(steps=1), GlobalShiftDataset(8), tmp_path / "tiny", export_dir=tmp_path / "tiny_w")
    other = runner.invoke(app, ["train", "--data", str(tmp_path), "--steps", "1", "--init", str(tmp_path / "tiny_w")])
    assert other.exit_code == 2 and "'eat_iea_test' model, not --model eat_iea" in other.output


def test_ev_twins_match_a_direct_re_exposure():
    from exposure_cli.training.twins import make_twins

    rng = np.random.default_rng(3)
    ideal = np.clip(rng.uniform(0.2, 0.6, (1, 1, 3)) * np.ones((16, 16, 3)), 0, 1).astype(np.float32)
    ideal_lin = srgb_to_linear(ideal)
    observed = linear_to_srgb(ideal_lin * 2.0**-1.0)  # one stop under
    label = grey(ideal) - grey(observed)
    images = torch.from_numpy(observed).permute(2, 0, 1)[None]
    residuals = torch.from_numpy(label)[None, None]
    twins, twin_res, delta = make_twins(images, residuals, (0.75, 0.75), torch.Generator().manual_seed(0))
    direct = linear_to_srgb(ideal_lin * 2.0 ** (-1.0 + float(delta[0])))
    np.testing.assert_allclose(twins[0].permute(1, 2, 0).numpy(), direct, atol=1 / 255)
    np.testing.assert_allclose(twin_res[0, 0].numpy(), grey(ideal) - grey(direct), atol=2 / 255)


def test_clipped_crops_are_only_brightened():
    from exposure_cli.training.twins import make_twins

    images = torch.full((32, 3, 8, 8), 0.4)
    images[:, :, :2, :] = 1.0  # a blown band
    _, _, delta = make_twins(images, torch.zeros(32, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert (delta > 0).all()
    _, _, free = make_twins(torch.full((32, 3, 8, 8), 0.4), torch.zeros(32, 1, 8, 8),
                            generator=torch.Generator().manual_seed(0))
    assert (free > 0).any() and (free < 0).any()


def test_ranking_loss_penalises_only_wrong_or_too_small_gaps():
    from exposure_cli.training.twins import ranking_loss

    label_a, label_b = torch.full((1, 1, 4, 4), 0.3), torch.full((1, 1, 4, 4), 0.1)  # b is brighter
    ordered = ranking_loss(torch.full_like(label_a, 0.25), torch.full_like(label_b, 0.05), label_a, label_b)
    reversed_ = ranking_loss(torch.full_like(label_a, 0.05), torch.full_like(label_b, 0.25), label_a, label_b)
    too_close = ranking_loss(torch.full_like(label_a, 0.2), torch.full_like(label_b, 0.18), label_a, label_b)
    assert ordered == 0 and reversed_ > too_close > 0


def test_mean_loss_l2_aims_at_the_mean_not_the_median():
    """For a verdict that is 0 in 3 of 4 photos and 0.4 in the fourth, L1 is minimised at 0 (the median)
    and the squared term at 0.1 (the mean): the L2 variant is what removes shrinkage towards "fine"."""
    import torch

    from exposure_cli.training.loop import exposure_loss

    target = torch.zeros(4, 1, 8, 8)
    target[3] = 0.4

    def best_constant(kind):
        grid = torch.linspace(-0.1, 0.5, 121)
        losses = [exposure_loss(torch.full_like(target, float(c)), target, 1.0, 0.0, kind)[0] for c in grid]
        # the per-pixel L1 is the same for both kinds; compare the full objective's minimiser
        return float(grid[int(torch.stack(losses).argmin())])

    assert best_constant("l1") == pytest.approx(0.0, abs=0.006)
    assert 0.0 < best_constant("l2") <= 0.1
    with pytest.raises(ValueError):
        exposure_loss(target, target, 1.0, 0.0, "l3")


def test_pixel_loss_l2_aims_at_the_mean_of_ambiguous_pixels():
    """Black pixels that are "fine" in 3 of 4 crops and 0.4 under in the fourth: with the mean term off, the
    per-pixel L1 is minimised by 0 (the median), the squared per-pixel term by 0.1 (the mean); the logged
    ``l1`` part stays the plain per-pixel L1 either way."""
    import torch

    from exposure_cli.training.loop import exposure_loss

    target = torch.zeros(4, 1, 8, 8)
    target[3] = 0.4
    grid = torch.linspace(-0.1, 0.5, 121)

    def best_constant(kind):
        losses = [exposure_loss(torch.full_like(target, float(c)), target, 0.0, 0.0, "l1", kind)[0] for c in grid]
        return float(grid[int(torch.stack(losses).argmin())])

    assert best_constant("l1") == pytest.approx(0.0, abs=0.006)
    assert best_constant("l2") == pytest.approx(0.1, abs=0.006)
    loss, parts = exposure_loss(torch.full_like(target, 0.1), target, 0.0, 0.0, "l1", "l2")
    assert parts["l1"] == pytest.approx(0.25 * 0.3 + 0.75 * 0.1, abs=1e-6)
    assert float(loss) == pytest.approx((0.25 * 0.09 + 0.75 * 0.01) / 0.1, abs=1e-5)
    with pytest.raises(ValueError):
        exposure_loss(target, target, 1.0, 0.0, "l1", "huber")


def test_export_last_writes_the_checkpoints_weights_with_a_card(tmp_path):
    from safetensors.torch import load_file

    from exposure_cli.training.export_last import export_last

    data = GlobalShiftDataset(16)
    train(_config(steps=3), data, tmp_path / "run", val_dataset=GlobalShiftDataset(8, seed=1))
    train(_config(steps=5), data, tmp_path / "run", val_dataset=GlobalShiftDataset(8, seed=1))  # resumed
    path = export_last(tmp_path / "run", tmp_path / "last")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    saved = load_file(str(path))
    assert set(saved) == set(state["model"]) and all(torch.equal(saved[k], state["model"][k]) for k in saved)
    loaded = verify_weights(path)  # the card's sha256 is the file's
    assert loaded.card["exported"] == "last" and loaded.card["training"]["steps_done"] == 5
    assert loaded.card["architecture"] == "eat_iea_test" and "validation" not in loaded.card
    # and the analyzer reads it
    (m,) = create_analyzer("eat", weights=tmp_path / "last", device="cpu").analyze_batch(
        [np.full((64, 64, 3), 0.4, np.float32)])
    assert m.shape == (64, 64) and np.isfinite(m).all()
