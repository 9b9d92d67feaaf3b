"""How far int8 dynamic quantisation moves the maps of real photos, per MatMul and per configuration.

    python benchmarks/int8_sensitivity.py [--weights W] [--size 240x320] [--per-node]

Input: the shipped sample photos (``exposure samples``), area-resized to the working size, as one batch
(dynamic quantisation scales activations per tensor over the batch). Reference: the eager network in float32.
For each configuration (8- or 7-bit weights, per-tensor or per-channel, which MatMuls stay in float) it
prints the largest and mean |Δ| of the maps; ``--per-node`` also quantises each weight MatMul alone and
lists the ten that move the maps most. The int8 runtime's choice is the row ``runtime``
(:func:`exposure_cli.runtimes.int8_float_matmuls`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="weights file or folder (default: the shipped ones)")
    parser.add_argument("--size", default="240x320", help="HxW the photos are shown at")
    parser.add_argument("--per-node", action="store_true", help="also quantise each weight MatMul alone")
    args = parser.parse_args(argv)

    import cv2
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from exposure_cli import runtimes
    from exposure_cli.commands.samples import samples_dir
    from exposure_cli.weights import load_model, resolve_weights

    torch.set_num_threads(1)
    h, w = (int(v) for v in args.size.split("x"))
    model, _ = load_model(resolve_weights(args.weights), "cpu")
    photos = sorted(samples_dir().glob("*.jpg"))
    rgb = [cv2.resize(cv2.imread(str(p))[..., ::-1], (w, h), interpolation=cv2.INTER_AREA) for p in photos]
    x = torch.from_numpy(np.stack(rgb).astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    with torch.inference_mode():
        ref = model(x)[:, 0].clamp(-1, 1).numpy()
    folder = Path(tempfile.mkdtemp(prefix="int8-sensitivity-"))
    fp32 = runtimes._export_onnx(model, (h, w), folder)
    graph = onnx.load(str(fp32)).graph
    inits = {t.name for t in graph.initializer}
    weight_matmuls = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits]

    def moved(reduce_range: bool, per_channel: bool = False, only: list[str] | None = None,
              exclude: list[str] | None = None) -> tuple[float, float]:
        q = folder / "q.onnx"
        quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         per_channel=per_channel, reduce_range=reduce_range, nodes_to_quantize=only,
                         nodes_to_exclude=exclude)
        session = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
        got = np.clip(session.run(None, {"rgb": x.numpy()})[0][:, 0], -1, 1)
        d = np.abs(got - ref)
        return float(d.max()), float(d.mean())

    kept = runtimes.int8_float_matmuls(fp32)
    print(f"{len(photos)} sample photos at {h}×{w}; {len(weight_matmuls)} weight MatMuls; the runtime keeps {kept} in float")
    print("| configuration | max |Δ| | mean |Δ| |")
    print("|---|---|---|")
    for name, kwargs in [("8-bit, every MatMul (before 2026-12-05)", dict(reduce_range=False)),
                         ("8-bit per channel, every MatMul", dict(reduce_range=False, per_channel=True)),
                         ("7-bit, every MatMul", dict(reduce_range=True)),
                         ("8-bit, runtime's float MatMuls kept", dict(reduce_range=False, exclude=kept)),
                         ("runtime: 7-bit, its float MatMuls kept", dict(reduce_range=True, exclude=kept))]:
        mx, mean = moved(**kwargs)
        print(f"| {name} | {mx:.4f} | {mean:.5f} |")
    if args.per_node:
        rows = sorted(((*moved(True, only=[n]), n) for n in weight_matmuls), reverse=True)
        print("\n| MatMul quantised alone (7-bit) | max |Δ| | mean |Δ| |")
        print("|---|---|---|")
        for mx, mean, n in rows[:10]:
            print(f"| `{n}` | {mx:.4f} | {mean:.5f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
