"""The export benchmark: ``vggish-rt export`` as a user runs it, its wall time,
the peak memory of its whole process tree, and the time of each stage.

    python bench/export.py [--cases demo,v1] [--runs 1] [--work /tmp/export-bench]
                           [--reference DIR] [--out export.json]

Cases:

- ``demo``: ``vggish-rt export --demo`` (writes the seeded demo checkpoint, fits
  the demo PCA params);
- ``v1``: a seeded V1 checkpoint in the released layout (one 289 MB
  ``vggish_model.ckpt``, He-scaled random weights) with a PCA file, exported
  with ``--checkpoint --pca-params``, as a user with the official files does.

Peak RSS is the largest sum, over one sample, of the resident memory of the
command and every descendant (/proc, sampled every 10 ms; a child that lives
less than that can be missed). Stages are the lines the command reports on
stderr, each timed (and its peak taken) from its line to the next. ``--reference DIR``: the
``--work`` of an earlier run (perhaps of older code), whose ``model-<case>``
directories were exported from the same checkpoints (the seeded ones are
always the same): the two manifests are compared whole (every file's sha256,
the parity numbers, the tool versions).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and all its descendants (0 once it is gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def timed_export(arguments: list[str]) -> dict:
    """Run ``vggish-rt export ARGUMENTS``; wall time, peak tree RSS, stages and the exit status."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "vggish_rt.cli", "export", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int]] = []  # (seconds since start, tree RSS bytes)

    def sample() -> None:
        while process.poll() is None:
            samples.append((time.perf_counter() - started, tree_rss(process.pid)))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stages: list[tuple[float, str]] = []
    for line in process.stderr:
        stages.append((time.perf_counter() - started, line.rstrip("\n")))
    stdout = process.stdout.read()
    process.wait()
    wall = time.perf_counter() - started
    sampler.join()
    marks = [(0.0, "start: interpreter and imports"), *stages, (wall, "end")]

    def peak_gb(start: float, end: float) -> float:
        return round(max((rss for at, rss in samples if start <= at < end), default=0) / 1e9, 3)

    return {"wall_s": round(wall, 2), "peak_rss_gb": peak_gb(0.0, wall), "returncode": process.returncode,
            "stages": [{"stage": text, "s": round(marks[i + 1][0] - at, 2), "peak_rss_gb": peak_gb(at, marks[i + 1][0])}
                       for i, (at, text) in enumerate(marks[:-1])],
            "stdout": stdout.strip()}


def seeded_v1(work: Path) -> tuple[Path, Path]:
    """A V1 checkpoint in the released layout (vggish_model.ckpt) and a PCA file, seeded."""
    from vggish_rt.engine.postprocess import pca_params_bytes
    from vggish_rt.export.checkpoint import write_checkpoint
    from vggish_rt.export.demo import demo_variables

    checkpoint, pca = work / "v1" / "vggish_model.ckpt", work / "v1" / "vggish_pca_params.npz"
    if not checkpoint.is_file():
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(checkpoint, demo_variables(seed=7), version=1)
        rng = np.random.default_rng(7)
        pca.write_bytes(pca_params_bytes(rng.standard_normal((128, 128)), rng.standard_normal((128, 1))))
    return checkpoint, pca


def same_manifest(directory: Path, reference: Path) -> bool:
    """Whether two model directories' manifests are equal (files and their sha256, parity, versions)."""
    return (directory / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="demo,v1")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/export-bench"))
    parser.add_argument("--reference", type=Path, help="an earlier run's --work, to compare manifests with")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for case in args.cases.split(","):
        out = args.work / f"model-{case}"
        if case == "demo":
            arguments = ["--demo"]
        else:
            checkpoint, pca = seeded_v1(args.work)
            arguments = ["--checkpoint", str(checkpoint), "--pca-params", str(pca)]
        for run in range(args.runs):
            result = {"case": case, "run": run, **timed_export([*arguments, "--out", str(out)])}
            reference = args.reference / out.name if args.reference else None
            if reference is not None and (reference / "manifest.json").is_file() and result["returncode"] == 0:
                result["same_manifest_as_reference"] = same_manifest(out, reference)
            results.append(result)
            print(f"{case} run {run}: {result['wall_s']} s, peak {result['peak_rss_gb']} GB, exit {result['returncode']}"
                  + (f", same manifest as {reference}: {result['same_manifest_as_reference']}"
                     if "same_manifest_as_reference" in result else ""), flush=True)
            for stage in result["stages"]:
                print(f"    {stage['s']:6.2f} s  {stage['peak_rss_gb']:5.2f} GB  {stage['stage']}")
    record = {"machine": f"{os.cpu_count()} cores", "results": results}
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
