"""The job on several device processes (engine.shards): the bytes of the single-process job, resume after kill -9."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from test_decoding import _tone
from test_job import kill_at_rows, spectrogram_dat
from vggish_rt.engine import Embedder, shards
from vggish_rt.engine.job import JobOptions, failures_path, run_job


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    """Audio of very different lengths and spectrogram files cut into several units, one of them bad mid-way."""
    d = tmp_path_factory.mktemp("shards")
    bad = spectrogram_dat(d / "d_nan.dat", 700, seed=2)
    bad[400] = np.nan  # in the second unit of 256 rows: the first unit is kept, the third dropped
    bad.tofile(d / "d_nan.dat")
    spectrogram_dat(d / "b_rows.dat", 600, seed=1)
    return [_tone(d / "a_long.wav", 70.0, 48_000, channels=2, seed=1), d / "b_rows.dat",
            _tone(d / "c_short.wav", 0.4, 16_000, seed=2), d / "d_nan.dat",
            _tone(d / "e_clip.wav", 2.5, 16_000, seed=3)]


FORMATS = [(".npy", {}), (".csv", {}), (".parquet", {}), (".dat", {}), (".npy", {"pool": "mean"}),
           (".csv", {"postprocess": True})]


@pytest.mark.slow
def test_two_processes_write_the_bytes_of_one_in_every_format(small_model, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "UNIT_ROWS", 256)
    embedder = Embedder(small_model, device="cpu", batch_size=32)
    for number, (suffix, options) in enumerate(FORMATS):
        postprocessor = embedder.model.postprocessor() if options.get("postprocess") else None
        written = {}
        for processes in (None, 2):  # None: in this process
            out = tmp_path / f"f{number}p{processes}{suffix}"
            report = run_job(inputs, out, embedder, JobOptions(pool=options.get("pool", "none"), on_error="skip",
                                                               postprocessor=postprocessor, processes=processes))
            assert [path for path, _ in report.failures] == [str(inputs[3])]
            assert report.short_inputs == [str(inputs[2])] and report.inputs_done == 4
            files = [out, Path(f"{out}.index.csv"), failures_path(out)]
            written[processes] = ([f.read_bytes() for f in files if f.exists()], report.rows)
        assert written[None] == written[2], (suffix, options)
        assert written[2][1] == (3 if options.get("pool") else 72 + 600 + 256 + 2), (suffix, options)


def test_resume_after_kill_9_with_two_processes_gives_identical_bytes(small_model, tmp_path):
    for i in range(3):
        spectrogram_dat(tmp_path / f"s{i:02d}.dat", 100, seed=i)
    args = ["embed", *sorted(tmp_path.glob("s*.dat")), "--model", small_model, "--device", "cpu",
            "--batch-size", "16", "--commit-every", "0.01", "--processes", "2"]
    reference = run_cli(*args, "--out", tmp_path / "ref.npy")
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "resumed.npy"
    kill_at_rows(args, out, (100,))
    resumed = run_cli(*args[:-2], "--out", out, "--resume")  # any number of processes: here, in this one
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert Path(f"{out}.index.csv").read_bytes() == Path(f"{tmp_path / 'ref.npy'}.index.csv").read_bytes()


def test_a_process_that_cannot_start_is_one_clear_error(tiny_model_dir, tmp_path):
    spectrogram_dat(tmp_path / "x.dat", 10)
    result = run_cli("embed", tmp_path / "x.dat", "--model", tiny_model_dir, "--device", "cpu", "--processes", "2",
                     "--precision", "fp16", "--out", tmp_path / "x.npy")
    assert result.returncode == 2 and "fp16" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture()
def tiny_model_dir(tmp_path):
    from conftest import write_tiny_model

    return write_tiny_model(tmp_path / "tiny")


def test_a_unit_whose_file_is_gone_is_that_input_failing(tmp_path):
    """A device process reads a spectrogram unit through the job's reader: a file removed after the plan is
    a VggishError naming it (the input fails, under --on-error), not an OSError that ends the process."""
    from vggish_rt.engine.errors import VggishError
    from vggish_rt.engine.shards import Unit, _unit_blocks
    from vggish_rt.engine.sources import ReadOptions

    with pytest.raises(VggishError, match="gone.dat: cannot be read"):
        list(_unit_blocks(Unit(0, 0, str(tmp_path / "gone.dat"), 0, 10), 4, ReadOptions(), None))
