"""Export a run's *last* weights (its ``checkpoint.pt``) as a weights folder with a card.

``best/`` holds the weights the run's own validation chose; a selection rule that names "the last weights"
(docs/MODEL.md) needs those too. The card is the run's ``best/card.json`` with the training record of the
last step (``training.steps_done`` …) and ``"exported": "last"``; without a ``best/`` card it is built from
the checkpoint's architecture and the model's config.

Run: ``python -m exposure_cli.training.export_last runs/NAME OUT_DIR``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def export_last(run: str | Path, out: str | Path) -> Path:
    """Write ``model.safetensors`` + ``card.json`` of the run's checkpoint into `out`; returns the file."""
    import torch

    from ..models import create_model, model_config
    from ..weights import CARD_FILE, make_card, save_weights
    from .loop import CHECKPOINT_FILE

    run = Path(run)
    state = torch.load(run / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    best_card = run / "best" / CARD_FILE
    card: dict[str, Any]
    if best_card.is_file():
        card = json.loads(best_card.read_text(encoding="utf-8"))
        card.pop("sha256", None)
        card.pop("validation", None)
    else:
        card = make_card(state["architecture"], model_config(state["architecture"]), 0)
    model = create_model(card["architecture"], card.get("config"))
    model.load_state_dict(state["model"], strict=True)
    card["parameters"] = sum(p.numel() for p in model.parameters())
    training = dict(card.get("training") or {})
    training.update(steps_done=int(state["step"]), minutes_done=round(float(state["elapsed_s"]) / 60, 2))
    card["training"] = training
    card["exported"] = "last"
    return save_weights(model, out, card)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="run folder (holds checkpoint.pt)")
    ap.add_argument("out", type=Path, help="weights folder to write")
    args = ap.parse_args()
    print(export_last(args.run, args.out))


if __name__ == "__main__":
    main()
