"""The audio job's data path in variants, on the same sessions: where does the single process lose time?

    python3 bench/gpu/job_variants.py MODEL_DIR AUDIO_DIR [--variants default,switch,process]

Runs ``run_job`` (the CLI's job) in this process on the files of AUDIO_DIR,
after a warm-up run, and prints examples/s over each run's wall time:

- ``default``: as the CLI runs it;
- ``switch``: the interpreter's GIL switch interval at 0.5 ms instead of 5 ms;
- ``process``: one device process (``JobOptions(processes=1)``): decoding,
  batching and sessions there, the store here;
- ``noindex``: the store writes the values but no index lines (how much the
  main thread's per-row Python costs the others);
- ``onesession``: one session on the GPU instead of two.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from vggish_rt.engine import Embedder, store
from vggish_rt.engine.inputs import expand_inputs
from vggish_rt.engine.job import JobOptions, run_job


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("audio")
    parser.add_argument("--variants", default="default,switch,process,noindex,onesession")
    parser.add_argument("--precision", default="fp16")
    arguments = parser.parse_args()
    sources = expand_inputs([arguments.audio])
    embedders = {False: Embedder(arguments.model, precision=arguments.precision)}
    if "onesession" in arguments.variants:
        embedders[True] = Embedder(arguments.model, precision=arguments.precision, sessions_per_device=1)
    interval = sys.getswitchinterval()
    index_text = store.index_text
    with tempfile.TemporaryDirectory() as work:
        for embedder in embedders.values():
            run_job(sources[:200], Path(work) / "warm.npy", embedder, JobOptions())
        for variant in arguments.variants.split(","):
            store.index_text = (lambda rows: "") if variant == "noindex" else index_text
            embedder = embedders[variant == "onesession"]
            sys.setswitchinterval(0.0005 if variant == "switch" else interval)
            started = time.perf_counter()
            report = run_job(sources, Path(work) / "out.npy", embedder,
                             JobOptions(processes=1 if variant == "process" else None))
            wall = time.perf_counter() - started
            print(json.dumps({"variant": variant, "examples": report.rows, "wall_s": round(wall, 2),
                              "examples_per_s": round(report.rows / wall, 1)}), flush=True)


if __name__ == "__main__":
    main()
