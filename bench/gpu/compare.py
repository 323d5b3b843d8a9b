"""Ours beside PyTorch on one GPU, same random weights, one run (issue #6).

    python3 bench/gpu/compare.py MODEL_DIR [--out results.json] [--compile-mode max-autotune-no-cudagraphs]

MODEL_DIR's vggish.onnx gives the weights to both sides: the PyTorch model is
built from its initializers (Conv, MaxPool, the NHWC flatten, the three fully
connected layers), and checked against onnxruntime's CPU provider first.

Measured (examples/s, median of 5 timings, each closed by a device sync):
- the GPU's float16 matrix rate (an 8192^3 matmul), for the TFLOP/s column;
- ours, GPU-resident (IO binding): fp32 with TF32, strict fp32, fp16; batch 1024;
- ours, host in and out through the Embedder (what a job gets): fp32 and fp16 at
  batch 512, 1024 and 2048;
- PyTorch eager fp16 channels_last, GPU-resident and host in/out (float16 host
  array in, float32 embeddings out);
- torch.compile of the same, GPU-resident and host in/out;
- accuracy: each configuration's embeddings against its side's fp32 on the same
  examples (log-mel of examples/audio's recordings, an example every 0.1 s): min cosine and max abs error; and ours
  fp32 against PyTorch fp32 (the same weights, two engines);
- GPU memory: peak allocated by PyTorch; for onnxruntime, the device's used
  memory after the run (nvml through torch.cuda.mem_get_info).
Also writes onnxruntime's own per-node profile of the fp16 session
(``--ort-profile``), summed by operator type.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch  # first: its CUDA and cuDNN libraries serve onnxruntime too
import numpy as np
import onnx
from onnx import numpy_helper

from timing import resident_rate, timed
from vggish_rt.engine.bench import GFLOP_PER_EXAMPLE, benchmark
from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.graph import pool_before_bias_relu
from vggish_rt.engine.session import onnxruntime

BATCH = 1024


class Permute(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def torch_vggish(onnx_path: Path) -> torch.nn.Sequential:
    """The exported graph as torch modules, weights copied from its initializers (float32, NCHW)."""
    model = onnx.load(str(onnx_path))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers: list[torch.nn.Module] = []
    pending_matmul = None
    for node in model.graph.node:
        if node.op_type == "Conv":
            w, b = weights[node.input[1]], weights[node.input[2]]
            conv = torch.nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
            conv.weight.data, conv.bias.data = torch.from_numpy(w.copy()), torch.from_numpy(b.copy())
            layers.append(conv)
        elif node.op_type == "Relu":
            layers.append(torch.nn.ReLU())
        elif node.op_type == "MaxPool":
            layers.append(torch.nn.MaxPool2d(2, 2))
        elif node.op_type == "Transpose":
            layers.append(Permute())
        elif node.op_type == "Reshape" and layers:
            layers.append(torch.nn.Flatten())
        elif node.op_type == "MatMul":
            pending_matmul = weights[node.input[1]]
        elif node.op_type == "Add" and pending_matmul is not None:
            linear = torch.nn.Linear(*pending_matmul.shape)
            linear.weight.data = torch.from_numpy(pending_matmul.T.copy())
            linear.bias.data = torch.from_numpy(weights[node.input[1]].copy())
            layers.append(linear)
            pending_matmul = None
    return torch.nn.Sequential(*layers)


def matrix_tflops() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    rate = timed(lambda: a @ b, torch.cuda.synchronize, 1, repeats=50)
    return rate * 2 * 8192**3 / 1e12


def accuracy(got: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    got, reference = got.astype(np.float64), reference.astype(np.float64)
    cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    return {"min_cosine": round(float(cosine.min()), 6), "max_abs": float(np.abs(got - reference).max())}


def ort_profile(model: bytes, out: Path) -> dict[str, float]:
    """onnxruntime's profiler on 10 GPU-resident fp16 runs: microseconds per run by operator type."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(out / "ort_profile")
    session = ort.InferenceSession(model, options, providers=[("CUDAExecutionProvider", {"prefer_nhwc": "1"})])
    x = np.random.default_rng(0).normal(-2, 1.5, (BATCH, 96, 64)).astype(np.float32)
    for _ in range(13):
        session.run(None, {"features": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + event["dur"] / 13
    return {op: round(us, 1) for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("compare.json"))
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    parser.add_argument("--seconds", type=float, default=3.0)
    arguments = parser.parse_args()
    sync = torch.cuda.synchronize
    results: dict[str, dict] = {}

    def record(name: str, rate: float, **extra) -> None:
        results[name] = {"examples_per_s": round(rate), "tflops": round(rate * GFLOP_PER_EXAMPLE / 1000, 1), **extra}
        print(f"{rate:>10,.0f}  {name}  {json.dumps(extra)}", flush=True)

    peak = matrix_tflops()
    results["matrix_fp16_tflops"] = {"tflops": round(peak, 1)}
    print(f"float16 matmul: {peak:.0f} TFLOP/s", flush=True)

    from vggish_rt.engine.audio import load_audio
    from vggish_rt.engine.frontend import log_mel_examples
    from vggish_rt.engine.windows import Hop, cut_windows

    recordings = [p for p in sorted(Path("examples/audio").iterdir()) if p.suffix in (".wav", ".oga")]
    examples = np.concatenate([log_mel_examples(cut_windows(load_audio(p), Hop.from_seconds(0.1), pad_short=True))
                               for p in recordings])  # real audio, examples every 0.1 s
    fp32 = (arguments.model / "vggish.onnx").read_bytes()
    fp16 = (arguments.model / "vggish.fp16.onnx").read_bytes()

    # ours: GPU-resident, then host in/out through the Embedder
    ours_reference = Embedder(arguments.model, device="cpu", batch_size=256).embed_examples(examples)
    for name, model, options in (("ours fp32 TF32 resident", fp32, {"prefer_nhwc": "1"}),
                                 ("ours fp32 strict resident", fp32, {"prefer_nhwc": "1", "use_tf32": "0"}),
                                 ("ours fp16 resident", fp16, {"prefer_nhwc": "1"})):
        rate = resident_rate(pool_before_bias_relu(model), options, sync)
        record(name, rate, memory_used_gb=round((lambda f, t: (t - f) / 2**30)(*torch.cuda.mem_get_info()), 1))
    for precision in ("fp32", "fp16"):
        for batch in (512, 1024, 2048):
            embedder = Embedder(arguments.model, device="cuda:0", precision=precision, batch_size=batch)
            rate = benchmark(embedder, arguments.seconds)["examples_per_s"]
            extra = {"batch": batch}
            if batch == 1024:
                extra.update(accuracy(embedder.embed_examples(examples), ours_reference))
            record(f"ours {precision} host in/out batch {batch}", rate, **extra)
            del embedder
    strict = Embedder(arguments.model, device="cuda:0", batch_size=1024, cuda_options={"prefer_nhwc": "1", "use_tf32": "0"})
    record("ours fp32 strict host in/out", benchmark(strict, arguments.seconds)["examples_per_s"], batch=1024,
           **accuracy(strict.embed_examples(examples), ours_reference))
    del strict
    results["ort_profile_fp16_us_per_batch"] = ort_profile(pool_before_bias_relu(fp16), arguments.out.parent)
    print(json.dumps(results["ort_profile_fp16_us_per_batch"]), flush=True)

    # PyTorch: the same weights
    net = torch_vggish(arguments.model / "vggish.onnx").cuda().eval()
    with torch.no_grad():
        torch_fp32 = net(torch.from_numpy(examples).cuda()[:, None]).cpu().numpy()
    results["torch fp32 vs ours fp32 (CPU provider)"] = accuracy(torch_fp32, ours_reference)
    print("torch fp32 vs ours fp32:", results["torch fp32 vs ours fp32 (CPU provider)"], flush=True)
    half = net.half().to(memory_format=torch.channels_last)
    host = np.random.default_rng(0).normal(-2, 1.5, (4 * BATCH, 1, 96, 64)).astype(np.float16)
    device_x = torch.from_numpy(host[:BATCH]).cuda().to(memory_format=torch.channels_last)

    def torch_rates(label: str, module) -> None:
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            rate = timed(lambda: module(device_x), sync, BATCH)
            got = module(torch.from_numpy(examples).cuda().half()[:, None].to(memory_format=torch.channels_last))
            record(f"{label} resident", rate, peak_memory_gb=round(torch.cuda.max_memory_allocated() / 2**30, 1),
                   **accuracy(got.float().cpu().numpy(), torch_fp32))
            counter = iter(range(10**9))

            def host_step() -> None:
                i = next(counter) % 4
                x = torch.from_numpy(host[i * BATCH:(i + 1) * BATCH]).cuda().to(memory_format=torch.channels_last)
                module(x).float().cpu()
            record(f"{label} host in/out", timed(host_step, sync, BATCH))

    torch_rates("torch eager fp16 channels_last", half)
    started = time.perf_counter()
    compiled = torch.compile(half, mode=arguments.compile_mode)
    with torch.no_grad():
        compiled(device_x)
    print(f"torch.compile ({arguments.compile_mode}) took {time.perf_counter() - started:.0f} s", flush=True)
    torch_rates(f"torch.compile {arguments.compile_mode} fp16 channels_last", compiled)
    arguments.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
