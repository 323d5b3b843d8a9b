"""The audio job's data path in variants, on the same sessions: where does the single process lose time?

    python3 bench/gpu/job_variants.py MODEL_DIR AUDIO_DIR [--variants default,switch,process]

Runs ``run_job`` (the CLI's job) in this process on the files of AUDIO_DIR,
after a warm-up run, and prints examples/s over each run's wall time:

- ``default``: as the CLI runs it;
- ``switch``: the interpreter's GIL switch interval at 0.5 ms instead of 5 ms;
- ``process``: one device process (``JobOptions(processes=1)``): decoding,
  batching and sessions there, the store here.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from vggish_rt.engine import Embedder
from vggish_rt.engine.inputs import expand_inputs
from vggish_rt.engine.job import JobOptions, run_job


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("audio")
    parser.add_argument("--variants", default="default,switch,process")
    parser.add_argument("--precision", default="fp16")
    arguments = parser.parse_args()
    sources = expand_inputs([arguments.audio])
    embedder = Embedder(arguments.model, precision=arguments.precision)
    interval = sys.getswitchinterval()
    with tempfile.TemporaryDirectory() as work:
        run_job(sources[:200], Path(work) / "warm.npy", embedder, JobOptions())
        for variant in arguments.variants.split(","):
            sys.setswitchinterval(0.0005 if variant == "switch" else interval)
            started = time.perf_counter()
            report = run_job(sources, Path(work) / "out.npy", embedder,
                             JobOptions(processes=1 if variant == "process" else None))
            wall = time.perf_counter() - started
            print(json.dumps({"variant": variant, "examples": report.rows, "wall_s": round(wall, 2),
                              "examples_per_s": round(report.rows / wall, 1)}), flush=True)


if __name__ == "__main__":
    main()
