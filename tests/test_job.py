"""The streaming job: order across workers, resume after kill -9, flat memory, formats, metadata."""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import assert_one_line_error, run_cli, run_cli_peak_memory, write_failing_model, write_tiny_model
from vggish_rt.engine import Embedder
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.ledger import InputEnded
from vggish_rt.engine.pipeline import Batch, batches, run_batches
from vggish_rt.engine.rowkind import EXAMPLES, WINDOWS, RowKind, audio_rows
from vggish_rt.engine.sources import Block, InputRows


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def spectrogram_dat(path: Path, rows: int, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).normal(-2.0, 1.5, (rows, 96, 64))
    data.tofile(path)
    return data


def test_order_is_preserved_across_workers(tiny_model):
    embedder = Embedder(tiny_model, device="cpu", batch_size=7)
    x = np.random.default_rng(1).normal(size=(200, 96, 64)).astype(np.float32)
    expected = embedder.embed_examples(x)
    rng = random.Random(0)
    lock = threading.Lock()

    def jittery(batch: Batch) -> np.ndarray:  # three workers that finish out of order
        with lock:
            delay = rng.uniform(0, 0.02)
        time.sleep(delay)
        return embedder._runner(EXAMPLES)(batch.inputs)

    blocks = (InputRows(0, Block(Path("x"), np.arange(a, a + 23)[: len(x[a:a + 23])], np.full(len(x[a:a + 23]), np.nan),
                                 np.full(len(x[a:a + 23]), np.nan), examples=x[a:a + 23])) for a in range(0, 200, 23))
    seen = [(b.seq, v) for b, v in run_batches(batches(blocks, 7), [jittery] * 3)]
    assert [s for s, _ in seen] == list(range(len(seen)))
    np.testing.assert_array_equal(np.concatenate([v for _, v in seen]), expected)


def one_block(x: np.ndarray) -> list:
    """Examples [N,96,64] as run_batches' input: one block of source number 0."""
    return [InputRows(0, Block(Path("x"), np.arange(len(x)), np.full(len(x), np.nan), np.full(len(x), np.nan), examples=x))]


class Preparing:
    """A worker whose start-up (``prepare``) waits for ``ready`` or raises ``error``, after ``start_after``
    seconds (as a GPU's second session does); it records its batches."""

    def __init__(self, embedder, ready=None, error=None, start_after=0.0):
        self.embedder, self.ready, self.error, self.ran, self.prepared_in = embedder, ready, error, [], None
        self.start_after = start_after

    def prepare(self):
        self.prepared_in = threading.current_thread().name
        if self.error is not None:
            raise self.error
        if self.ready is not None:
            assert self.ready.wait(10)

    def __call__(self, batch):
        self.ran.append(batch.seq)
        return self.embedder._runner(EXAMPLES)(batch.inputs)


def test_a_worker_still_preparing_holds_no_batch_back_and_its_failure_is_the_jobs(tiny_model):
    embedder = Embedder(tiny_model, device="cpu", batch_size=7)
    x = np.random.default_rng(2).normal(size=(60, 96, 64)).astype(np.float32)
    expected = embedder.embed_examples(x)
    ready = threading.Event()
    slow, quick = Preparing(embedder, ready), Preparing(embedder)
    seen = []
    for batch, values in run_batches(batches(one_block(x), 7), [slow, quick]):
        seen.append(values)
        if len(seen) == 9:  # every batch ran while the other worker was still making its session
            ready.set()
    np.testing.assert_array_equal(np.concatenate(seen), expected)
    assert quick.ran == list(range(9)) and slow.ran == [] and slow.prepared_in.startswith("vggish-device")
    with pytest.raises(MemoryError, match="no room for a second session"):
        list(run_batches(batches(one_block(x), 7), [Preparing(embedder), Preparing(embedder, error=MemoryError("no room for a second session"))]))
    two = Embedder(tiny_model, device="cpu", batch_size=7, sessions_per_device=2)
    np.testing.assert_array_equal(two.embed_examples(x), expected)
    assert {key[2] for key in two._runners} == {0, 1}


def test_a_later_worker_starts_only_when_the_job_outlasts_its_wait(tiny_model):
    embedder = Embedder(tiny_model, device="cpu", batch_size=7)
    x = np.random.default_rng(4).normal(size=(60, 96, 64)).astype(np.float32)
    expected = embedder.embed_examples(x)
    first, later = Preparing(embedder), Preparing(embedder, start_after=30.0)
    began = time.monotonic()
    got = np.concatenate([v for _, v in run_batches(batches(one_block(x), 7), [first, later])])
    assert time.monotonic() - began < 10  # the job ended without waiting out the later worker's 30 s
    np.testing.assert_array_equal(got, expected)
    assert first.ran == list(range(9)) and later.ran == [] and later.prepared_in is None  # never started

    def slow_first(batch):  # the first worker holds its first batch until the later one has run a batch
        deadline = time.monotonic() + 10
        while not later.ran and time.monotonic() < deadline:
            time.sleep(0.01)
        return first(batch)
    first.ran, later = [], Preparing(embedder, start_after=0.05)
    got = np.concatenate([v for _, v in run_batches(batches(one_block(x), 7), [slow_first, later])])
    np.testing.assert_array_equal(got, expected)
    assert later.prepared_in is not None and later.ran and sorted(first.ran + later.ran) == list(range(9))
    two = Embedder(tiny_model, device="cpu", batch_size=7, sessions_per_device=2)
    assert [w.start_after for w in two._workers()] == [0.0, 0.0]  # only a GPU's extra sessions wait
    with pytest.raises(VggishError, match="extra_sessions_after_s"):
        Embedder(tiny_model, device="cpu", extra_sessions_after_s=-1)


def test_row_kinds_name_their_rows_and_refuse_what_is_not_one():
    assert [str(k) for k in (EXAMPLES, WINDOWS, audio_rows(16_000), audio_rows(48_000))] == \
        ["examples", "windows", "windows", "windows@48000"]
    assert audio_rows(16_000) == WINDOWS and not WINDOWS.native and audio_rows(44_100).native
    assert sorted({audio_rows(48_000), WINDOWS, EXAMPLES}) == [EXAMPLES, WINDOWS, audio_rows(48_000)]
    for name, rate in (("frames", 16_000), ("examples", 48_000)):
        with pytest.raises(ValueError, match="not a row kind"):
            RowKind(name, rate)


def test_batches_have_fixed_size_and_never_mix_kinds():
    def block(kind, n, number):
        data = np.zeros((n, 15600) if kind == "windows" else (n, 96, 64), np.float32)
        return InputRows(number, Block(Path(f"s{number}"), np.arange(n), np.zeros(n), np.zeros(n), **{kind: data}))
    ends = [InputEnded(n, f"s{n}") for n in range(4)]
    made = list(batches([block("examples", 10, 0), ends[0], block("examples", 5, 1), ends[1],
                         block("windows", 9, 2), ends[2], ends[3]], 4))
    assert [len(b.index) for b in made] == [4, 4, 4, 3, 4, 4, 1]
    assert [b.kind for b in made] == [EXAMPLES] * 4 + [WINDOWS] * 3
    assert made[2].sources == ["s0", "s0", "s1", "s1"] and made[2].numbers.tolist() == [0, 0, 1, 1]
    # an input's end rides on the batch being cut when it came: never before the batch of its last row
    assert [[e.number for e in b.ended] for b in made] == [[], [], [0], [1], [], [], [2, 3]]
    tail = list(batches([block("examples", 4, 0), ends[0]], 4))  # the end after a full last batch: a batch of no rows
    assert [len(b.index) for b in tail] == [4, 0] and tail[1].inputs is None and tail[1].ended == [ends[0]]


PACED = Path(__file__).parent / "paced"   # its sitecustomize adds time to every session run


def kill_at_rows(args: list, out: Path, points: tuple[int, ...], run_seconds: float = 0.05) -> None:
    """Run the CLI job ``args --out out`` once per kill point (with --resume after the first), kill -9 it
    once it has committed that many rows; the output must not have appeared.

    Each session run of these jobs takes ``run_seconds`` more (tests/paced, in every process of the job),
    so a kill lands mid-job on any machine while the rows stay those of the real session.
    """
    env = {**os.environ, "VGGISH_RT_TEST_RUN_SECONDS": str(run_seconds),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PACED), os.environ.get("PYTHONPATH")]))}
    for number, kill_at in enumerate(points):
        process = subprocess.Popen([sys.executable, "-m", "vggish_rt.cli", *map(str, args), "--out", str(out),
                                    *(["--resume"] if number else [])],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_for_rows(out.with_name(out.name + ".partial"), kill_at, process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert not out.exists(), f"output appeared before the job finished (kill at row {kill_at})"


def wait_for_rows(store: Path, rows: int, process: subprocess.Popen, timeout: float = 120) -> None:
    """Return once the job ``process`` has committed at least ``rows`` rows to ``store``.

    Fails at once if the job ends first: a kill point the job can outrun makes a useless test.
    """
    journal = store / "journal.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(journal.read_text())["rows"] >= rows:
                return
        except (OSError, ValueError, KeyError):
            pass
        if process.poll() is not None:
            raise AssertionError(f"the job ended (exit code {process.returncode}) before committing {rows} rows")
        time.sleep(0.02)
    raise AssertionError(f"the job never committed {rows} rows")


@pytest.mark.parametrize("suffix", [".csv"])  # .npy: test_reliability.py's random kills
def test_resume_after_kill_9_gives_identical_bytes(small_model, tmp_path, suffix):
    spectrogram_dat(tmp_path / "spec.dat", 200)
    args = ["embed", tmp_path / "spec.dat", "--model", small_model, "--device", "cpu", "--batch-size", "8",
            "--commit-every", "0.05"]
    reference = run_cli(*args, "--out", tmp_path / f"ref{suffix}")
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / f"resumed{suffix}"
    kill_at_rows(args, out, (40, 120))  # kill -9 twice, at different points, resuming in between
    resumed = run_cli(*args, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: " in resumed.stderr and " rows kept; going on at input 1 of 1 (" in resumed.stderr
    assert out.read_bytes() == (tmp_path / f"ref{suffix}").read_bytes()
    if suffix == ".npy":
        assert Path(f"{out}.index.csv").read_bytes() == Path(f"{tmp_path / 'ref.npy'}.index.csv").read_bytes()
    assert not out.with_name(out.name + ".partial").exists()


def test_resume_refuses_another_job(small_model, tmp_path):
    spectrogram_dat(tmp_path / "a.dat", 3)
    (tmp_path / "o.npy.partial").mkdir()
    assert_one_line_error(run_cli("embed", tmp_path / "a.dat", "--model", small_model, "--device", "cpu",
                                  "--out", tmp_path / "o.npy", "--resume"), "--resume", "no unfinished job")


def test_memory_stays_flat_on_a_large_dat(tiny_model, tmp_path):
    rows = 20_000  # 983 MB of float64
    rng = np.random.default_rng(0)
    with open(tmp_path / "big.dat", "wb") as f:
        for _ in range(rows // 1000):
            rng.normal(-2, 1.5, (1000, 96, 64)).tofile(f)
    result, maxrss_mb = run_cli_peak_memory("embed", tmp_path / "big.dat", "--model", tiny_model, "--device", "cpu",
                                            "--out", tmp_path / "e.npy")
    assert result.returncode == 0, result.stderr
    assert maxrss_mb < 400, f"resident memory reached {maxrss_mb:.0f} MB for a 983 MB input"
    embeddings = np.load(tmp_path / "e.npy", mmap_mode="r")
    assert embeddings.shape == (rows, 128)
    with open(tmp_path / "big.dat", "rb") as f:
        f.seek(19_990 * 96 * 64 * 8)
        tail = np.frombuffer(f.read(), "<f8").reshape(-1, 96, 64)
    np.testing.assert_allclose(embeddings[-10:], Embedder(tiny_model, device="cpu").embed_examples(tail), rtol=1e-5)


def test_one_pooled_row_per_input_whatever_repeats(tiny_model, tmp_path):
    """The same file twice in a row is two inputs: two pooled rows, each with its metadata row; the count
    printed is the count written. A failed input gives no pooled row from the rows before its failure."""
    spectrogram_dat(tmp_path / "a.dat", 5, seed=1)
    spectrogram_dat(tmp_path / "b.dat", 3, seed=2)
    bad = spectrogram_dat(tmp_path / "c_bad.dat", 6, seed=3)
    bad[4] = np.nan
    bad.tofile(tmp_path / "c_bad.dat")
    (tmp_path / "meta.csv").write_text("label\nfirst\nsecond\nthird\nfourth\n")
    inputs = [tmp_path / "a.dat", tmp_path / "a.dat", tmp_path / "b.dat", tmp_path / "c_bad.dat"]
    out = tmp_path / "pooled.csv"
    result = run_cli("embed", *inputs, "--model", tiny_model, "--device", "cpu", "--pool", "mean",
                     "--on-error", "skip", "--out", out)
    assert result.returncode == 1, result.stderr  # c_bad.dat failed, reported
    assert "wrote 3 embeddings" in result.stdout, result.stdout
    rows = list(csv.reader(open(out)))[1:]
    assert [row[0] for row in rows] == [str(tmp_path / "a.dat")] * 2 + [str(tmp_path / "b.dat")]
    assert rows[0][4:] == rows[1][4:] and rows[0][4:] != rows[2][4:]
    (tmp_path / "meta.csv").write_text("label\nfirst\nsecond\nthird\n")
    labelled = run_cli("embed", *inputs[:3], "--model", tiny_model, "--device", "cpu", "--pool", "mean",
                       "--metadata", tmp_path / "meta.csv", "--out", tmp_path / "labelled.csv")
    assert labelled.returncode == 0, labelled.stderr
    assert [row[0] for row in list(csv.reader(open(tmp_path / "labelled.csv")))[1:]] == ["first", "second", "third"]


def test_resume_refuses_a_job_whose_metadata_or_input_content_changed(tiny_model, tmp_path):
    """A store kept after a failure (rows of a.dat committed, b.dat bad); then the metadata's labels are
    edited, same row count, or a.dat's bytes change in its middle (not in the first or last 64 KiB) at the same
    size and modification time: --resume names what changed."""
    spectrogram_dat(tmp_path / "a.dat", 3, seed=1)
    bad = spectrogram_dat(tmp_path / "b.dat", 2, seed=2)
    bad[1] = np.nan
    bad.tofile(tmp_path / "b.dat")
    (tmp_path / "meta.csv").write_text("label\nx\ny\nz\nu\nv\n")
    args = ["embed", tmp_path / "a.dat", tmp_path / "b.dat", "--model", tiny_model, "--device", "cpu",
            "--metadata", tmp_path / "meta.csv", "--commit-every", "0", "--batch-size", "1", "--out", tmp_path / "o.csv"]
    first = run_cli(*args)
    assert first.returncode == 2 and (tmp_path / "o.csv.partial").is_dir(), first.stderr
    (tmp_path / "meta.csv").write_text("label\nX\nY\nZ\nU\nV\n")
    assert_one_line_error(run_cli(*args, "--resume"), "different job", "metadata_sha256")
    (tmp_path / "meta.csv").write_text("label\nx\ny\nz\nu\nv\n")
    stat = (tmp_path / "a.dat").stat()
    data = np.fromfile(tmp_path / "a.dat")
    middle = 70_000 // 8  # a.dat is 147,456 bytes: its bytes 65,536-81,919 are in neither 64 KiB edge
    assert 65_536 < 8 * middle < stat.st_size - 65_536 - 8
    data[middle] += 1.0
    data.tofile(tmp_path / "a.dat")
    os.utime(tmp_path / "a.dat", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    refused = run_cli(*args, "--resume")
    assert_one_line_error(refused, "different job", "inputs")
    assert "metadata" not in refused.stderr


def test_metadata_table_leads_csv_and_parquet_like_the_seed(tiny_model, tmp_path):
    spectrogram_dat(tmp_path / "wavfile_spec.dat", 5)
    with open(tmp_path / "wavfile_df.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "file_name", "label", "valid"])
        for i in range(5):
            writer.writerow([i, f"/audio/zero/{i}.wav", "zero", "True"])
    for suffix in (".csv", ".parquet"):
        out = tmp_path / f"wavfile_embed{suffix}"
        result = run_cli("embed", tmp_path / "wavfile_spec.dat", "--model", tiny_model, "--device", "cpu",
                         "--metadata", tmp_path / "wavfile_df.csv", "--out", out)
        assert result.returncode == 0, result.stderr
        if suffix == ".csv":
            rows = list(csv.reader(open(out)))
            assert rows[0] == ["", "file_name", "label", "valid", *[f"e{i}" for i in range(128)]]
            assert rows[3][:4] == ["2", "/audio/zero/2.wav", "zero", "True"]
        else:
            table = pq.read_table(out)
            assert table.column_names[:4] == ["", "file_name", "label", "valid"]
            assert table.column("file_name").to_pylist()[4] == "/audio/zero/4.wav"
    bad = run_cli("embed", tmp_path / "wavfile_spec.dat", tmp_path / "wavfile_spec.dat", "--model", tiny_model,
                  "--device", "cpu", "--metadata", tmp_path / "wavfile_df.csv", "--out", tmp_path / "x.csv")
    assert_one_line_error(bad, "5 rows", "10 output rows")
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.partial").exists()


def test_every_format_round_trips_with_postprocess_and_pool(small_model, tmp_path):
    from test_audio import EXAMPLES

    npy = tmp_path / "e.npy"
    assert run_cli("embed", EXAMPLES, "--model", small_model, "--device", "cpu", "--out", npy).returncode == 0
    embeddings = np.load(npy)
    index = list(csv.DictReader(open(f"{npy}.index.csv")))
    assert len(index) == len(embeddings)
    pooled = tmp_path / "p.parquet"
    assert run_cli("embed", EXAMPLES, "--model", small_model, "--device", "cpu", "--pool", "mean",
                   "--out", pooled).returncode == 0
    table = pq.read_table(pooled)
    sources = sorted({row["source"] for row in index})
    assert table.column("source").to_pylist() == sources
    first = np.array([table.column(f"e{i}")[0].as_py() for i in range(128)])
    np.testing.assert_allclose(first, embeddings[[r["source"] == sources[0] for r in index]].mean(axis=0), rtol=1e-5, atol=1e-6)
    quantized = tmp_path / "q.dat"
    assert run_cli("embed", EXAMPLES, "--model", small_model, "--device", "cpu", "--postprocess",
                   "--out", quantized).returncode == 0
    q = np.fromfile(quantized, "<f8").reshape(-1, 128)
    assert q.shape == embeddings.shape and (q == np.round(q)).all() and q.min() >= 0 and q.max() <= 255


def test_pipeline_memory_is_bounded_with_a_slow_consumer():
    """Finished batches must not pile up when the caller (writing rows) is slower than the devices."""
    import tracemalloc

    def blocks():
        for a in range(0, 12_800, 256):
            data = np.ones((256, 96, 64), np.float32)
            yield InputRows(0, Block(Path("x"), np.arange(a, a + 256), np.zeros(256), np.zeros(256), examples=data))

    def fast(batch):
        return np.zeros((len(batch.inputs), 128), np.float32)

    tracemalloc.start()
    try:
        for _ in run_batches(batches(blocks(), 64), [fast, fast]):
            time.sleep(0.002)  # a consumer much slower than the workers
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 60 * 2**20, f"{peak / 2**20:.0f} MB at peak for 315 MB of inputs"


def test_job_errors_name_arguments_as_the_caller_named_them(tiny_model, tmp_path):
    """From Python, the job's keyword arguments (on_error='sometimes', resume=True, pool='none'); from the
    command line, its options (--resume, --pool none), in the same messages."""
    from vggish_rt.engine.errors import VggishError
    from vggish_rt.engine.job import JobOptions, run_job

    spectrogram_dat(tmp_path / "a.dat", 3)
    embedder = Embedder(tiny_model, device="cpu")
    with pytest.raises(VggishError) as error:
        run_job([tmp_path / "a.dat"], tmp_path / "o.npy", embedder, JobOptions(on_error="sometimes"))
    assert str(error.value) == "on_error='sometimes': expected fail or skip"
    with pytest.raises(VggishError, match=r"^resume=True: no unfinished job for .*o\.npy"):
        run_job([tmp_path / "a.dat"], tmp_path / "o.npy", embedder, JobOptions(), resume=True)
    with pytest.raises(VggishError, match=r"^out='.*o\.tfrecord': \.tfrecord holds quantized embeddings per example: "
                                          r"use it with postprocessor and pool='none'$"):
        run_job([tmp_path / "a.dat"], tmp_path / "o.tfrecord", embedder, JobOptions())
    import soundfile as sf

    sf.write(tmp_path / "b.wav", np.zeros(16000, np.float32), 16000)  # audio: the tiny model has no e2e graph
    with pytest.raises(VggishError, match=r"has no vggish\.e2e\.onnx for precision='fp32'; .* or use frontend='numpy'$"):
        run_job([tmp_path / "b.wav"], tmp_path / "o.npy", embedder, JobOptions())
    common = ("--model", tiny_model, "--device", "cpu", "--out", tmp_path / "o.npy")
    assert_one_line_error(run_cli("embed", tmp_path / "a.dat", *common, "--resume"), "error: --resume: no unfinished job")
    assert_one_line_error(run_cli("embed", tmp_path / "b.wav", *common),
                          "has no vggish.e2e.onnx for --precision fp32;", "or use --frontend numpy")


@pytest.mark.parametrize("processes", [(), ("--processes", "2")])
def test_a_run_that_fails_on_the_device_is_one_line_and_the_store_resumable(tmp_path, processes):
    """onnxruntime failing mid-job (a real failed run: engine.runner's DeviceFailure) is one line naming the
    device, the input and example reached, the rows kept and the --resume command, never an internal error;
    the store stays, and --resume goes on from it (and meets the same batch again)."""
    model = write_failing_model(tmp_path / "failing")
    data = np.random.default_rng(0).uniform(-1, 1, (600, 96, 64))
    data[450, 7, 7] = 9.0  # example 450: its batch (64 rows: examples 448-511) fails inside onnxruntime
    data.tofile(tmp_path / "a.dat")
    command = ("embed", tmp_path / "a.dat", "--model", model, "--device", "cpu", "--batch-size", "64",
               "--commit-every", "0", *processes, "--out", tmp_path / "o.npy")
    result = run_cli(*command)
    assert_one_line_error(result, "error: cpu: onnxruntime failed running a batch of 64 rows (",
                          "indices element out of data bounds", "), at ", "a.dat example 448;",
                          "the 448 rows committed so far are kept in ", "o.npy.partial: the same command with "
                          "--resume goes on from there")
    assert "internal error" not in result.stderr and not (tmp_path / "o.npy").exists()
    again = run_cli(*command, "--resume")
    assert_one_line_error(again, "a.dat example 448;", "the 448 rows committed so far")
