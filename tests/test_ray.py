"""The embed job on a local Ray cluster (CPU, 2 actors): the same output as a single-process run, through the
same sink (store, formats, failures file)."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
import pyarrow.parquet as pq  # noqa: E402

from conftest import run_cli, write_tiny_model  # noqa: E402
from test_audio import EXAMPLES  # noqa: E402
from test_job import spectrogram_dat  # noqa: E402
from vggish_rt.engine.formats import EMBEDDING_COLUMNS  # noqa: E402


def parquet_rows(path: Path):
    """(index rows, float32 [N,128]) of an ``embed --out X.parquet``."""
    table = pq.read_table(path)
    values = np.stack([table[c].to_numpy() for c in EMBEDDING_COLUMNS], axis=1)
    return list(zip(table["source"].to_pylist(), table["example"].to_pylist())), values


@pytest.fixture()
def mixed_inputs(tmp_path):
    """Audio, a spectrogram, a broken and a short file, and a copy of an audio file under a name that is
    not UTF-8 (file names are bytes)."""
    audio = [p for p in sorted(EXAMPLES.iterdir()) if p.suffix in (".wav", ".oga")][:3]
    spectrogram_dat(tmp_path / "spec.dat", 10)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    import soundfile as sf
    sf.write(tmp_path / "short.wav", np.zeros(800), 16000)
    latin1 = tmp_path / os.fsdecode(b"caf\xe9.wav")
    latin1.write_bytes(audio[0].read_bytes())
    return [audio[0], tmp_path / "broken.wav", tmp_path / "spec.dat", audio[1], tmp_path / "short.wav", latin1, audio[2]]


@pytest.mark.slow
def test_ray_job_equals_single_process_run_row_for_row(small_model, mixed_inputs, tmp_path):
    """The same @list on Ray as in one process: the same rows, index, failures file and notes, pooled too; a name that is
    not UTF-8 is embedded (\\xNN in the index). On Ray's command line such a name is one clear error
    (Ray sends the command line as UTF-8), pointing to @list."""
    (tmp_path / "inputs.txt").write_bytes(b"".join(os.fsencode(p) + b"\n" for p in mixed_inputs))
    inputs = f"@{tmp_path / 'inputs.txt'}"
    single = run_cli("embed", inputs, "--model", small_model, "--device", "cpu", "--on-error", "skip",
                     "--out", tmp_path / "single.npy")
    assert single.returncode == 1, single.stderr
    on_ray = run_cli("embed", inputs, "--model", small_model, "--ray", "--ray-actors", "2",
                     "--out", tmp_path / "ray.npy", env={"RAY_ADDRESS": ""})
    assert on_ray.returncode == 1, on_ray.stderr  # one input failed: reported, the rest done
    assert "broken.wav" in on_ray.stderr and "Traceback" not in on_ray.stderr
    assert Path(f"{tmp_path / 'ray.npy'}.index.csv").read_bytes() == Path(f"{tmp_path / 'single.npy'}.index.csv").read_bytes()
    assert b"caf\\xe9.wav" in Path(f"{tmp_path / 'ray.npy'}.index.csv").read_bytes()
    values, expected = np.load(tmp_path / "ray.npy"), np.load(tmp_path / "single.npy")
    assert values.shape == expected.shape and len(expected) > 10
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-5)
    assert Path(f"{tmp_path / 'ray.npy'}.failures.csv").read_bytes() == \
        Path(f"{tmp_path / 'single.npy'}.failures.csv").read_bytes()
    with open(f"{tmp_path / 'ray.npy'}.failures.csv", newline="") as f:
        failures = list(csv.DictReader(f))
    assert [row["source"] for row in failures] == [str(mixed_inputs[1])]
    assert not Path(f"{tmp_path / 'ray.npy'}.partial").exists()
    pooled = run_cli("embed", inputs, "--model", small_model, "--ray", "--ray-actors", "2", "--pool", "mean",
                     "--out", tmp_path / "ray_pooled.npy", env={"RAY_ADDRESS": ""})
    single_pooled = run_cli("embed", inputs, "--model", small_model, "--device", "cpu", "--on-error", "skip",
                            "--pool", "mean", "--out", tmp_path / "single_pooled.npy")
    assert pooled.returncode == single_pooled.returncode == 1, pooled.stderr
    np.testing.assert_allclose(np.load(tmp_path / "ray_pooled.npy"), np.load(tmp_path / "single_pooled.npy"),
                               rtol=0, atol=1e-5)
    assert "short.wav: shorter than 0.975 s" in on_ray.stderr
    direct = run_cli("embed", mixed_inputs[5], "--model", small_model, "--ray", "--out", tmp_path / "ray_direct.npy",
                     env={"RAY_ADDRESS": ""})
    assert direct.returncode == 2 and "@list" in direct.stderr and "Traceback" not in direct.stderr, direct.stderr


class CrashOnce:
    """Mixed into EmbedStage by the test: the first actor to see an example 20 kills its own process, once;
    example 25 of ``overflowing`` embeds to NaN (as a model that overflows would give)."""

    marker: str = ""
    overflowing: str = ""

    def __call__(self, batch):
        if 20 in batch["example"] and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)  # a real death of the actor process, as a lost node or an OOM kill gives
        out = super().__call__(batch)
        out["embedding"][(batch["source"] == self.overflowing) & (batch["example"] == 25)] = np.nan
        return out


@pytest.mark.slow
def test_killed_actor_is_retried_without_losing_or_doubling_rows(tmp_path):
    """Also: a non-finite row fails its input from there on (its rows 0-24 kept), as in one process."""
    from vggish_rt.engine.ray_stage import EmbedStage, RayOptions, run_ray_job
    from vggish_rt.engine.sources import ReadOptions

    model = write_tiny_model(tmp_path / "model")
    inputs = [tmp_path / f"s{i}.dat" for i in range(3)]
    expected = np.concatenate([spectrogram_dat(path, 30, seed=i) for i, path in enumerate(inputs)])
    stage = type("CrashingStage", (CrashOnce, EmbedStage), {"marker": str(tmp_path / "crashed"),
                                                            "overflowing": str(inputs[1])})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        report = run_ray_job(inputs, tmp_path / "out.parquet", {"model_dir": str(model), "batch_size": 8},
                             ReadOptions(), RayOptions(actors=2), stage=stage)
    finally:
        ray.shutdown()
    assert (tmp_path / "crashed").exists(), "the actor never crashed: the test tested nothing"
    rows, values = parquet_rows(tmp_path / "out.parquet")
    kept = [(str(p), i) for p in inputs for i in range(30)]
    assert rows == [(p, i) for p, i in kept if not (p == str(inputs[1]) and i >= 25)]
    from vggish_rt.engine import Embedder
    reference = Embedder(model, device="cpu").embed_examples(expected)
    np.testing.assert_allclose(values, np.concatenate([reference[:55], reference[60:]]), rtol=0, atol=1e-5)
    assert report.rows == 85 and report.inputs_done == 2
    assert [path for path, _ in report.failures] == [str(inputs[1])] and "example 25 embeds to NaN" in report.failures[0][1]


def test_an_input_removed_under_a_ray_task_is_a_failed_input(tmp_path):
    """decode_source (a Ray task's work, called here without a cluster) reads through the job's reader: a
    spectrogram file gone when its task runs gives one 'ended' row naming it and why, not an exception in the
    task; an input read whole ends with an 'ended' row without a reason."""
    from vggish_rt.engine.ray_stage import decode_source
    from vggish_rt.engine.sources import ReadOptions

    spectrogram_dat(tmp_path / "kept.dat", 3)
    batches = [list(decode_source({"order": np.array([i]), "path": np.array([os.fsencode(tmp_path / name)])},
                                  ReadOptions())) for i, name in enumerate(("kept.dat", "gone.dat"))]
    assert [str(s) for s in batches[0][0]["status"]] == ["ok"] * 3
    assert str(batches[0][1]["status"][0]) == "ended" and str(batches[0][1]["reason"][0]) == ""
    (marker,) = batches[1]
    assert str(marker["status"][0]) == "ended" and "gone.dat: cannot be read" in str(marker["reason"][0])
