"""Inference runtimes for the EAT network: one network, several engines to run it (``--runtime``).

Each runtime takes the loaded PyTorch module and returns a callable ``run(x) -> maps`` on a B×3×H×W
float32 CPU tensor (RGB in [0, 1]) returning B×H×W float32 numpy maps, exactly what the eager module's
first output channel is. Which one is the default was chosen by measurement (``benchmarks/bench_runtimes.py``,
docs/PERFORMANCE.md); every runtime's maps are tested against eager PyTorch within :data:`TOLERANCE`.

* ``eager`` — plain PyTorch (``torch.inference_mode``, channels-last). Needs nothing extra. On the CPU it
  runs the network refolded for inference (``exposure_cli.models.eat_iea_inference``: BatchNorm folded,
  fewer passes over memory; the same maps within 1e-5, tested); elsewhere the trained module as it is.
* ``compile`` — ``torch.compile`` (Inductor). Needs a C++ compiler at run time; compiles once per input
  shape (about a minute on 2 cores).
* ``torchscript`` — ``torch.jit.trace`` + ``torch.jit.freeze``, one trace per input shape.
* ``onnxruntime`` — the network exported to ONNX (opset 17; the EAT blocks' sampling exports as
  ``GridSample``) once per working shape (batch dimension dynamic), run by ONNX Runtime.
  Needs ``pip install 'exposure-cli[onnx]'`` (onnx, onnxruntime).
* ``onnxruntime-int8`` — the same ONNX graph with dynamic int8 quantisation of its MatMul weights
  (``onnxruntime.quantization.quantize_dynamic``, 7-bit weights, the last EAT block's MLP output left in
  float: :func:`int8_float_matmuls`). Same extra.
* ``openvino`` — the ONNX graph compiled by OpenVINO for the CPU. Needs ``pip install 'exposure-cli[openvino]'``.

Exported graphs are kept in memory for the life of the analyzer (a few MB each); export costs a few
seconds per working shape, once per scan.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from enum import Enum
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: Largest absolute difference from eager PyTorch's map (in units of r) any runtime may show; tested.
#: fp32 runtimes agree to ~1e-5; int8 weights move maps by up to a few hundredths.
TOLERANCE = {"fp32": 1e-3, "int8": 0.05}


class Runtime(str, Enum):
    eager = "eager"
    compile = "compile"
    torchscript = "torchscript"
    onnxruntime = "onnxruntime"
    onnxruntime_int8 = "onnxruntime-int8"
    openvino = "openvino"

    @property
    def precision(self) -> str:
        return "int8" if self.value.endswith("int8") else "fp32"


#: The runtime a scan uses unless told otherwise (chosen by measurement, docs/PERFORMANCE.md).
DEFAULT_RUNTIME = Runtime.eager

#: Python modules each runtime needs, and the extra that installs them.
REQUIREMENTS: dict[Runtime, tuple[tuple[str, ...], str | None]] = {
    Runtime.eager: ((), None),
    Runtime.compile: ((), None),
    Runtime.torchscript: ((), None),
    Runtime.onnxruntime: (("onnx", "onnxruntime"), "onnx"),
    Runtime.onnxruntime_int8: (("onnx", "onnxruntime"), "onnx"),
    Runtime.openvino: (("onnx", "openvino"), "openvino"),
}


class RuntimeUnavailable(RuntimeError):
    """The runtime's packages are not installed; the message says what to install."""


def missing_modules(runtime: Runtime | str) -> list[str]:
    runtime = Runtime(runtime)
    return [m for m in REQUIREMENTS[runtime][0] if importlib.util.find_spec(m) is None]


def check_available(runtime: Runtime | str) -> Runtime:
    runtime = Runtime(runtime)
    missing = missing_modules(runtime)
    if missing:
        extra = REQUIREMENTS[runtime][1]
        raise RuntimeUnavailable(
            f"runtime {runtime.value!r} needs {', '.join(missing)}: pip install 'exposure-cli[{extra}]'"
        )
    return runtime


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def _export_onnx(model: Any, shape: tuple[int, int], folder: Path) -> Path:
    import torch

    path = folder / f"eat_{shape[0]}x{shape[1]}.onnx"
    x = torch.rand(2, 3, *shape)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["rgb"],
                          output_names=["residual"], dynamic_axes={"rgb": {0: "batch"}, "residual": {0: "batch"}})
    return path


def int8_float_matmuls(onnx_path: Path) -> list[str]:
    """The MatMul nodes the int8 runtime leaves in float: the last EAT block's MLP output projection.

    Its input is the MLP's hidden layer after GELU in the last block, whose outliers set the dynamic
    per-tensor activation scale: quantised alone it moved the shipped weights' maps of the sample photos
    by up to 0.076, every other MatMul by at most 0.020 (``benchmarks/int8_sensitivity.py --per-node``).
    With it in float and 7-bit weights (``reduce_range``) the maps of the sample photos move by at most
    0.028 for each of three weights files, where quantising every MatMul at 8 bits moved them by up to
    0.071, past the runtime's stated 0.05 (docs/PERFORMANCE.md, "int8 that keeps its tolerance").
    Empty for a graph without EAT blocks.
    """
    import re

    import onnx

    pattern = re.compile(r"^/eat\.(\d+)/mlp/mlp\.2/MatMul$")
    found = [(int(m.group(1)), node.name) for node in onnx.load(str(onnx_path)).graph.node
             if node.op_type == "MatMul" and (m := pattern.match(node.name))]
    return [max(found)[1]] if found else []


class _PerShape:
    """A runtime that prepares one engine per input (H, W) on first use (batch stays dynamic)."""

    def __init__(self, model: Any, runtime: Runtime, device: str = "cpu") -> None:
        self.model = model
        self.runtime = runtime
        self.device = device
        self.engines: dict[tuple[int, int], Callable[[Any], np.ndarray]] = {}
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def folder(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="exposure-onnx-")
        return Path(self._tmp.name)

    def __call__(self, x: Any) -> np.ndarray:
        key = (int(x.shape[-2]), int(x.shape[-1]))
        engine = self.engines.get(key)
        if engine is None:
            engine = self.engines[key] = self._build(key, x)
        return engine(x)

    def _build(self, shape: tuple[int, int], x: Any) -> Callable[[Any], np.ndarray]:
        rt = self.runtime
        if rt is Runtime.torchscript:
            import torch

            with torch.no_grad():
                traced = torch.jit.trace(self.model, x, check_trace=False)
                traced = torch.jit.freeze(traced.eval())

            def run_ts(t):
                with torch.inference_mode():
                    return traced(t)[:, 0].float().clamp(-1, 1).cpu().numpy()

            return run_ts
        onnx_path = _export_onnx(self.model, shape, self.folder)
        threads = _threads()
        if rt in (Runtime.onnxruntime, Runtime.onnxruntime_int8):
            import onnxruntime as ort

            if rt is Runtime.onnxruntime_int8:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                q_path = onnx_path.with_suffix(".int8.onnx")
                # MatMuls only, as documented: left to its default op list, quantize_dynamic also makes
                # every Conv a ConvInteger, which ONNX Runtime's CPU kernels run 3-4 x slower than fp32
                # and which moved the maps by up to 0.10 (docs/PERFORMANCE.md, "int8"). 7-bit weights
                # (reduce_range) and the last block's MLP output left in float: see int8_float_matmuls
                quantize_dynamic(str(onnx_path), str(q_path), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul"], reduce_range=True,
                                 nodes_to_exclude=int8_float_matmuls(onnx_path))
                onnx_path = q_path
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

            def run_ort(t):
                out = session.run(None, {"rgb": np.ascontiguousarray(t.cpu().numpy(), dtype=np.float32)})[0]
                return np.clip(out[:, 0], -1.0, 1.0).astype(np.float32, copy=False)

            return run_ort
        if rt is Runtime.openvino:
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU",
                                          {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                           "INFERENCE_PRECISION_HINT": "f32"})
            request = compiled.create_infer_request()

            def run_ov(t):
                out = request.infer({0: np.ascontiguousarray(t.cpu().numpy(), dtype=np.float32)})
                return np.clip(np.asarray(out[compiled.output(0)])[:, 0], -1.0, 1.0).astype(np.float32)

            return run_ov
        raise ValueError(f"runtime {rt.value!r} is not per-shape")

    def close(self) -> None:
        self.engines.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _eager_module(model: Any, device: str) -> Any:
    """The module the eager runtime calls: on the CPU an EAT-IEA network refolded for inference (a copy;
    `model` is untouched), anything else as it is."""
    from .models.eat_iea import EATIEA
    from .models.eat_iea_inference import fold_for_inference

    if str(device).startswith("cpu") and isinstance(model, EATIEA):
        return fold_for_inference(model)
    return model


def build_runner(model: Any, runtime: Runtime | str, device: str = "cpu") -> Callable[[Any], np.ndarray]:
    """A callable ``run(x: B×3×H×W float32 tensor) -> B×H×W numpy maps`` for `runtime`.

    Raises:
        RuntimeUnavailable: the runtime's packages are missing (the message says which extra to install).
        ValueError: the runtime cannot run on `device` (ONNX Runtime, OpenVINO and TorchScript here are CPU-only).
    """
    import torch

    runtime = check_available(runtime)
    if runtime in (Runtime.eager, Runtime.compile):
        net = torch.compile(model) if runtime is Runtime.compile else _eager_module(model, device)

        def run(t):
            with torch.inference_mode():
                return net(t)[:, 0].float().clamp(-1.0, 1.0).cpu().numpy()

        run.model = net  # type: ignore[attr-defined]
        return run
    if not str(device).startswith("cpu"):
        raise ValueError(f"runtime {runtime.value!r} runs on the CPU only; use --runtime eager with --device {device}")
    return _PerShape(model, runtime, device)


def available_runtimes() -> list[Runtime]:
    return [r for r in Runtime if not missing_modules(r)]


__all__ = ["DEFAULT_RUNTIME", "REQUIREMENTS", "Runtime", "RuntimeUnavailable", "TOLERANCE", "available_runtimes",
           "build_runner", "check_available", "missing_modules"]
