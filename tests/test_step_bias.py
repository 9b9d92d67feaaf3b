"""The per-step bias term (exposure_cli.training.step_bias): its renders, its running biases, its gradient,
and a training run that carries them through a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_data_corpus import make_corpus  # noqa: E402
from test_data_dataset import _add_hdr_crop  # noqa: E402

from exposure_cli.data.dataset import ExposureDataset  # noqa: E402
from exposure_cli.data.valset import render_items  # noqa: E402
from exposure_cli.imageops import to_working_size  # noqa: E402
from exposure_cli.training import TrainConfig, train  # noqa: E402
from exposure_cli.training.loop import L2_SCALE  # noqa: E402
from exposure_cli.training.step_bias import (  # noqa: E402
    BRACKET_WINDOW, RunningCellBias, StepAnchors, bracket_cell, step_bias_loss)
from exposure_cli.data.brackets import load_stacks  # noqa: E402
from test_data_brackets import stacks_repo  # noqa: E402,F401  (the module's bracket folder fixture)

torch.set_num_threads(1)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    out = make_corpus(tmp_path, monkeypatch)
    _add_hdr_crop(out, "train")
    return out


def test_anchors_are_the_validation_recipe_on_train_photos_only(corpus) -> None:
    anchors = StepAnchors(corpus, working_long_side=64)
    renders = {split: [(item, to_working_size(item.image, 64)) for item in render_items(corpus, split)
                       if item.kind != "simulated"] for split in ("train", "val")}
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        anchor = anchors.draw(rng)
        seen.add(anchor.cell)
        assert anchor.cell in anchors.cells
        assert max(anchor.image.shape[:2]) == 64 and anchor.label.shape == anchor.image.shape[:2]
        group, rest = anchor.cell.split(" ", 1)
        kind, ev = ("original", 0.0) if rest == "original" else ("sweep", float(rest.split()[0]))
        same = [(item, small) for item, small in renders["train"]
                if item.group == group and item.kind == kind and float(item.ev) == ev]
        match = [item for item, small in same if small.shape == anchor.image.shape and np.array_equal(small, anchor.image)]
        assert match, f"{anchor.cell}: not one of the train renders of the validation recipe"
        assert not any(small.shape == anchor.image.shape and np.array_equal(small, anchor.image)
                       for _, small in renders["val"])
        if kind == "original":
            assert not anchor.label.any()
        elif group == "photo":
            assert np.sign(anchor.label.mean()) == -np.sign(ev)  # brighter → over (r < 0)
    assert {"photo original", "photo -3 EV", "photo +3 EV", "hdr original", "hdr +0 EV"} <= seen
    assert len(anchors.cells) == 15


def test_running_bias_is_a_plain_mean_then_an_exponential_average() -> None:
    running = RunningCellBias(rate=0.25)
    for value in (1.0, 2.0, 3.0, 4.0):
        running.update("photo +1 EV", value)
    assert running.bias["photo +1 EV"] == pytest.approx(2.5)
    assert running.update("photo +1 EV", 10.0) == pytest.approx(0.75 * 2.5 + 0.25 * 10.0)
    running.update("hdr -3 EV", -7.0)
    assert running.largest() == pytest.approx(7.0)
    again = RunningCellBias.from_json(running.to_json())
    assert again.bias == running.bias and again.count == running.count and again.rate == 0.25
    with pytest.raises(ValueError):
        RunningCellBias(rate=0.0)


def test_the_term_moves_each_render_against_its_cells_bias() -> None:
    running = RunningCellBias(rate=0.01)
    for _ in range(200):
        running.update("photo +3 EV", 0.1)
        running.update("photo -3 EV", -0.05)
    pred = torch.tensor([0.3, 0.4, 0.2], requires_grad=True)
    label = torch.tensor([0.2, 0.45, 0.2])
    cells = ["photo +3 EV", "photo -3 EV", "hdr original"]
    step_bias_loss(pred, label, cells, running, L2_SCALE).backward()
    b = [running.bias[c] for c in cells]
    assert b[0] > 0 and b[1] < 0 and b[2] == 0.0  # a new cell's first image sets its bias: 0 here
    assert pred.grad.tolist() == pytest.approx([v / (3 * L2_SCALE) for v in b])
    assert pred.grad[0] > 0 and pred.grad[1] < 0 and pred.grad[2] == 0  # descent lowers the over-read cell
    with pytest.raises(ValueError, match="cells"):
        step_bias_loss(pred, label, cells[:2], running, L2_SCALE)


def test_a_run_with_the_term_logs_and_checkpoints_its_biases_and_resumes_them(corpus, tmp_path) -> None:
    data = ExposureDataset.from_corpus(corpus, split="train", crop=48, samples_per_epoch=64)
    config = dict(architecture="eat_iea_test", batch_size=4, lr=1e-3, seed=0, threads=1, log_every_s=0.0,
                  checkpoint_every_s=3600, validate_every_s=3600, step_bias_weight=2.0,
                  step_bias_corpus=str(corpus), step_bias_anchors=3, step_bias_long_side=64)
    train(TrainConfig(steps=3, **config), data, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    first = RunningCellBias.from_json(state["step_bias_json"])
    assert sum(first.count.values()) == 9
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert train_records[-1]["step_bias"] == pytest.approx(first.bias)
    assert train_records[-1]["step_bias_largest"] >= 0.0

    train(TrainConfig(steps=5, **config), data, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert sum(RunningCellBias.from_json(state["step_bias_json"]).count.values()) == 15  # 9 kept + 2 steps × 3

    with pytest.raises(ValueError, match="step_bias_corpus"):
        train(TrainConfig(steps=1, **{**config, "step_bias_corpus": None}), data, tmp_path / "none")


def test_the_term_reads_batch_norm_as_inference_does_and_leaves_its_statistics_alone(corpus, tmp_path) -> None:
    from exposure_cli.models import create_model
    from exposure_cli.training.loop import _step_bias_term

    torch.manual_seed(0)
    model = create_model("eat_iea_test").train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms
    before = [m.running_mean.clone() for m in norms]
    config = TrainConfig(architecture="eat_iea_test", steps=1, step_bias_weight=1.0, step_bias_corpus=str(corpus),
                         step_bias_anchors=2, step_bias_long_side=64)
    anchors, running = StepAnchors(corpus, 64), RunningCellBias()
    term = _step_bias_term(model, anchors, running, np.random.default_rng(1), config, "cpu", None)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))
    assert all(m.training for m in norms)  # back in training mode afterwards
    # the same renders through the model in eval mode give the biases the term recorded
    model.eval()
    rng = np.random.default_rng(1)
    replay = RunningCellBias()
    with torch.no_grad():
        for _ in range(2):
            a = anchors.draw(rng)
            pred = float(model(torch.from_numpy(a.image).permute(2, 0, 1)[None]).mean())
            replay.update(a.cell, pred - float(a.label.mean()))
    assert replay.count == running.count and replay.bias == pytest.approx(running.bias, abs=1e-5)
    assert torch.isfinite(term)


def test_the_train_command_refuses_the_term_without_a_corpus(tmp_path) -> None:
    from typer.testing import CliRunner

    from exposure_cli.cli import app

    (tmp_path / "folder").mkdir()
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "folder"), "--steps", "1",
                                      "--step-bias-weight", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "not a corpus folder" in result.output



def test_bracket_cells_round_the_stop_from_the_best_frame() -> None:
    assert bracket_cell(-2.06) == "bracket -2 EV" and bracket_cell(0.4) == "bracket +0 EV"
    assert bracket_cell(2.6) == "bracket +3 EV" and bracket_cell(-0.2) == "bracket +0 EV"


def test_bracket_anchors_are_whole_real_train_frames_in_the_cell_of_their_stop(corpus, stacks_repo, monkeypatch) -> None:
    """With brackets, a share of the term's draws are real *train* bracket frames within ±3 EV of their best
    frame, whole at the working size with their own labels, in the cell of their rounded stop from the best
    frame (stage 37); nothing of val or the lockbox is drawn."""
    import cv2

    brackets = stacks_repo["out"]
    train_frames = {}
    for stack in load_stacks(brackets, "train"):
        for k, rel in enumerate(stack.relative_ev_to_best):
            small = to_working_size(stack.frame(k).astype(np.float32) / 255.0, 64)
            label = cv2.resize(stack.label(k), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
            train_frames[(stack.id, k)] = (small, label, bracket_cell(rel), abs(rel) <= BRACKET_WINDOW)
    others = [to_working_size(s.frame(k).astype(np.float32) / 255.0, 64)
              for split in ("val", "lockbox") for s in load_stacks(brackets, split) for k in range(len(s.frames))]
    assert others  # the fixture has val and lockbox stacks, so "never drawn" is a real check

    anchors = StepAnchors(corpus, working_long_side=64, brackets=brackets, bracket_share=1.0)
    expected_cells = {cell for _, _, cell, inside in train_frames.values() if inside}
    assert set(anchors.bracket_frames) == expected_cells and expected_cells <= set(anchors.cells)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        anchor = anchors.draw(rng)
        assert anchor.cell.startswith("bracket ")
        match = [key for key, (small, label, cell, inside) in train_frames.items()
                 if small.shape == anchor.image.shape and np.array_equal(small, anchor.image)]
        assert len(match) == 1, "not one of the train stacks' frames at the working size"
        small, label, cell, inside = train_frames[match[0]]
        assert inside and anchor.cell == cell
        np.testing.assert_allclose(anchor.label, label, atol=1e-6)
        assert not any(o.shape == anchor.image.shape and np.array_equal(o, anchor.image) for o in others)
        seen.add(anchor.cell)
    assert seen == expected_cells  # cells are drawn uniformly, so every one shows up in 40 draws

    mixed = StepAnchors(corpus, working_long_side=64, brackets=brackets, bracket_share=0.5)
    cells = [mixed.draw(np.random.default_rng(s)).cell for s in range(40)]
    assert any(c.startswith("bracket ") for c in cells) and any(not c.startswith("bracket ") for c in cells)
    assert not StepAnchors(corpus, working_long_side=64).bracket_frames  # without brackets: synthetic only
    with pytest.raises(ValueError, match="bracket_share"):
        StepAnchors(corpus, working_long_side=64, brackets=brackets, bracket_share=0.0)
    # frames farther than the window from their best frame are left out (the fixture's frames are 2 EV apart)
    import exposure_cli.training.step_bias as step_bias

    monkeypatch.setattr(step_bias, "BRACKET_WINDOW", 1)
    narrow = StepAnchors(corpus, working_long_side=64, brackets=brackets, bracket_share=1.0)
    assert set(narrow.bracket_frames) == {"bracket +0 EV"}


def test_a_run_with_bracket_anchors_keeps_running_biases_for_their_cells(corpus, stacks_repo, tmp_path) -> None:
    data = ExposureDataset.from_corpus(corpus, split="train", crop=48, samples_per_epoch=64)
    config = TrainConfig(architecture="eat_iea_test", batch_size=4, lr=1e-3, seed=0, threads=1, log_every_s=0.0,
                         checkpoint_every_s=3600, validate_every_s=3600, step_bias_weight=1.0,
                         step_bias_corpus=str(corpus), step_bias_anchors=4, step_bias_long_side=64,
                         step_bias_brackets=str(stacks_repo["out"]), step_bias_bracket_share=1.0, steps=3)
    train(config, data, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    running = RunningCellBias.from_json(state["step_bias_json"])
    assert sum(running.count.values()) == 12 and all(c.startswith("bracket ") for c in running.count)
