"""Average two weights folders of the same architecture: ``(1 − mix) · A + mix · B`` for every tensor.

A weight average ("soup") of two networks from one basin — a run and its continuation — can combine what
each learned (docs/MODEL.md stages 13 and 34). Every floating tensor is averaged, batch-norm running
statistics included; integer buffers (batch norm's step counter) are taken from A. A linear average of
running statistics is not the statistics of the averaged network (stage 34 measured how far off it is), so
``recompute_bn`` batches of the corpus training stream can recompute them (as stochastic weight averaging
does): every batch-norm layer reset, then a plain cumulative mean over those batches with only the
batch-norm layers in training mode and no gradient. The card is A's, with ``averaged_from`` naming both
sources (sha256), the mix and the recomputation, and without A's validation record.

Run: ``python -m exposure_cli.training.average_weights OUT A B [--mix 0.5] [--recompute-bn N --corpus corpus
--brackets corpus/brackets_n]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


#: The training stream the batch-norm statistics are recomputed on: stage 31's data settings.
BN_STREAM = {"crop": 256, "hdr_share": 0.4, "bracket_share": 0.5,
             "simulator": {"global_ev": (-8.0, 4.0), "p_original": 0.2}}


def recompute_batch_norm(model, corpus: str | Path, brackets: str | Path | None, batches: int,
                         batch_size: int = 16, seed: int = 35) -> int:
    """Reset every batch-norm layer of `model` and set its running statistics to the plain mean over
    `batches` training batches (train split only); returns how many crops were seen."""
    import torch
    from torch.utils.data import DataLoader

    from .loop import to_tensor_batch
    from .sources import open_datasets

    train, _, _ = open_datasets(corpus, crop=BN_STREAM["crop"], seed=seed, samples_per_epoch=batches * batch_size,
                                simulator=BN_STREAM["simulator"], hdr_share=BN_STREAM["hdr_share"],
                                brackets=brackets, bracket_share=BN_STREAM["bracket_share"] if brackets else 0.0,
                                with_val=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    generator = torch.Generator().manual_seed(seed)
    seen = 0
    with torch.no_grad():
        for batch in DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator):
            images, _ = to_tensor_batch(batch, "cpu")
            model(images)
            seen += images.shape[0]
            if seen >= batches * batch_size:
                break
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return seen


def average_weights(a: str | Path, b: str | Path, out: str | Path, mix: float = 0.5, recompute_bn: int = 0,
                    corpus: str | Path = "corpus", brackets: str | Path | None = None) -> Path:
    """Write the average of weights `a` and `b` (files or folders) into folder `out`; returns the file."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be within [0, 1], got {mix}")
    from ..weights import load_model, resolve_weights, save_weights

    path_a, path_b = resolve_weights(a), resolve_weights(b)
    model_a, loaded_a = load_model(path_a, "cpu")
    model_b, loaded_b = load_model(path_b, "cpu")
    card_a, card_b = loaded_a.card, loaded_b.card
    if (card_a.get("architecture"), card_a.get("config")) != (card_b.get("architecture"), card_b.get("config")):
        raise ValueError("the two weights have different architectures or configs; they cannot be averaged")
    state_b = model_b.state_dict()
    averaged = {}
    for name, tensor in model_a.state_dict().items():
        other = state_b[name]
        averaged[name] = (tensor * (1.0 - mix) + other * mix).to(tensor.dtype) if tensor.is_floating_point() \
            else tensor.clone()
    model_a.load_state_dict(averaged, strict=True)
    seen = recompute_batch_norm(model_a, corpus, brackets, recompute_bn) if recompute_bn else 0
    card = json.loads(json.dumps(card_a))
    for key in ("sha256", "validation", "shipped", "candidate_note"):
        card.pop(key, None)
    card["averaged_from"] = {"a": loaded_a.sha256, "b": loaded_b.sha256, "mix": mix,
                             "formula": "(1 - mix) * a + mix * b, every floating tensor; integer buffers from a",
                             **({"batch_norm_recomputed": {"crops": seen, "corpus": str(corpus),
                                                           "brackets": str(brackets) if brackets else None,
                                                           "stream": json.loads(json.dumps(BN_STREAM))}}
                                if recompute_bn else {})}
    return save_weights(model_a, out, card)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="weights folder to write")
    ap.add_argument("a", type=Path, help="weights file or folder (its card is kept)")
    ap.add_argument("b", type=Path, help="weights file or folder")
    ap.add_argument("--mix", type=float, default=0.5, help="weight of b (0: a, 1: b)")
    ap.add_argument("--recompute-bn", type=int, default=0, metavar="N",
                    help="recompute batch-norm statistics over N training batches of 16 (0: average them)")
    ap.add_argument("--corpus", type=Path, default=Path("corpus"), help="corpus for --recompute-bn")
    ap.add_argument("--brackets", type=Path, default=None, help="real brackets for --recompute-bn (train stacks)")
    args = ap.parse_args()
    print(average_weights(args.a, args.b, args.out, args.mix, args.recompute_bn, args.corpus, args.brackets))


if __name__ == "__main__":
    main()
