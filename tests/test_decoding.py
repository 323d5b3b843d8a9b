"""Decoding in worker processes through shared memory: the same bytes as decoding in the job's own process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vggish_rt.engine import Embedder
from vggish_rt.engine.decoding import ARENA_PREFIX
from vggish_rt.engine.job import JobOptions, failures_path, run_job


def _tone(path: Path, seconds: float, rate: int, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    samples = 0.2 * rng.standard_normal((int(seconds * rate), channels)).astype(np.float32)
    sf.write(path, samples, rate, subtype="PCM_16" if path.suffix == ".wav" else None)
    return path


@pytest.fixture(scope="module")
def mixed_audio(tmp_path_factory) -> list[Path]:
    """Inputs of very different lengths: several slots' worth (resampled, stereo), tiny, short, and a bad file."""
    d = tmp_path_factory.mktemp("mixed")
    bad = d / "c_bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return [_tone(d / "a_long.wav", 70.0, 48_000, channels=2, seed=1),  # 72 windows: two slots of 64
            _tone(d / "b_short.wav", 0.5, 16_000, seed=2),               # no example
            bad,
            _tone(d / "d_mid.flac", 3.2, 22_050, seed=3),
            _tone(d / "e_longer.wav", 140.0, 16_000, seed=4),            # 145 windows: three slots
            _tone(d / "f_clip.wav", 1.0, 16_000, seed=5)]


@pytest.mark.parametrize("frontend", ["onnx", "numpy"])
def test_worker_processes_give_the_bytes_of_in_process_decoding(small_model, mixed_audio, tmp_path, frontend):
    embedder = Embedder(small_model, device="cpu", frontend=frontend, batch_size=50)
    outputs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}.npy"
        expected = []
        report = run_job(mixed_audio, out, embedder, JobOptions(workers=workers, on_error="skip"),
                         expect=expected.append)
        assert report.rows == 72 + 3 + 145 + 1 and report.short_inputs == [str(mixed_audio[1])]
        assert expected == [report.rows]  # the probe's count from headers: the progress bar's total
        assert [path for path, _ in report.failures] == [str(mixed_audio[2])]
        outputs[workers] = [out.read_bytes(), Path(f"{out}.index.csv").read_bytes(), failures_path(out).read_bytes()]
    assert outputs[0] == outputs[2]
    assert not [name for name in os.listdir("/dev/shm") if name.startswith(f"{ARENA_PREFIX}{os.getpid()}-")]


def test_tiny_clips_sharing_slots_and_messages_give_the_bytes_of_in_process_decoding(small_model, tmp_path):
    """Many 1 s clips go to the workers in tasks of up to TASK_FILES files whose rows share slots: with bad
    clips, clips too short, a spectrogram file among them and a long file after, every row, failure and short
    input is the job's without workers."""
    clips = [_tone(tmp_path / f"c{i:03d}.wav", (0.5 if i % 37 == 5 else 1.0), 16_000, seed=i % 7) for i in range(150)]
    for i in (3, 70, 71):
        clips[i].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    spectrogram = tmp_path / "s.npy"
    np.save(spectrogram, np.random.default_rng(0).normal(-2, 1, (5, 96, 64)).astype(np.float32))
    inputs = [*clips[:90], spectrogram, *clips[90:], _tone(tmp_path / "z_long.wav", 70.0, 48_000, channels=2)]
    embedder = Embedder(small_model, device="cpu", batch_size=50)
    outputs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}.npy"
        report = run_job(inputs, out, embedder, JobOptions(workers=workers, on_error="skip"))
        assert [Path(path) for path, _ in report.failures] == [clips[3], clips[70], clips[71]]
        assert len(report.short_inputs) == 4
        outputs[workers] = [out.read_bytes(), Path(f"{out}.index.csv").read_bytes(), failures_path(out).read_bytes()]
    assert outputs[0] == outputs[2]


def test_a_bad_file_fails_the_job_before_any_work(small_model, mixed_audio, tmp_path):
    """With on_error='fail', the probe of every input's header stops the job at its first stored rows (the
    bad file is the third input, reached later), leaving nothing behind."""
    from vggish_rt.engine.errors import VggishError

    embedder = Embedder(small_model, device="cpu", batch_size=50)
    with pytest.raises(VggishError, match="c_bad.wav: not readable audio.*nothing was embedded"):
        run_job(mixed_audio, tmp_path / "x.npy", embedder, JobOptions(workers=2))
    assert list(tmp_path.iterdir()) == []


def test_decode_workers_die_with_the_job(tmp_path):
    """kill -9 of the job's process ends its decoding workers too (each watches the job through a pidfd)."""
    files = [_tone(tmp_path / f"{i:03d}.wav", 30.0, 48_000, seed=i) for i in range(4)]
    files += [files[i % 4].with_name(f"link{i:03d}.wav") for i in range(200)]
    for i, link in enumerate(files[4:]):
        os.link(files[i % 4], link)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from jobs import write_null_model

    model = write_null_model(tmp_path / "null")
    job = subprocess.Popen([sys.executable, "-m", "vggish_rt.cli", "embed", *map(str, files), "--model", str(model),
                            "--device", "cpu", "--workers", "2", "--out", str(tmp_path / "o.npy")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    family: set[int] = set()
    while time.monotonic() < deadline and len(family) < 3:  # the forkserver and its two workers, at least
        time.sleep(0.2)
        family = _descendants(job.pid)
    assert len(family) >= 3 and job.poll() is None, "the job ended before its workers were seen"
    job.send_signal(signal.SIGKILL)
    job.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in family):
        time.sleep(0.1)
    assert not [p for p in family if _alive(p)]
    # an arena left by a job killed before its workers had mapped it is removed by the next job that decodes
    stale = Path("/dev/shm", f"{ARENA_PREFIX}{job.pid}-left")
    stale.write_bytes(b"\0" * 4096)
    run_job(files[:4], tmp_path / "next.npy", Embedder(model, device="cpu"), JobOptions(workers=2))
    assert not stale.exists()


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        try:
            parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
