"""Engine throughput on GPUs across configurations, side by side in one run.

    python3 bench/gpu/sweep.py MODEL_DIR [--seconds S] [--out results.jsonl]

Host float32 arrays in, embeddings back in host memory (engine.bench). Prints
a table; writes one JSON object a configuration.
"""
from __future__ import annotations

import argparse
import json
import sys

from vggish_rt.engine.bench import benchmark
from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.session import cuda_device_count


def configurations(gpus: int) -> list[dict]:
    base = []
    for precision in ("fp32", "fp16"):  # the exact graph rewrite (engine.graph) on and off
        for rewrite in (False, True):
            for nhwc in ("0", "1"):
                base.append({"precision": precision, "prefer_nhwc": nhwc, "sessions": 2, "batch": 1024, "rewrite": rewrite})
    for precision in ("fp32", "fp16"):
        for nhwc in ("0", "1"):
            for sessions in (1, 2):
                base.append({"precision": precision, "prefer_nhwc": nhwc, "sessions": sessions, "batch": 1024})
        for batch in (512, 2048):
            base.append({"precision": precision, "prefer_nhwc": "1", "sessions": 2, "batch": batch})
        base.append({"precision": precision, "prefer_nhwc": "1", "sessions": 3, "batch": 1024})
        base.append({"precision": precision, "prefer_nhwc": "1", "sessions": 2, "batch": 1024, "input": "windows"})
        base.append({"precision": precision, "prefer_nhwc": "1", "sessions": 2, "batch": 1024, "tf32": "0"})
        if gpus > 1:
            for sessions in (2, 3):
                base.append({"precision": precision, "prefer_nhwc": "1", "sessions": sessions, "batch": 1024, "gpus": gpus})
    return base


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", default=None, help="run configurations whose JSON contains this text")
    arguments = parser.parse_args()
    gpus = cuda_device_count()
    results = []
    for config in configurations(gpus):
        if arguments.only and arguments.only not in json.dumps(config):
            continue
        device = "cuda:" + ",".join(str(i) for i in range(config.get("gpus", 1)))
        options = {"prefer_nhwc": config["prefer_nhwc"]}
        if "tf32" in config:
            options["use_tf32"] = config["tf32"]
        embedder = Embedder(arguments.model, device=device, precision=config["precision"], batch_size=config["batch"],
                            cuda_options=options, sessions_per_device=config["sessions"],
                            gpu_rewrites=config.get("rewrite", True))
        kind = config.get("input", "examples")
        result = {**config, **benchmark(embedder, arguments.seconds, kind)}
        results.append(result)
        print(f"{result['examples_per_s']:>10,.0f}  {json.dumps(config)}", flush=True)
        del embedder
    if arguments.out:
        with open(arguments.out, "w") as f:
            for result in results:
                f.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
