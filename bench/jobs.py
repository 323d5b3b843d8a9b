"""The job benchmark: the CLI a user runs, on the corpora of issue 14, beside the engine's ceiling.

    python bench/jobs.py [--model DIR | --null] [--gpus 1,2] [--scale 1.0]
                         [--jobs wav16,wav48,m4a,mp3,opus,flac,clips,seed,npy] [--precision fp16] [--work /tmp/jobs]
                         [--out jobs.json]

Corpora, made once under ``--work`` (``--scale`` shrinks every count); the
audio ones hold 20 distinct recordings (a tone and noise), the rest hard links
to them:

- ``wav48``: 10,000 WAV files of 40 s at 48 kHz, 16-bit mono (410,000 examples);
- ``wav16``: the same at 16 kHz (no resampling);
- ``m4a``: 5,000 AAC files of 10 s at 44.1 kHz, stereo (AudioSet's shape);
- ``mp3``: 2,000 MP3 files of 30 s at 44.1 kHz, stereo (a music collection);
- ``opus``: 5,000 Opus files of 10 s in WebM at 48 kHz, stereo;
- ``flac``: 2,000 FLAC files of 30 s at 16 kHz, 16-bit mono;
- ``clips``: 105,835 WAV files of 1 s at 16 kHz, 16-bit mono (the seed's
  speech-commands layout and count: one example a file);
- ``seed``: the seed notebook's job: 105,835 float64 spectrograms in one raw
  ``.dat`` with its metadata CSV (``wavfile_df.csv``'s layout), to ``.csv``;
- ``npy``: 300,000 float32 log-mel examples in one ``.npy``, to ``.npy``.

Each job is the command ``vggish-rt embed ... --out ...`` in a fresh process,
timed by wall clock, start-up (imports, sessions, cuDNN's algorithm search)
included; ``start_up_s`` is the wall time of the same command on a one-input
corpus of the same kind, and ``steady_examples_per_s`` the rate with it
subtracted. The engine's ceiling comes from ``vggish-rt bench`` (host arrays
in and out; ``--input examples`` and ``--input windows``) in the same run.
For the compressed corpora (COMPRESSED), a decode-only ceiling too: PyAV
decoding the same files on every core (a process a core, frames discarded,
nothing else), timed by wall once the processes are up; ``of_decode`` is the
job's rate as a share of it.
While each job runs: ``cores_busy``, the machine's busy CPU-seconds over the
wall time (/proc/stat), and on GPUs ``gpu_busy_s`` and ``gpu_util_while_busy``
(nvidia-smi every 100 ms: seconds above 20% utilisation per GPU, and the mean
then): cores busy while the GPUs wait say the data path bounds the job.

``--null``: a model directory whose network costs nothing (the first 128
values of each input row), for profiling the data path on a machine with no
GPU: what it measures is everything but the network. Its manifest says
``"pretrained": false``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from vggish_rt.engine import params
from vggish_rt.engine.manifest import FORMAT, FORMAT_VERSION, frontend_parameters, sha256_bytes, write_manifest
from vggish_rt.engine.probe import examples_in

DISTINCT_RECORDINGS = 20
FULL = {"wav48": 10_000, "wav16": 10_000, "m4a": 5_000, "mp3": 2_000, "opus": 5_000, "flac": 2_000,
        "clips": 105_835, "seed": 105_835, "npy": 300_000}


@dataclass(frozen=True)
class AudioCorpus:
    """Files of ``seconds`` of audio at ``rate`` Hz with ``channels`` channels, written as ``suffix``
    (``codec``: a PyAV encoder, None for 16-bit PCM through libsndfile: WAV or FLAC)."""

    seconds: float
    rate: int
    channels: int
    suffix: str
    codec: str | None = None


AUDIO = {"wav48": AudioCorpus(40, 48_000, 1, ".wav"), "wav16": AudioCorpus(40, 16_000, 1, ".wav"),
         "m4a": AudioCorpus(10, 44_100, 2, ".m4a", "aac"), "mp3": AudioCorpus(30, 44_100, 2, ".mp3", "libmp3lame"),
         "opus": AudioCorpus(10, 48_000, 2, ".webm", "libopus"), "flac": AudioCorpus(30, 16_000, 1, ".flac"),
         "clips": AudioCorpus(1, 16_000, 1, ".wav")}
COMPRESSED = ("m4a", "mp3", "opus", "flac")  # corpora with a decode-only ceiling line


def write_null_model(directory: Path) -> Path:
    """A model directory whose networks cost nothing: ``features`` [N,96,64] or ``waveform`` [N,15600]
    -> the first 128 values of each row, as ``embedding`` float32 [N,128]; every precision's file name."""
    from onnx import TensorProto, helper, numpy_helper

    def model(input_name: str, row_shape: list[int]) -> bytes:
        nodes = [helper.make_node("Reshape", [input_name, "flat_shape"], ["flat"]),
                 helper.make_node("Slice", ["flat", "starts", "ends", "axes"], [params.ONNX_EMBEDDING])]
        constants = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                     (("flat_shape", [-1, int(np.prod(row_shape))]), ("starts", [0]),
                      ("ends", [params.EMBEDDING_SIZE]), ("axes", [1]))]
        graph = helper.make_graph(
            nodes, "null", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", *row_shape])],
            [helper.make_tensor_value_info(params.ONNX_EMBEDDING, TensorProto.FLOAT, ["N", params.EMBEDDING_SIZE])],
            constants)
        onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx_model.ir_version = 8
        return onnx_model.SerializeToString()

    directory.mkdir(parents=True, exist_ok=True)
    examples = model(params.ONNX_FEATURES, [params.NUM_FRAMES, params.NUM_BANDS])
    windows = model(params.ONNX_WAVEFORM, [params.EXAMPLE_SAMPLES])
    files = {}
    for names, data in ((("vggish.onnx", "vggish.fp16.onnx", "vggish.int8.onnx"), examples),
                        (("vggish.e2e.onnx", "vggish.e2e.fp16.onnx", "vggish.e2e.int8.onnx"), windows)):
        for name in names:
            (directory / name).write_bytes(data)
            files[name] = {"sha256": sha256_bytes(data), "bytes": len(data)}
    write_manifest(directory, {"format": FORMAT, "format_version": FORMAT_VERSION, "pretrained": False,
                               "note": "null network for bench/jobs.py --null: costs nothing, means nothing",
                               "frontend": frontend_parameters(), "files": files})
    return directory


def _audio_corpus(directory: Path, spec: AudioCorpus, files: int) -> Path:
    """``files`` audio files of ``spec``, DISTINCT_RECORDINGS of them distinct; the marker of a finished corpus
    lies beside the folder (a directory input takes every file in it)."""
    done = directory.with_name(directory.name + ".done")
    if done.is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.rate)
    distinct = []
    for i in range(min(files, DISTINCT_RECORDINGS)):
        seconds = np.arange(int(spec.seconds * spec.rate)) / spec.rate
        tone = 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * seconds) + 0.05 * rng.standard_normal(len(seconds))
        channels = np.stack([tone * (1.0 - 0.2 * c) for c in range(spec.channels)], axis=1).astype(np.float32)
        path = directory / f"clip{i:05d}{spec.suffix}"
        if spec.codec is None:
            sf.write(path, channels, spec.rate, subtype="PCM_16")
        else:
            _encode(path, channels, spec.rate, spec.codec)
        distinct.append(path)
    for i in range(len(distinct), files):
        os.link(distinct[i % len(distinct)], directory / f"clip{i:05d}{spec.suffix}")
    done.touch()
    return directory


def _encode(path: Path, samples: np.ndarray, rate: int, codec: str) -> None:
    """Write float32 [S, channels] ``samples`` at ``rate`` to ``path`` with PyAV's ``codec`` encoder."""
    import av

    layout = "stereo" if samples.shape[1] == 2 else "mono"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        stream.bit_rate = 128_000
        step = 1152 * 8
        for start in range(0, len(samples), step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[start : start + step].T), format="fltp",
                                               layout=layout)
            frame.rate = rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _seed_corpus(directory: Path, rows: int) -> tuple[Path, Path]:
    """The seed's inputs: ``wavfile_spec.dat`` (float64 [rows,96,64]) and ``wavfile_df.csv`` (its metadata)."""
    directory.mkdir(parents=True, exist_ok=True)
    dat, table = directory / "wavfile_spec.dat", directory / "wavfile_df.csv"
    if not table.is_file():
        rng = np.random.default_rng(0)
        chunk = rng.normal(-2.0, 1.5, (4096, params.NUM_FRAMES, params.NUM_BANDS))
        with open(dat, "wb") as f:
            for start in range(0, rows, len(chunk)):
                chunk[: rows - start].tofile(f)
        with open(table, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["fname", "speaker", "label"])
            writer.writerows([f"clip_{i:06d}.wav", f"spk{i % 97}", "speech"] for i in range(rows))
    return dat, table


def _npy_corpus(directory: Path, rows: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "examples.npy"
    if not path.is_file():
        array = np.lib.format.open_memmap(path, "w+", np.float32, (rows, params.NUM_FRAMES, params.NUM_BANDS))
        chunk = np.random.default_rng(0).normal(-2.0, 1.5, (4096, params.NUM_FRAMES, params.NUM_BANDS))
        for start in range(0, rows, len(chunk)):
            array[start : start + len(chunk)] = chunk[: rows - start]
        array.flush()
        del array
    return path


def corpus(kind: str, work: Path, count: int) -> tuple[list[str], str, int]:
    """(CLI inputs and options, output suffix, examples) for a corpus of ``count`` inputs or rows."""
    if kind in AUDIO:
        spec = AUDIO[kind]
        examples = count * examples_in(int(spec.seconds * spec.rate), spec.rate)
        return [str(_audio_corpus(work / f"{kind}_{count}", spec, count))], ".npy", examples
    if kind == "seed":
        dat, table = _seed_corpus(work / f"seed_{count}", count)
        return [str(dat), "--metadata", str(table)], ".csv", count
    return [_npy_corpus(work / f"npy_{count}", count).as_posix()], ".npy", count


def run_cli(arguments: list[str], work: Path) -> tuple[float, str]:
    """Run ``vggish-rt ARGS`` in a fresh process; (wall seconds, stderr). Raises on failure."""
    started = time.perf_counter()
    job = subprocess.run([sys.executable, "-m", "vggish_rt.cli", *arguments], capture_output=True, text=True,
                         cwd=work)
    wall = time.perf_counter() - started
    if job.returncode != 0:
        raise SystemExit(f"vggish-rt {' '.join(arguments)} failed:\n{job.stderr[-3000:]}")
    return wall, job.stderr + job.stdout


def _busy_cpu_seconds() -> float | None:
    """CPU-seconds every core of the machine has spent busy since boot (/proc/stat), None where unknown."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_with_load(arguments: list[str], work: Path, gpus: int) -> tuple[float, str, dict[str, float]]:
    """:func:`run_cli`, and what the machine did meanwhile: ``cores_busy`` (busy CPU-seconds of the whole
    machine over the wall time) and, with ``gpus`` > 0 and nvidia-smi, ``gpu_busy_s`` (seconds the GPUs were
    above 20% utilisation, sampled every 100 ms, per GPU) and ``gpu_util_while_busy`` (their mean then, %):
    a job whose GPUs idle while its cores are busy is bound by its data path."""
    sampler = None
    if gpus and shutil.which("nvidia-smi"):
        sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                    "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    busy = _busy_cpu_seconds()
    try:
        wall, log = run_cli(arguments, work)
    finally:
        if sampler is not None:
            sampler.terminate()
    load: dict[str, float] = {}
    if busy is not None:
        load["cores_busy"] = round((_busy_cpu_seconds() - busy) / wall, 1)
    if sampler is not None:
        samples = [int(v) for v in sampler.communicate()[0].split() if v.isdigit()]
        active = [v for v in samples if v > 20]
        load["gpu_busy_s"] = round(len(active) * 0.1 / gpus, 1)
        load["gpu_util_while_busy"] = round(sum(active) / len(active), 1) if active else 0.0
    return wall, log, load


def engine_ceiling(model: Path, device: str, precision: str, kind: str, seconds: float) -> float:
    """``vggish-rt bench --json`` examples/s (host arrays in and out)."""
    _, output = run_cli(["bench", "--model", str(model), "--device", device, "--precision", precision,
                         "--input", kind, "--seconds", str(seconds), "--json"], Path.cwd())
    return json.loads(output.strip().splitlines()[-1])["examples_per_s"]


def _decode_files(paths: list[str]) -> int:
    """Decode each file's first audio track with PyAV, frames discarded; the samples decoded."""
    import av

    samples = 0
    for path in paths:
        with av.open(path) as container:
            track = container.streams.audio[0]
            for packet in container.demux(track):
                for frame in packet.decode():
                    samples += frame.samples
    return samples


def decode_ceiling(directory: Path, examples: int) -> dict[str, float]:
    """The decode-only ceiling of a corpus: its files decoded by PyAV on every core (engine-free), as examples/s
    of the corpus's ``examples`` by wall; the pool is started (and PyAV imported) before the clock."""
    import multiprocessing

    files = sorted(str(p) for p in directory.iterdir())
    cores = os.cpu_count() or 1
    chunks = [files[i :: cores * 4] for i in range(cores * 4)]
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(_decode_files, [files[:1]] * cores)  # every process up, PyAV imported
        started = time.perf_counter()
        pool.map(_decode_files, chunks, chunksize=1)
        wall = time.perf_counter() - started
    return {"decode_s": round(wall, 2), "decode_examples_per_s": round(examples / wall, 1), "cores": cores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="model directory (the dev model on a GPU machine)")
    source.add_argument("--null", action="store_true", help="a network that costs nothing: the data path alone")
    parser.add_argument("--gpus", default=None, help="comma-separated GPU counts (default: 1, 2, 4 as available; "
                                                     "'cpu' for the CPU provider)")
    parser.add_argument("--jobs", default="wav16,wav48,m4a,mp3,opus,flac,clips,seed,npy")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each corpus's full size")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--seconds", type=float, default=5.0, help="engine bench duration")
    parser.add_argument("--extra", default="", help="extra options for every embed command, space-separated")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vggish-jobs"))
    parser.add_argument("--out", type=Path, default=Path("jobs.json"))
    arguments = parser.parse_args()
    arguments.work.mkdir(parents=True, exist_ok=True)
    model = write_null_model(arguments.work / "null-model") if arguments.null else arguments.model.resolve()
    if arguments.gpus:
        placements = ["cpu"] if arguments.gpus == "cpu" else \
            ["cuda:" + ",".join(map(str, range(int(g)))) for g in arguments.gpus.split(",")]
    else:
        from vggish_rt.engine.session import cuda_device_count

        gpus = cuda_device_count()
        placements = ["cuda:" + ",".join(map(str, range(g))) for g in (1, 2, 4) if g <= gpus] or ["cpu"]
    results = []
    for device in placements:
        ceiling = {kind: engine_ceiling(model, device, arguments.precision, kind, arguments.seconds)
                   for kind in ("examples", "windows")}
        results.append({"job": "engine", "device": device, "precision": arguments.precision, **ceiling})
        print(json.dumps(results[-1]), flush=True)
        for kind in arguments.jobs.split(","):
            count = max(1, int(FULL[kind] * arguments.scale))
            inputs, suffix, examples = corpus(kind, arguments.work, count)
            small_inputs, _, small_examples = corpus(kind, arguments.work, 1 if kind in AUDIO else 2048)
            out = arguments.work / f"out{suffix}"
            common = ["--model", str(model), "--device", device, "--precision", arguments.precision, "--out", str(out),
                      *arguments.extra.split()]
            start_up, _ = run_cli(["embed", *small_inputs, *common], arguments.work)
            wall, log, load = run_with_load(["embed", *inputs, *common], arguments.work,
                                            0 if device == "cpu" else device.count(",") + 1)
            if suffix == ".npy":  # the rows written (a compressed file's decoded length may differ a little)
                examples = len(np.load(out, mmap_mode="r"))
            ceiling_line = decode_ceiling(Path(inputs[0]), examples) if kind in COMPRESSED else {}
            if ceiling_line:
                ceiling_line["of_decode"] = round(ceiling_line["decode_s"] / wall, 3)
            results.append({"job": kind, "device": device, "precision": arguments.precision, "options": arguments.extra,
                            "examples": examples,
                            "wall_s": round(wall, 2), "start_up_s": round(start_up, 2), **load,
                            "examples_per_s": round(examples / wall, 1),
                            "steady_examples_per_s": round((examples - small_examples) / max(wall - start_up, 1e-9), 1),
                            "of_engine": round(examples / wall / ceiling["windows" if kind in AUDIO else "examples"], 3),
                            **ceiling_line, "summary": log.strip().splitlines()[-1]})
            print(json.dumps(results[-1]), flush=True)
    arguments.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{'job':8} {'device':12} {'examples':>9} {'wall s':>7} {'start s':>7} {'ex/s':>9} {'steady':>9} {'of engine':>9}"
          f" {'cores':>5} {'gpu s':>5} {'gpu %':>5} {'decode/s':>9} {'of dec':>6}")
    for r in results:
        if r["job"] == "engine":
            print(f"{'engine':8} {r['device']:12} examples {r['examples']:,.0f}/s, windows {r['windows']:,.0f}/s")
        else:
            print(f"{r['job']:8} {r['device']:12} {r['examples']:9,} {r['wall_s']:7.2f} {r['start_up_s']:7.2f} "
                  f"{r['examples_per_s']:9,.0f} {r['steady_examples_per_s']:9,.0f} {r['of_engine']:9.1%}"
                  f" {r.get('cores_busy', ''):>5} {r.get('gpu_busy_s', ''):>5} {r.get('gpu_util_while_busy', ''):>5}"
                  f" {r.get('decode_examples_per_s', ''):>9} {r.get('of_decode', ''):>6}")


if __name__ == "__main__":
    main()
