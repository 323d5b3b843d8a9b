"""Where the CPU's float32 time goes, and CPU session settings side by side.

    python bench/cpu_profile.py [--model models/vggish] [--batch 64] [--seconds 8] [--rounds 3]

1. onnxruntime's profiler on the CPU provider: share of kernel time by operator.
2. Rates (examples/s, medians) of one batch of log-mel examples of generated
   audio, the settings in turn, ``--rounds`` times over: a plain session, the
   same with denormals flushed to zero (as TensorFlow's threads do), with its
   intra-op thread pinned, and the engine (Embedder) with its defaults; then
   the engine on 8 batches, with one session of 2 threads (its default) and
   with 2 sessions of 1 thread, each taking whole batches.
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

from cpu_vs_tf import demo_examples, rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=Path("models/vggish"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    from vggish_rt.engine import Embedder
    from vggish_rt.engine.session import onnxruntime

    ort = onnxruntime()
    x = demo_examples(arguments.batch)
    model = (arguments.model / "vggish.onnx").read_bytes()

    def session(profile: bool = False, **config: str):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.enable_profiling = 2, profile
        for key, value in config.items():
            options.add_session_config_entry(key, value)
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    profiled = session(profile=True)
    for _ in range(5):
        profiled.run(None, {"features": x})
    kernel_us: collections.Counter = collections.Counter()
    trace = Path(profiled.end_profiling())
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernel_us[event["args"]["op_name"]] += event["dur"]
    trace.unlink()
    total = sum(kernel_us.values())
    for op, us in kernel_us.most_common():
        print(f"{op:14s} {100 * us / total:5.1f}% of kernel time")

    embedder = Embedder(arguments.model, device="cpu", batch_size=arguments.batch)
    settings = {"plain session": session(), "denormals as zero": session(**{"session.set_denormal_as_zero": "1"}),
                "thread pinned": session(**{"session.intra_op_thread_affinities": "2"})}
    runs = {name: (lambda s=s: s.run(None, {"features": x})) for name, s in settings.items()}
    runs["engine (Embedder)"] = lambda: embedder.embed_examples(x)
    for round_number in range(arguments.rounds):
        print(round_number, "  ".join(f"{name}: {rate(run, arguments.batch, arguments.seconds):.1f}"
                                      for name, run in runs.items()), flush=True)
    batches = np.concatenate([x] * 8)
    engines = {"engine, 1 session x 2 threads": embedder,
               "engine, 2 sessions x 1 thread": Embedder(arguments.model, device="cpu", batch_size=arguments.batch,
                                                         sessions_per_device=2, threads=1)}
    for round_number in range(arguments.rounds):
        print(round_number, "  ".join(f"{name}: {rate(lambda e=e: e.embed_examples(batches), len(batches), arguments.seconds):.1f}"
                                      for name, e in engines.items()), flush=True)


if __name__ == "__main__":
    main()
