"""Job starts on a GPU, over and over: how often does a start (or its first batches) fail, and with what?

    python3 bench/gpu/stress.py --model /tmp/devmodel --starts 300 [--kinds dat,npy,...] [--parallel 1]
                                [--test-runs 10] [--test-parallel 1] [--work /tmp/stress] [--out stress.json]

Each start is ``vggish-rt embed ...`` in a fresh process on ``--device`` (cuda:0) with the
default two sessions per GPU, fp32 and fp16 alternating, the kinds taken in turn:

- ``dat``: 6,000 float64 log-mel examples in a raw ``.dat`` (the seed's input), ``--batch-size 256``;
- ``npy``: 6,000 float32 examples in a ``.npy``;
- ``wav-soxr``, ``wav-resampy``, ``wav-onnx``: 8 WAV files of 10 s at 48 kHz, with each ``--resampler``
  (``wav-resampy`` where resampy is installed);
- ``resume``: the ``dat`` job killed with SIGKILL once it has committed 1,000 rows, then ``--resume``;
  its output is compared with an uninterrupted run's (both starts are counted);
- ``processes``: the ``dat`` job with ``--processes 2`` (two device processes on the one GPU);
- ``sessions``: not the CLI but ``Embedder(..., extra_sessions_after_s=0).embed_examples`` on the ``dat``
  examples in a fresh process: both sessions of the GPU from the first batch, the start-up of issue 27's
  race (a CLI job this short never starts the second session: engine.embedder.EXTRA_SESSIONS_AFTER_S).

Every output is hashed: outputs of one kind and precision must be byte-identical
across starts (``identical``). Failures are counted by their ``error:`` line with
digits and paths masked. ``--test-runs K`` then runs ``pytest tests/test_gpu.py``
K times (``--test-parallel`` at a time) and counts the green runs. ``--parallel N`` runs N starts at a time (N
processes on the GPU at once); the default, 1, is what a user's job does.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

KINDS = ("dat", "npy", "wav-soxr", "wav-resampy", "wav-onnx", "resume", "processes", "sessions")
EXAMPLES = 6_000
# The ``sessions`` kind: argv = dat, model, device, precision, out.
SESSIONS = ("import sys, numpy as np; from vggish_rt.engine import Embedder; "
            "x = np.fromfile(sys.argv[1]).reshape(-1, 96, 64); "
            "e = Embedder(sys.argv[2], device=sys.argv[3], precision=sys.argv[4], batch_size=256, sessions_per_device=2, extra_sessions_after_s=0); "
            "np.save(sys.argv[5], e.embed_examples(x)); "
            "assert {k[2] for k in e._runners} == {0, 1}, 'the second session never started'")


def make_inputs(work: Path, device: str = "cuda:0") -> dict[str, list[str]]:
    """The inputs of each kind (made once under ``work``), as CLI arguments."""
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    dat, npy, wav = work / "spec.dat", work / "examples.npy", work / "wav48"
    if not dat.is_file():
        rng.normal(-2.0, 1.5, (EXAMPLES, 96, 64)).tofile(dat)
    if not npy.is_file():
        np.save(npy, rng.normal(-2.0, 1.5, (EXAMPLES, 96, 64)).astype(np.float32))
    if not wav.is_dir():
        wav.mkdir()
        for i in range(8):
            t = np.arange(10 * 48_000) / 48_000
            tone = 0.3 * np.sin(2 * np.pi * (220 + 50 * i) * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(wav / f"clip{i}.wav", tone.astype(np.float32), 48_000, subtype="PCM_16")
    common = ["--device", device, "--batch-size", "256", "--commit-every", "0.01"]
    return {"dat": [str(dat), *common], "npy": [str(npy), *common], "processes": [str(dat), *common, "--processes", "2"],
            "resume": [str(dat), *common], "sessions": [str(dat), device], **{f"wav-{r}": [str(wav), *common, "--resampler", r]
                                             for r in ("soxr", "resampy", "onnx")}}


def masked(stderr: str) -> str:
    """The failure's ``error:`` line (else its last line), paths and numbers masked, to count by."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")] or stderr.splitlines()[-1:] or ["?"]
    return re.sub(r"\d+", "N", re.sub(r"/\S+", "PATH", lines[-1]))[:300]


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def cli(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "vggish_rt.cli", "embed", *arguments]


def wait_for_rows(store: Path, rows: int, process: subprocess.Popen, timeout: float = 60) -> bool:
    """Whether ``process`` committed ``rows`` rows to ``store`` before ending (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads((store / "journal.json").read_text())["rows"] >= rows:
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    return False


def start(number: int, kind: str, precision: str, arguments: list[str], model: str, work: Path) -> list[dict]:
    """One start of ``kind`` (two for ``resume``); its records: kind, precision, wall, ok, failure, digest."""
    out = work / "out" / f"{number}.npy"
    out.parent.mkdir(exist_ok=True)
    base = [*arguments, "--model", model, "--precision", precision, "--out", str(out)]
    records = []
    if kind == "sessions":
        began = time.perf_counter()
        job = subprocess.run([sys.executable, "-c", SESSIONS, arguments[0], model, arguments[1], precision, str(out)],
                             capture_output=True, text=True)
        ok = job.returncode == 0
        records.append({"kind": kind, "precision": precision, "wall_s": time.perf_counter() - began, "ok": ok,
                        "failure": None if ok else masked(job.stderr), "digest": digest(out) if ok else None})
        out.unlink(missing_ok=True)
        return records
    if kind == "resume":
        began = time.perf_counter()
        process = subprocess.Popen(cli(base), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        killed = wait_for_rows(Path(f"{out}.partial"), 1000, process)
        if killed:
            process.send_signal(signal.SIGKILL)
        stderr = process.communicate()[1]
        ok = killed or process.returncode == 0
        records.append({"kind": "resume-first", "precision": precision, "wall_s": time.perf_counter() - began,
                        "ok": ok, "failure": None if ok else masked(stderr), "digest": None})
        if not killed:
            return records
        base.append("--resume")
    began = time.perf_counter()
    job = subprocess.run(cli(base), capture_output=True, text=True)
    ok = job.returncode == 0
    records.append({"kind": kind, "precision": precision, "wall_s": time.perf_counter() - began, "ok": ok,
                    "failure": None if ok else masked(job.stderr), "digest": digest(out) if ok else None})
    out.unlink(missing_ok=True)
    return records


def summary(records: list[dict]) -> dict:
    by_kind: dict[str, dict] = {}
    for record in records:
        entry = by_kind.setdefault(record["kind"], {"starts": 0, "failed": 0, "walls": [], "digests": {}})
        entry["starts"] += 1
        entry["failed"] += not record["ok"]
        entry["walls"].append(record["wall_s"])
        if record["digest"]:
            entry["digests"].setdefault(record["precision"], set()).add(record["digest"])
    return {kind: {"starts": e["starts"], "failed": e["failed"], "median_wall_s": round(float(np.median(e["walls"])), 3),
                   "identical": {p: len(d) == 1 for p, d in e["digests"].items()}} for kind, e in by_kind.items()}


def test_run(_: int) -> dict:
    run = subprocess.run([sys.executable, "-m", "pytest", "tests/test_gpu.py", "-q", "-p", "no:cacheprovider"],
                         capture_output=True, text=True)
    tail = run.stdout.strip().splitlines()[-1:] or ["?"]
    failed = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    print(f"tests/test_gpu.py: {tail[0]}", flush=True)
    return {"returncode": run.returncode, "last_line": tail[0], "failed": failed}


def test_runs(runs: int, parallel: int = 1) -> dict:
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(test_run, range(runs)))
    return {"runs": runs, "parallel": parallel, "green": sum(r["returncode"] == 0 for r in results), "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--starts", type=int, default=300)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--device", default="cuda:0", help="cpu: a check of this script on a machine with no GPU")
    parser.add_argument("--test-runs", type=int, default=0)
    parser.add_argument("--test-parallel", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/stress"))
    parser.add_argument("--out", type=Path, default=Path("stress.json"))
    args = parser.parse_args()
    inputs = make_inputs(args.work, args.device)
    kinds = [k for k in args.kinds.split(",") if k]
    try:
        import resampy  # noqa: F401
    except ImportError:
        kinds = [k for k in kinds if k != "wav-resampy"]
    plan = [(i, kinds[i % len(kinds)], ("fp32", "fp16")[(i // len(kinds)) % 2]) for i in range(args.starts)]
    records: list[dict] = []
    began = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as pool:
        for number, made in enumerate(pool.map(lambda p: start(*p, inputs[p[1]], args.model, args.work), plan)):
            records += made
            with args.out.with_suffix(".jsonl").open("a") as log:  # each start as it ends: kept if the run is cut short
                log.writelines(json.dumps(record) + "\n" for record in made)
            for record in made:
                if not record["ok"]:
                    print(f"start {number} ({record['kind']}, {record['precision']}): {record['failure']}", flush=True)
    failures = collections.Counter(r["failure"] for r in records if not r["ok"])
    result = {"starts": len(records), "failed": sum(failures.values()), "seconds": round(time.perf_counter() - began, 1),
              "parallel": args.parallel, "failures": dict(failures), "kinds": summary(records)}
    if args.test_runs:
        result["tests"] = test_runs(args.test_runs, args.test_parallel)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "tests"}, indent=1))


if __name__ == "__main__":
    main()
