"""The deep-dark order term (exposure_cli.training.order_pairs, docs/MODEL.md stage 40): its pairs are whole
train views of one scene one exposure step apart with their own labels, its hinge orders them, and a run
with it trains, logs it and is moved by it."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_data_corpus import make_corpus  # noqa: E402
from test_data_brackets import stacks_repo  # noqa: E402,F401  (the module's bracket folder fixture)

from exposure_cli.data.brackets import load_stacks  # noqa: E402
from exposure_cli.data.dataset import ExposureDataset  # noqa: E402
from exposure_cli.data.simulator import render_ev  # noqa: E402
from exposure_cli.data.valset import recipe_photos  # noqa: E402
from exposure_cli.training import TrainConfig, train  # noqa: E402
from exposure_cli.training.order_pairs import DEEPEST_STOP, MIN_MARGIN, OrderPairs, order_loss  # noqa: E402
from exposure_cli.training.step_bias import at_working_size  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    return make_corpus(tmp_path, monkeypatch)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


def test_rendered_pairs_are_a_train_photo_one_stop_apart_down_to_the_deepest_stop(corpus) -> None:
    pairs = OrderPairs(corpus, working_long_side=64)
    assert not pairs.bracket_pairs and pairs.bracket_share == 0.0
    renders = {}
    for unit in recipe_photos(corpus, "train"):
        for k in range(DEEPEST_STOP + 1):
            renders[(unit.id, k)] = at_working_size(*render_ev(unit.ideal, -float(k)), 64)
    val_views = [at_working_size(*render_ev(u.ideal, -float(k)), 64)[0]
                 for u in recipe_photos(corpus, "val") for k in range(DEEPEST_STOP + 1)]
    assert val_views  # the corpus has val photos, so "never drawn" is a real check
    rng = np.random.default_rng(0)
    stops = set()
    for _ in range(40):
        pair = pairs.draw(rng)
        dark = [key for key, (img, _) in renders.items() if _same(img, pair.dark)]
        bright = [key for key, (img, _) in renders.items() if _same(img, pair.bright)]
        assert len(dark) == 1 and len(bright) == 1, pair.source
        (photo_d, k_d), (photo_b, k_b) = dark[0], bright[0]
        assert photo_d == photo_b and k_d == k_b + 1, pair.source  # one stop darker, same photo
        assert pair.dark_label == pytest.approx(float(renders[dark[0]][1].mean()), abs=1e-6)
        assert pair.bright_label == pytest.approx(float(renders[bright[0]][1].mean()), abs=1e-6)
        assert pair.dark_label > pair.bright_label
        assert not any(_same(v, pair.dark) or _same(v, pair.bright) for v in val_views)
        stops.add(k_b)
    assert stops == set(range(DEEPEST_STOP))  # 0 … 6 stops under, every one drawn


def test_real_pairs_are_neighbouring_frames_of_train_stacks_only(corpus, stacks_repo) -> None:
    brackets = stacks_repo["out"]
    frames = {(s.id, k): at_working_size(s.frame(k).astype(np.float32) / 255.0, s.label(k), 64)
              for s in load_stacks(brackets, "train") for k in range(len(s.frames))}
    others = [at_working_size(s.frame(k).astype(np.float32) / 255.0, s.label(k), 64)[0]
              for split in ("val", "lockbox") for s in load_stacks(brackets, split) for k in range(len(s.frames))]
    assert others
    pairs = OrderPairs(corpus, working_long_side=64, brackets=brackets, bracket_share=1.0)
    assert len(pairs.bracket_pairs) == sum(len(s.frames) - 1 for s in load_stacks(brackets, "train"))
    seen = set()
    rng = np.random.default_rng(1)
    for _ in range(30):
        pair = pairs.draw(rng)
        dark = [key for key, (img, _) in frames.items() if _same(img, pair.dark)]
        bright = [key for key, (img, _) in frames.items() if _same(img, pair.bright)]
        assert len(dark) == 1 and len(bright) == 1
        assert dark[0][0] == bright[0][0] and dark[0][1] + 1 == bright[0][1]  # neighbours, darker first
        np.testing.assert_allclose(pair.dark_label, frames[dark[0]][1].mean(), atol=1e-5)
        assert not any(_same(o, pair.dark) or _same(o, pair.bright) for o in others)
        seen.add(dark[0])
    assert len(seen) > 1
    mixed = OrderPairs(corpus, working_long_side=64, brackets=brackets, bracket_share=0.5)
    sources = [mixed.draw(np.random.default_rng(s)).source for s in range(30)]
    assert any(s.startswith("bracket ") for s in sources) and any(s.startswith("photo ") for s in sources)
    with pytest.raises(ValueError, match="bracket_share"):
        OrderPairs(corpus, working_long_side=64, brackets=brackets, bracket_share=0.0)


def test_the_hinge_asks_half_the_label_gap_and_at_least_the_floor() -> None:
    dark_labels = torch.tensor([0.30, 0.180, 0.20, 0.10])
    bright_labels = torch.tensor([0.20, 0.177, 0.20, 0.15])  # gaps 0.1, 0.003, 0 (left out), -0.05 (left out)
    dark = torch.tensor([0.28, 0.350, 0.10, 0.10], requires_grad=True)
    bright = torch.tensor([0.25, 0.352, 0.30, 0.30], requires_grad=True)
    loss = order_loss(dark, bright, dark_labels, bright_labels)
    # pair 0: margin 0.05, gap 0.03 → 0.02; pair 1: margin MIN_MARGIN, gap -0.002 → MIN_MARGIN + 0.002
    assert float(loss.detach()) == pytest.approx((0.02 + MIN_MARGIN + 0.002) / 2, abs=1e-6)
    loss.backward()
    assert dark.grad[0] < 0 and bright.grad[0] > 0  # descent raises the darker and lowers the brighter
    assert dark.grad[2] == 0 and dark.grad[3] == 0 and bright.grad[2] == 0
    satisfied = order_loss(torch.tensor([0.40]), torch.tensor([0.30]), torch.tensor([0.30]), torch.tensor([0.20]))
    assert float(satisfied) == 0.0


def test_a_run_with_the_term_logs_it_and_orders_a_pair_it_trains_on(corpus, tmp_path) -> None:
    """A few steps with a strong term on the rendered pairs raise the gap between −k and −(k+1) EV views."""
    from exposure_cli.models import create_model
    from exposure_cli.training.loop import _order_term

    torch.manual_seed(0)
    model = create_model("eat_iea_test")
    config = TrainConfig(architecture="eat_iea_test", steps=1, order_weight=1.0, order_corpus=str(corpus),
                         order_pairs=4, order_long_side=64)
    pairs = OrderPairs(corpus, 64)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    before = [m.running_mean.clone() for m in norms]
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    def gap_sum() -> float:
        rng = np.random.default_rng(5)
        model.eval()
        with torch.no_grad():
            total = 0.0
            for _ in range(8):
                p = pairs.draw(rng)
                out = model(torch.from_numpy(np.stack([p.dark, p.bright])).permute(0, 3, 1, 2))
                total += float(out[0].mean() - out[1].mean())
        model.train()
        return total

    start = gap_sum()
    for _ in range(15):
        term = _order_term(model, pairs, np.random.default_rng(5), config, "cpu", None)
        optimizer.zero_grad()
        term.backward()
        optimizer.step()
    assert gap_sum() > start + 1e-3
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))  # inference statistics untouched

    data = ExposureDataset.from_corpus(corpus, split="train", crop=48, samples_per_epoch=64)
    run = TrainConfig(architecture="eat_iea_test", batch_size=4, lr=1e-3, seed=0, threads=1, log_every_s=0.0,
                      checkpoint_every_s=3600, validate_every_s=3600, steps=2, order_weight=1.0,
                      order_corpus=str(corpus), order_pairs=2, order_long_side=64)
    train(run, data, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("order" in r and r["order"] >= 0.0 for r in records if r["kind"] == "train")
    with pytest.raises(ValueError, match="order_corpus"):
        train(TrainConfig(**{**run.to_dict(), "order_corpus": None}), data, tmp_path / "none")


def test_the_train_command_refuses_the_term_without_a_corpus(tmp_path) -> None:
    from typer.testing import CliRunner

    from exposure_cli.cli import app

    (tmp_path / "folder").mkdir()
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "folder"), "--steps", "1",
                                      "--order-weight", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "not a corpus folder" in result.output


def test_both_terms_share_one_set_of_working_size_frames(corpus, stacks_repo) -> None:
    """The step-bias anchors and the order pairs draw real frames from one BracketViews: each frame is decoded
    and resized once, kept only at the working size, and refused at another size."""
    from exposure_cli.training.step_bias import BracketViews, StepAnchors

    brackets = stacks_repo["out"]
    anchors = StepAnchors(corpus, working_long_side=64, brackets=brackets, bracket_share=1.0)
    pairs = OrderPairs(corpus, working_long_side=64, brackets=anchors.bracket_views, bracket_share=1.0)
    assert pairs.bracket_views is anchors.bracket_views
    rng = np.random.default_rng(2)
    for _ in range(10):
        pair = pairs.draw(rng)
        anchors.draw(rng)
    views = anchors.bracket_views
    assert views._views  # filled by both
    for (stack_id, k), (image, label) in views._views.items():
        stack = next(s for s in views.stacks if s.id == stack_id)
        expected, expected_label = at_working_size(stack.frame(k, keep=False).astype(np.float32) / 255.0,
                                                   stack.label(k, keep=False), 64)
        assert _same(image, expected) and np.allclose(label, expected_label)
    assert not any(s._cache for s in views.stacks)  # full-size frames are not kept
    with pytest.raises(ValueError, match="320 px is needed"):
        OrderPairs(corpus, working_long_side=320, brackets=views)
    assert isinstance(BracketViews.of(brackets, "train", 64), BracketViews)


def test_a_run_with_both_terms_on_the_same_brackets_builds_the_views_once(corpus, stacks_repo, tmp_path, monkeypatch) -> None:
    from exposure_cli.training import step_bias

    built = []
    original = step_bias.BracketViews.__init__

    def counting(self, *args, **kwargs):
        built.append(args)
        original(self, *args, **kwargs)

    monkeypatch.setattr(step_bias.BracketViews, "__init__", counting)
    data = ExposureDataset.from_corpus(corpus, split="train", crop=48, samples_per_epoch=64)
    brackets = str(stacks_repo["out"])
    config = TrainConfig(architecture="eat_iea_test", batch_size=4, lr=1e-3, seed=0, threads=1, log_every_s=0.0,
                         checkpoint_every_s=3600, validate_every_s=3600, steps=1,
                         step_bias_weight=1.0, step_bias_corpus=str(corpus), step_bias_anchors=1,
                         step_bias_long_side=64, step_bias_brackets=brackets, step_bias_bracket_share=1.0,
                         order_weight=1.0, order_corpus=str(corpus), order_pairs=1, order_long_side=64,
                         order_brackets=brackets, order_bracket_share=1.0)
    train(config, data, tmp_path / "run")
    assert len(built) == 1
