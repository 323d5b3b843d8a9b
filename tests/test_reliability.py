"""Reliability and security: a corpus of bad inputs, hostile model directories, kill -9, memory and disk limits.

docs/reliability.md lists each promise and the test here that proves it.
"""
from __future__ import annotations

import csv
import os
import random
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli, run_cli_peak_memory, write_tiny_model
from corpus import bad_input_names, bad_inputs, bad_model_directories, odd_inputs, pickled_pca
from test_job import kill_at_rows, spectrogram_dat, wait_for_rows

from vggish_rt.engine import Embedder, VggishError
from vggish_rt.engine.job import JobOptions, run_job
from vggish_rt.engine.sources import ReadOptions


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return bad_inputs(tmp_path_factory.mktemp("corpus"))


def embed_cli(*args, model, out, extra=()):
    return run_cli("embed", *args, "--model", model, "--device", "cpu", "--frontend", "numpy", "--out", out, *extra)


def test_corpus_is_large_enough(corpus, tmp_path, tiny_model):
    assert len(corpus) >= 40 and len(bad_model_directories(tiny_model, tmp_path)) >= 12


@pytest.mark.parametrize("name", bad_input_names())
def test_each_bad_input_is_one_clear_error_and_no_output(corpus, tiny_model, tmp_path, name):
    path, fragment = corpus[name]
    result = embed_cli(path, model=tiny_model, out=tmp_path / "out.npy")
    assert_one_line_error(result, str(path), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a failed job left files behind"


def test_on_error_skip_finishes_the_job_and_reports_every_bad_input(corpus, tiny_model, tmp_path):
    good_audio = tmp_path / "good.wav"
    import soundfile as sf
    sf.write(good_audio, 0.3 * np.sin(np.arange(48000) / 7.0), 16000, subtype="PCM_16")
    good_spectrogram = tmp_path / "good.dat"
    spectrogram_dat(good_spectrogram, 5)
    bad = [path for path, _ in corpus.values() if not path.is_dir()]
    out = tmp_path / "out.csv"
    result = embed_cli(good_audio, *bad, good_spectrogram, model=tiny_model, out=out, extra=["--on-error", "skip"])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    with open(out, newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert {row[0] for row in rows} == {str(good_audio), str(good_spectrogram)}
    assert len(rows) == 3 + 5  # 3 s of audio -> 3 examples, plus the 5 spectrogram rows
    with open(f"{out}.failures.csv", newline="") as f:
        failures = {row["source"]: row["reason"] for row in csv.DictReader(f)}
    assert set(failures) == {str(p) for p in bad}
    for path, fragment in corpus.values():
        if not path.is_dir():
            assert fragment in failures[str(path)], (path, failures[str(path)])


def test_inputs_too_short_for_an_example_are_noted_not_failed(tiny_model, tmp_path):
    odd = odd_inputs(tmp_path / "odd")
    spectrogram_dat(tmp_path / "good.dat", 4)
    out = tmp_path / "out.npy"
    result = embed_cli(*odd.values(), tmp_path / "good.dat", model=tiny_model, out=out)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:") and "no example" in line]
    assert len(notes) == len(odd) and all(any(str(p) in n for n in notes) for p in odd.values())
    assert np.load(out).shape == (4, 128)
    padded = embed_cli(odd["clip_0_1_s"], model=tiny_model, out=tmp_path / "padded.npy", extra=["--pad-short"])
    assert padded.returncode == 0 and np.load(tmp_path / "padded.npy").shape == (1, 128)


def test_three_hours_of_silence_stream_in_flat_memory(tmp_path):
    """A 3-hour WAV (sparse on disk; 691 MB as float32 samples) decodes in blocks: 11,249 examples of
    log(0.01), memory flat."""
    from corpus import wav_bytes

    samples = 3 * 3600 * 16000
    path = tmp_path / "silence_3h.wav"
    with open(path, "wb") as f:
        f.write(wav_bytes(data=b"", declared=samples * 2))
        f.truncate(f.tell() + samples * 2)
    out = tmp_path / "silence.npy"
    result, peak_mb = run_cli_peak_memory("features", path, "--out", out)
    assert result.returncode == 0, result.stderr
    examples = (samples - 15600) // 15360 + 1
    features = np.load(out, mmap_mode="r")
    assert features.shape == (examples, 96, 64)
    np.testing.assert_allclose(features[-1], np.log(0.01), atol=1e-6)
    np.testing.assert_allclose(features[examples // 2], np.log(0.01), atol=1e-6)
    assert peak_mb < 300, f"peak resident memory {peak_mb:.0f} MB"


@pytest.mark.parametrize("name", ["no_manifest", "manifest_not_json", "manifest_wrong_format", "manifest_future_version",
                                  "checksum_mismatch", "model_file_missing", "path_escape", "absolute_path",
                                  "symlinked_model", "external_data_outside", "external_data_in_function",
                                  "external_data_in_sparse_attribute", "not_onnx", "empty_directory",
                                  "not_a_directory"])
def test_hostile_or_broken_model_directory_is_refused_before_anything_runs(tiny_model, tmp_path, name):
    directories = bad_model_directories(tiny_model, tmp_path / "models")
    model, fragment = directories[name]
    spectrogram_dat(tmp_path / "x.dat", 2)
    result = embed_cli(tmp_path / "x.dat", model=model, out=tmp_path / "out.npy")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out.npy").exists() and not (tmp_path / "out.npy.partial").exists()


def test_pickled_pca_file_is_refused(small_model, tmp_path):
    model, fragment = pickled_pca(small_model, tmp_path)
    spectrogram_dat(tmp_path / "x.dat", 2)
    result = run_cli("embed", tmp_path / "x.dat", "--model", model, "--device", "cpu", "--postprocess",
                     "--out", tmp_path / "out.npy")
    assert_one_line_error(result, "pca_params.npz", fragment)
    assert not (tmp_path / "out.npy").exists()


def test_kill_9_at_random_points_then_resume_is_byte_identical(small_model, tmp_path):
    """Two kills at seeded random row counts (printed on failure), each followed by --resume.

    Paced jobs (test_job.kill_at_rows) and kill points at least 100 rows before the end: unpaced,
    the tiny model finished 2,000 rows between two polls of the journal.
    """
    spectrogram_dat(tmp_path / "spec.dat", 300)
    args = ["embed", tmp_path / "spec.dat", "--model", small_model, "--device", "cpu", "--batch-size", "16",
            "--commit-every", "0.01"]
    reference = run_cli(*args, "--out", tmp_path / "ref.npy")
    assert reference.returncode == 0, reference.stderr
    points = sorted(random.Random(20261121).sample(range(0, 200, 16), 2))
    out = tmp_path / "resumed.npy"
    kill_at_rows(args, out, tuple(points))
    resumed = run_cli(*args, "--out", out, "--resume")
    assert resumed.returncode == 0, (points, resumed.stderr)
    assert out.read_bytes() == (tmp_path / "ref.npy").read_bytes(), points
    index = Path(f"{out}.index.csv").read_text().splitlines()
    assert index == Path(f"{tmp_path / 'ref.npy'}.index.csv").read_text().splitlines()
    assert len(index) - 1 == len(set(index[1:])) == 300, "rows embedded twice or skipped"


def test_out_of_memory_halves_the_batch_and_the_job_goes_on(tiny_model, monkeypatch, capsys):
    """onnxruntime's own allocation error above 5 rows (as a GPU gives it at a large batch): halved until it fits."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    from vggish_rt.engine import runner as runner_module

    real_create = runner_module.create_session

    class LimitedSession:
        """A real session that fails as onnxruntime does when a batch needs more than the allocator has."""

        def __init__(self, session: ort.InferenceSession) -> None:
            self.session = session

        def run(self, outputs, feeds, run_options=None):
            rows = len(next(iter(feeds.values())))
            if rows > 5:
                raise RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned "
                                       "while running Conv node. Name:'vggish/conv1/Conv2D' Status Message: "
                                       f"Failed to allocate memory for requested buffer of size {rows * 25165824}")
            return self.session.run(outputs, feeds, run_options)

    monkeypatch.setattr(runner_module, "create_session", lambda *a, **k: LimitedSession(real_create(*a, **k)))
    examples = np.random.default_rng(4).normal(-2.0, 1.0, (50, 96, 64)).astype(np.float32)
    limited = Embedder(tiny_model, device="cpu", batch_size=24).embed_examples(examples)
    monkeypatch.setattr(runner_module, "create_session", real_create)
    plain = Embedder(tiny_model, device="cpu", batch_size=24).embed_examples(examples)
    np.testing.assert_allclose(limited, plain, rtol=1e-6, atol=1e-6)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "out of memory" in line]
    assert warnings == ["warning: cpu ran out of memory at batch size 24; going on at 12 (set batch_size=12 to start there)",
                        "warning: cpu ran out of memory at batch size 12; going on at 6 (set batch_size=6 to start there)",
                        "warning: cpu ran out of memory at batch size 6; going on at 3 (set batch_size=3 to start there)"]


def test_out_of_memory_at_batch_size_1_is_the_jobs_error(tiny_model, monkeypatch):
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    from vggish_rt.engine import runner as runner_module
    from vggish_rt.engine.errors import VggishError

    class NoMemory:
        def run(self, outputs, feeds, run_options=None):
            raise RuntimeException("CUDA failure 2: out of memory ; GPU=0")

    monkeypatch.setattr(runner_module, "create_session", lambda *a, **k: NoMemory())
    with pytest.raises(VggishError, match="out of memory even at batch size 1"):
        Embedder(tiny_model, device="cpu", batch_size=4).embed_examples(np.zeros((4, 96, 64), np.float32))


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_disk_full_mid_write_keeps_previous_output_and_says_so(tiny_model, tmp_path, suffix):
    """The file-size limit (RLIMIT_FSIZE) fails writes with EFBIG part-way, as a full disk fails them with ENOSPC."""
    spectrogram_dat(tmp_path / "small.dat", 3)
    spectrogram_dat(tmp_path / "big.dat", 600, seed=1)
    out = tmp_path / f"out{suffix}"
    first = embed_cli(tmp_path / "small.dat", model=tiny_model, out=out)
    assert first.returncode == 0, first.stderr
    previous = out.read_bytes()
    command = [sys.executable, "-m", "vggish_rt.cli", "embed", str(tmp_path / "big.dat"), "--model", str(tiny_model),
               "--device", "cpu", "--frontend", "numpy", "--batch-size", "16", "--commit-every", "0", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size(150_000))
    assert_one_line_error(result, str(out), "File too large", "intact", "rows committed so far are kept", "--resume")
    assert out.read_bytes() == previous
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
    resumed = embed_cli(tmp_path / "big.dat", model=tiny_model, out=out, extra=["--batch-size", "16", "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    reference = embed_cli(tmp_path / "big.dat", model=tiny_model, out=tmp_path / f"ref{suffix}", extra=["--batch-size", "16"])
    assert reference.returncode == 0
    if suffix != ".parquet":  # Parquet files record their writer's settings, not the rows' history
        assert out.read_bytes() == (tmp_path / f"ref{suffix}").read_bytes()


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tiny_model, tmp_path):
    """The same file by path, through ``d/..``, by symbolic and by hard link, as the output or its index:
    exit 2 and one error line before any work, the input byte for byte as it was."""
    data = tmp_path / "x.dat"
    spectrogram_dat(data, 3)
    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(4, 128)).astype(np.float32))
    (tmp_path / "d").mkdir()
    os.link(data, tmp_path / "hard.dat")
    os.symlink(data, tmp_path / "soft.dat")
    os.link(data, tmp_path / "y.npy.index.csv")  # the index of --out y.npy would write over the input
    before = data.read_bytes(), (tmp_path / "e.npy").read_bytes()
    embed = ["embed", data, "--model", tiny_model, "--device", "cpu", "--out"]
    cases = [[*embed, data], [*embed, tmp_path / "d" / ".." / "x.dat"], [*embed, tmp_path / "hard.dat"],
             [*embed, tmp_path / "soft.dat"], [*embed, tmp_path / "y.npy"],
             ["postprocess", tmp_path / "e.npy", "--model", tiny_model, "--out", tmp_path / "e.npy"],
             ["fit-pca", tmp_path / "e.npy", "--out", tmp_path / "e.npy"]]
    for case in cases:
        assert_one_line_error(run_cli(*case), "refusing to write over an input")
        assert (data.read_bytes(), (tmp_path / "e.npy").read_bytes()) == before, case
    # An output in the inputs' folder: a killed run's lock and store beside it are inputs when the folder is
    # named again (a directory gives every file); the job would truncate the lock and remove the store.
    (tmp_path / "z.npy.partial").mkdir()
    os.link(data, tmp_path / "z.npy.partial" / "rows.bin")
    os.link(data, tmp_path / "z.npy.lock")
    for leftover in (tmp_path / "z.npy.partial" / "rows.bin", tmp_path / "z.npy.lock"):
        with pytest.raises(VggishError, match="refusing to write over an input"):
            run_job([leftover], tmp_path / "z.npy", Embedder(tiny_model, device="cpu"), JobOptions())
        assert data.read_bytes() == before[0] and leftover.exists()


def test_a_second_job_on_the_same_output_is_refused_and_the_first_finishes(small_model, tmp_path):
    """The first job is paused (SIGSTOP) once it has committed rows, so the second job meets it mid-way
    however fast the machine is; then it goes on (SIGCONT) and finishes."""
    spectrogram_dat(tmp_path / "spec.dat", 1000)
    args = ["embed", tmp_path / "spec.dat", "--model", small_model, "--device", "cpu", "--batch-size", "1",
            "--commit-every", "0"]
    out = tmp_path / "out.npy"
    first = subprocess.Popen([sys.executable, "-m", "vggish_rt.cli", *map(str, args), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(out.with_name(out.name + ".partial"), 1, first)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert first.poll() is None, "the first job ended before it was paused"
        assert_one_line_error(run_cli(*args, "--out", out), "another job is writing it")
        assert_one_line_error(run_cli(*args, "--out", out, "--resume"), "another job is writing it")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert run_cli(*args, "--out", tmp_path / "ref.npy").returncode == 0
    assert out.read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert not out.with_name(out.name + ".lock").exists() and not out.with_name(out.name + ".partial").exists()


def test_a_directory_as_the_output_is_refused_before_any_work(tiny_model, tmp_path):
    spectrogram_dat(tmp_path / "x.dat", 2)
    (tmp_path / "taken.npy").mkdir()
    assert_one_line_error(run_cli("embed", tmp_path / "x.dat", "--model", tiny_model, "--device", "cpu",
                                  "--out", tmp_path / "taken.npy"), "is a directory")


def test_no_non_finite_row_is_ever_written(tiny_model, tmp_path, monkeypatch):
    """Bounded inputs cannot overflow the network; should a model overflow anyway, no NaN row is written:
    the input is named and fails under --on-error (here a real session whose outputs are made NaN for one
    input's examples)."""
    from vggish_rt.engine import runner as runner_module
    from vggish_rt.engine.errors import VggishError

    spectrogram_dat(tmp_path / "a.dat", 4, seed=1)
    spectrogram_dat(tmp_path / "b.dat", 4, seed=2)
    real_create = runner_module.create_session

    class Overflowing:
        def __init__(self, session) -> None:
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def run(self, outputs, feeds, *args, **kwargs):
            result = self.session.run(outputs, feeds, *args, **kwargs)
            first = next(iter(feeds.values()))
            result[0][np.abs(np.asarray(first)).reshape(len(first), -1).max(axis=1) > 100] = np.nan
            return result

    monkeypatch.setattr(runner_module, "create_session", lambda *a, **k: Overflowing(real_create(*a, **k)))
    data = np.fromfile(tmp_path / "b.dat").reshape(4, 96, 64)
    data[2] = 500.0  # within the input bound (1,000), above what this "model" carries
    data.tofile(tmp_path / "b.dat")
    inputs, embedder = [tmp_path / "a.dat", tmp_path / "b.dat", tmp_path / "a.dat"], Embedder(tiny_model, device="cpu", batch_size=3)
    with pytest.raises(VggishError, match=r"b\.dat: example 2 embeds to NaN or Inf"):
        run_job(inputs, tmp_path / "out.npy", embedder, JobOptions())
    assert not (tmp_path / "out.npy").exists()
    # under skip, b.dat fails from example 2 on (its rows 0-1 kept, as for an input that turns bad part-way);
    # its example 3 is in the same batch (3 rows) or a later one (1 row)
    for batch_size in (3, 1):
        out = tmp_path / f"out{batch_size}.npy"
        report = run_job(inputs, out, Embedder(tiny_model, device="cpu", batch_size=batch_size),
                         JobOptions(on_error="skip"))
        written = np.load(out)
        assert np.isfinite(written).all() and len(written) == report.rows == 4 + 2 + 4
        index = Path(f"{out}.index.csv").read_text().splitlines()[1:]
        assert [line.split(",")[:2] for line in index[4:7]] == [[str(inputs[1]), "0"], [str(inputs[1]), "1"],
                                                                 [str(inputs[2]), "0"]]
        assert report.inputs_done == 2 and [path for path, _ in report.failures] == [str(inputs[1])]
        assert "example 2 embeds to NaN or Inf" in report.failures[0][1]
        assert "b.dat" in Path(f"{out}.failures.csv").read_text()
    pooled = run_job(inputs, tmp_path / "pooled.npy", embedder, JobOptions(on_error="skip", pool="mean"))
    assert pooled.rows == 2 and np.isfinite(np.load(tmp_path / "pooled.npy")).all()  # no row from the failed input


def test_file_names_that_are_not_utf8_are_embedded_and_reported(small_model, tmp_path):
    """File names are bytes on POSIX: a directory job embeds a Latin-1 name and reports a bad one under
    --on-error skip, both written \\xNN in the outputs (an internal error stopped the whole job before)."""
    import csv

    from corpus import wav_bytes
    from vggish_rt.engine.job import failures_path

    directory = tmp_path / "inputs"
    directory.mkdir()
    tone = np.sin(np.arange(40_000) * 0.05) * 0.5
    pcm = (tone * 32767).astype("<i2").tobytes()
    (directory / os.fsdecode(b"caf\xe9.wav")).write_bytes(wav_bytes(data=pcm))
    (directory / "plain.wav").write_bytes(wav_bytes(data=pcm[:32_000]))
    (directory / os.fsdecode(b"bad\xff.wav")).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "out.csv"
    result = run_cli("embed", directory, "--model", small_model, "--device", "cpu", "--on-error", "skip", "--out", out)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    with open(out, encoding="utf-8", newline="") as f:
        sources = [row[0] for row in list(csv.reader(f))[1:]]
    assert [Path(s).name for s in sources] == ["caf\\xe9.wav"] * 2 + ["plain.wav"]
    assert "bad\\xff.wav" in failures_path(out).read_text(encoding="utf-8")
    # two device processes: the same bytes (their rows' names were written raw: an internal error, .lock left)
    (directory / os.fsdecode(b"spec\xe9.dat")).write_bytes(np.zeros((3, 96, 64)).tobytes())
    outputs = []
    for processes in ((), ("--processes", "2")):
        outputs.append(tmp_path / f"out{len(processes)}.csv")
        result = run_cli("embed", directory, "--model", small_model, "--device", "cpu", "--on-error", "skip",
                         *processes, "--out", outputs[-1])
        assert result.returncode == 1 and "internal error" not in result.stderr, result.stderr
    for one, two in ((outputs[0], outputs[1]), (failures_path(outputs[0]), failures_path(outputs[1]))):
        assert one.read_bytes() == two.read_bytes()
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("kind, signum", [("audio", signal.SIGTERM), ("spectrogram", signal.SIGINT)])
def test_ctrl_c_and_sigterm_end_with_one_line_and_a_resumable_store(small_model, tmp_path, kind, signum):
    """Sent to the whole process group, as a terminal's Ctrl-C is (decoding workers included): one error line
    saying what was kept, exit 128 + the signal, no traceback; --resume then finishes the job. The group is
    paused (SIGSTOP) when the first rows are committed and the signal lands as it goes on, so the job is
    caught mid-way however fast the machine."""
    from test_decoding import _tone

    source = _tone(tmp_path / "long.wav", 600.0, 16_000) if kind == "audio" else tmp_path / "spec.dat"
    if kind == "spectrogram":
        spectrogram_dat(source, 1000)
    out = tmp_path / "out.npy"
    args = ["embed", source, "--model", small_model, "--device", "cpu", "--batch-size", "1", "--commit-every", "0"]
    job = subprocess.Popen([sys.executable, "-m", "vggish_rt.cli", *map(str, args), "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           # as a terminal's foreground job: Ctrl-C not ignored (a shell's background job has it ignored)
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_rows(out.with_name(out.name + ".partial"), 1, job)
    os.killpg(job.pid, signal.SIGSTOP)
    os.killpg(job.pid, signum)
    os.killpg(job.pid, signal.SIGCONT)
    stderr = job.communicate(timeout=120)[1]
    said = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    assert job.returncode == 128 + signum, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {said}; the ") and "--resume" in errors[0], stderr
    assert "Traceback" not in stderr, stderr
    resumed = run_cli(*args, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert len(np.load(out)) == (624 if kind == "audio" else 1000)


def test_input_lists_take_any_name_and_refuse_nested_lists(tmp_path):
    """An @list's lines are file names as bytes (not UTF-8 here); a line naming another list is refused with
    its line number (it was dropped without a word before)."""
    from vggish_rt.engine.errors import VggishError
    from vggish_rt.engine.inputs import expand_inputs

    latin1 = tmp_path / os.fsdecode(b"caf\xe9.dat")
    spectrogram_dat(latin1, 1)
    spectrogram_dat(tmp_path / "b.dat", 1)
    listing = tmp_path / "inputs.txt"
    listing.write_bytes(b"# comment\n" + os.fsencode(latin1) + b"\n\n" + os.fsencode(tmp_path / "b.dat") + b"\n")
    assert expand_inputs([f"@{listing}"]) == [latin1, tmp_path / "b.dat"]
    with open(listing, "ab") as f:
        f.write(b"@" + os.fsencode(listing) + b"\n")
    with pytest.raises(VggishError, match=r"inputs\.txt: line 5 names another list"):
        expand_inputs([f"@{listing}"])


def test_a_directory_gives_its_files_in_path_order_without_hidden_ones_or_linked_directories(tmp_path):
    """Sorted as Paths sort (part by part: 'a/b' before 'a b' and 'a-b'), symbolic links to files taken, linked
    directories not entered, hidden names below the directory (and everything under a hidden folder) counted."""
    from vggish_rt.engine.inputs import expand_inputs

    root = tmp_path / "in"
    for name in ["a-b", "a/b", "a/c/d.wav", "a b/c", "A", "10.wav", "9.wav", "b/.x", ".h/y.wav", "z/.git/c"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "z" / os.fsdecode(b"\xff.wav")).write_bytes(b"x")
    (root / "file_link").symlink_to(root / "a" / "b")
    (root / "dir_link").symlink_to(root / "a")
    (root / "broken").symlink_to(root / "nowhere")
    said = []
    found = expand_inputs([str(root)], said.append)
    assert [p.relative_to(root).as_posix() for p in found] == \
        ["10.wav", "9.wav", "A", "a/b", "a/c/d.wav", "a b/c", "a-b", "file_link", "z/" + os.fsdecode(b"\xff.wav")]
    assert found == sorted(p for p in root.rglob("*") if p.is_file() and ".h" not in p.parts and ".x" != p.name
                           and ".git" not in p.parts)
    assert len(said) == 1 and "3 hidden file(s) left out" in said[0]


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_an_input_removed_during_the_job_is_named_not_the_output(small_model, tmp_path, on_error):
    """The job is paused after its first rows, its second input removed, and it goes on: the input is the
    failure (under --on-error), not the output ("--out ...: writing failed" before)."""
    from vggish_rt.engine.job import failures_path

    spectrogram_dat(tmp_path / "a.dat", 200, seed=1)
    spectrogram_dat(tmp_path / "b.dat", 10, seed=2)
    out = tmp_path / "out.npy"
    job = subprocess.Popen([sys.executable, "-m", "vggish_rt.cli", "embed", str(tmp_path / "a.dat"), str(tmp_path / "b.dat"),
                            "--model", str(small_model), "--device", "cpu", "--batch-size", "1", "--commit-every", "0",
                            "--on-error", on_error, "--out", str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows(out.with_name(out.name + ".partial"), 1, job)
    os.kill(job.pid, signal.SIGSTOP)
    (tmp_path / "b.dat").unlink()
    os.kill(job.pid, signal.SIGCONT)
    stdout, stderr = job.communicate(timeout=120)
    assert "writing failed" not in stderr and "Traceback" not in stderr, stderr
    if on_error == "fail":
        assert job.returncode == 2 and "b.dat: cannot be read (No such file or directory)" in stderr, stderr
    else:
        assert job.returncode == 1 and "wrote 200 embeddings" in stdout, stdout + stderr
        assert "b.dat: cannot be read" in failures_path(out).read_text()


def test_float32_values_in_a_dat_are_refused_not_read_as_garbage(small_model, tmp_path):
    """A .dat holds float64; float32 log-mel saved as .dat (an even number of examples, so the size passes)
    was read as float64 without a word, giving garbage rows. Refused, naming the cause; float64 is read."""
    values = np.random.default_rng(5).normal(-2.0, 1.5, (6, 96, 64))
    values.astype(np.float32).tofile(tmp_path / "f32.dat")
    result = run_cli("embed", tmp_path / "f32.dat", "--model", small_model, "--device", "cpu", "-o", tmp_path / "a.npy")
    assert_one_line_error(result, "f32.dat: holds float32 values, not the float64 a .dat holds")
    assert not (tmp_path / "a.npy").exists()
    values.tofile(tmp_path / "f64.dat")
    from vggish_rt.engine.inputs import open_spectrograms

    np.testing.assert_array_equal(open_spectrograms(tmp_path / "f64.dat").read(0, 6), values)
    # --dat-dtype float32 reads them as what they are; the probe counts their rows (the progress bar's total)
    embedder = Embedder(small_model, device="cpu")
    expected = []
    report = run_job([tmp_path / "f32.dat"], tmp_path / "b.npy", embedder,
                     JobOptions(ReadOptions(dat_dtype="float32")), expect=expected.append)
    assert report.rows == 6 and expected == [6]
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), embedder.embed_examples(values.astype(np.float32)))
