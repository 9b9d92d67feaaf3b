"""Weight averages of two weights folders (docs/MODEL.md stages 34 and 35)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from exposure_cli.models import create_model, model_config  # noqa: E402
from exposure_cli.training.average_weights import average_weights, recompute_batch_norm  # noqa: E402
from exposure_cli.weights import load_model, make_card, save_weights  # noqa: E402

ARCH = "eat_iea_test"


def _weights(folder, seed):
    torch.manual_seed(seed)
    model = create_model(ARCH, model_config(ARCH))
    for m in model.modules():  # distinct running statistics, as two trained networks have
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    save_weights(model, folder, make_card(ARCH, model_config(ARCH), 0))
    return model


def test_the_average_is_the_mix_of_every_floating_tensor_and_the_card_names_both(tmp_path):
    a = _weights(tmp_path / "a", 0).state_dict()
    b = _weights(tmp_path / "b", 1).state_dict()
    for mix in (0.0, 0.25, 1.0):
        path = average_weights(tmp_path / "a", tmp_path / "b", tmp_path / f"m{mix}", mix=mix)
        got, loaded = load_model(path, "cpu")
        for name, tensor in got.state_dict().items():
            if tensor.is_floating_point():
                torch.testing.assert_close(tensor, a[name] * (1 - mix) + b[name] * mix)
            else:
                assert torch.equal(tensor, a[name])  # batch norm's step counter: a's
        card = json.loads((path.parent / "card.json").read_text())
        assert card["averaged_from"]["mix"] == mix and "batch_norm_recomputed" not in card["averaged_from"]
        assert card["averaged_from"]["a"] != card["averaged_from"]["b"]
    with pytest.raises(ValueError, match="mix"):
        average_weights(tmp_path / "a", tmp_path / "b", tmp_path / "bad", mix=1.5)


def test_recomputed_batch_norm_statistics_are_the_plain_mean_over_the_training_batches(tmp_path, monkeypatch):
    from test_data_corpus import make_corpus

    corpus = make_corpus(tmp_path, monkeypatch)
    model = _weights(tmp_path / "w", 0)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    first = norms[0]
    captured = []
    first.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().clone()))
    seen = recompute_batch_norm(model, corpus, None, batches=3, batch_size=2)
    assert seen == 6 and not model.training
    inputs = torch.cat(captured)  # what the first batch-norm layer saw, 3 batches of 2
    expected_mean = inputs.mean(dim=(0, 2, 3))
    torch.testing.assert_close(first.running_mean, expected_mean, rtol=1e-4, atol=1e-5)
    for name, tensor in model.state_dict().items():  # only batch-norm statistics changed
        if "running_" not in name and "num_batches_tracked" not in name:
            assert torch.equal(tensor, before[name]), name
    assert int(first.num_batches_tracked) == 3 and first.momentum == 0.1
