"""Where the GPU time goes, and what host copies cost (one GPU, one session).

    python3 bench/gpu/kernels.py MODEL_DIR [--out DIR]

1. GPU-resident throughput: inputs already on the device, IO binding, no host
   copies (the ceiling for host-in/host-out runs), fp32 (TF32) and fp16, with
   and without prefer_nhwc.
2. Kernel breakdown of the fp16 NHWC run from torch.profiler (CUPTI sees every
   CUDA kernel in the process, onnxruntime's included; onnxruntime's own
   profiler records launch times, not kernel times, for the CUDA provider).
3. Host copies: float32 host in/out through the engine's Runner, against a
   float16 boundary (the fp16 graph without its input Cast, host converts).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch  # noqa: F401  (first: its CUDA libraries and CUPTI)
import numpy as np
import onnx

from timing import resident_session, timed
from vggish_rt.engine.runner import Runner
from vggish_rt.engine.session import onnxruntime

BATCH = 1024


def resident_rate(model: bytes, options: dict[str, str], dtype=np.float32, repeats: int = 30) -> tuple[float, object]:
    session, binding = resident_session(model, options, BATCH, dtype)
    return timed(lambda: session.run_with_iobinding(binding), torch.cuda.synchronize, BATCH, repeats, runs=1), (session, binding)


def half_boundary(model: bytes) -> bytes:
    """The fp16 graph taking float16 ``features``: its input Cast removed."""
    proto = onnx.load_from_string(model)
    cast = next(n for n in proto.graph.node if n.op_type == "Cast" and n.input[0] == "features")
    proto.graph.node.remove(cast)
    for node in proto.graph.node:
        node.input[:] = ["features" if name == cast.output[0] else name for name in node.input]
    proto.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    return proto.SerializeToString()


def host_rate(runner: Runner, dtype, batches: int = 40) -> float:
    x = np.random.default_rng(0).normal(-2, 1.5, (BATCH * 4, 96, 64)).astype(np.float32)
    runner(x[:BATCH].astype(dtype))
    started = time.perf_counter()
    for i in range(batches):
        part = x[(i % 4) * BATCH : (i % 4 + 1) * BATCH]
        runner(part.astype(dtype) if dtype != np.float32 else part)
    return BATCH * batches / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--rewrite", action="store_true", help="apply engine.graph.pool_before_bias_relu first")
    arguments = parser.parse_args()
    fp32 = (arguments.model / "vggish.onnx").read_bytes()
    fp16 = (arguments.model / "vggish.fp16.onnx").read_bytes()
    if arguments.rewrite:
        from vggish_rt.engine.graph import pool_before_bias_relu

        fp32, fp16 = pool_before_bias_relu(fp32), pool_before_bias_relu(fp16)
    results = {}
    for name, model in (("fp32", fp32), ("fp16", fp16)):
        for nhwc in ("0", "1"):
            rate, _ = resident_rate(model, {"prefer_nhwc": nhwc})
            results[f"resident {name} nhwc={nhwc}"] = rate
            print(f"GPU-resident {name} prefer_nhwc={nhwc}: {rate:,.0f} examples/s", flush=True)
    half_in = half_boundary(fp16)
    rate, _ = resident_rate(half_in, {"prefer_nhwc": "1"}, np.float16)
    results["resident fp16 half-input nhwc=1"] = rate
    print(f"GPU-resident fp16, float16 input: {rate:,.0f} examples/s", flush=True)

    _, (session, binding) = resident_rate(fp16, {"prefer_nhwc": "1"}, repeats=1)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            session.run_with_iobinding(binding)
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70)
    (arguments.out / "kernels_fp16_nhwc.txt").write_text(table)
    print(table[:6000], flush=True)

    for label, model, dtype in (("fp16 float32-in", fp16, np.float32), ("fp16 float16-in", half_in, np.float16),
                                ("fp32 float32-in", fp32, np.float32)):
        runner = Runner(model, "features", (96, 64), BATCH, "cuda", 0, cuda_options={"prefer_nhwc": "1"})
        runner._staging = runner._staging.astype(dtype)
        if dtype == np.float16:
            ort = onnxruntime()
            runner._input = ort.OrtValue.ortvalue_from_shape_and_type([BATCH, 96, 64], np.float16, "cuda", 0)
            runner._binding.bind_ortvalue_input("features", runner._input)
        rate = host_rate(runner, dtype)
        results[f"host {label}"] = rate
        print(f"host in/out, one session, {label}: {rate:,.0f} examples/s", flush=True)
    (arguments.out / "profile.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
