"""Average two weights folders of the same architecture: ``(1 − mix) · A + mix · B`` for every tensor.

A weight average ("soup") of two networks from one basin — a run and its continuation — can combine what
each learned (docs/MODEL.md stages 13 and 34). Every floating tensor is averaged, batch-norm running
statistics included; integer buffers (batch norm's step counter) are taken from A. The card is A's, with
``averaged_from`` naming both sources (sha256) and the mix, and without A's validation record.

Run: ``python -m exposure_cli.training.average_weights OUT A B [--mix 0.5]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def average_weights(a: str | Path, b: str | Path, out: str | Path, mix: float = 0.5) -> Path:
    """Write the average of weights `a` and `b` (files or folders) into folder `out`; returns the file."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be within [0, 1], got {mix}")
    from ..weights import load_model, resolve_weights, save_weights, verify_weights

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
    card = json.loads(json.dumps(card_a))
    for key in ("sha256", "validation", "shipped", "candidate_note"):
        card.pop(key, None)
    card["averaged_from"] = {"a": verify_weights(path_a).sha256, "b": verify_weights(path_b).sha256, "mix": mix,
                             "formula": "(1 - mix) * a + mix * b, every floating tensor; integer buffers from a"}
    return save_weights(model_a, out, card)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="weights folder to write")
    ap.add_argument("a", type=Path, help="weights file or folder (its card is kept)")
    ap.add_argument("b", type=Path, help="weights file or folder")
    ap.add_argument("--mix", type=float, default=0.5, help="weight of b (0: a, 1: b)")
    args = ap.parse_args()
    print(average_weights(args.a, args.b, args.out, args.mix))


if __name__ == "__main__":
    main()
