"""`vggish-rt embed` end to end on the demo model: audio and spectrogram inputs, every output format."""
from __future__ import annotations

import csv

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from conftest import assert_one_line_error, run_cli
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.postprocess import Postprocessor
from vggish_rt.engine.windows import cut_windows


@pytest.fixture()
def tone_wav(tmp_path):
    t = np.arange(3 * 16000) / 16000
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 1000 * t), 16000, subtype="PCM_16")
    return path


def reference_embeddings(model_dir, examples):
    session = ort.InferenceSession(str(model_dir / "vggish.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": examples.astype(np.float32)})[0]


def test_embed_audio_to_npy_with_index(small_model, tone_wav, tmp_path):
    out = tmp_path / "emb.npy"
    result = run_cli("embed", tone_wav, "--model", small_model, "--device", "cpu", "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("NOT pretrained") == 1
    embeddings = np.load(out, allow_pickle=False)
    assert embeddings.shape == (3, 128) and embeddings.dtype == np.float32
    pcm = sf.read(tone_wav, dtype="int16")[0] / 32768.0
    expected = reference_embeddings(small_model, log_mel_examples(cut_windows(pcm)))
    np.testing.assert_allclose(embeddings, expected, rtol=1e-4, atol=1e-4)
    rows = list(csv.DictReader(open(str(out) + ".index.csv")))
    assert [r["example"] for r in rows] == ["0", "1", "2"]
    assert [float(r["start_s"]) for r in rows] == [0.0, 0.96, 1.92]
    assert all(r["source"] == str(tone_wav) for r in rows)


@pytest.mark.slow
def test_embed_seed_dat_to_csv_dat_parquet(small_model, tmp_path):
    rng = np.random.default_rng(0)
    spectrograms = rng.normal(-2.0, 1.5, (10, 96, 64))          # float64, as the seed notebook saves them
    spectrograms.tofile(tmp_path / "wavfile_spec.dat")
    expected = reference_embeddings(small_model, spectrograms)
    for suffix in (".csv", ".dat", ".parquet", ".npy"):
        out = tmp_path / f"wavfile_embed{suffix}"
        result = run_cli("embed", tmp_path / "wavfile_spec.dat", "--model", small_model, "--device", "cpu",
                         "--batch-size", "4", "--out", out)
        assert result.returncode == 0, result.stderr
        if suffix == ".csv":
            rows = list(csv.reader(open(out)))
            assert rows[0] == ["source", "example", "start_s", "end_s", *[f"e{i}" for i in range(128)]]
            got = np.array([[float(v) for v in row[4:]] for row in rows[1:]])
            assert [row[1] for row in rows[1:]] == [str(i) for i in range(10)]
        elif suffix == ".dat":
            got = np.fromfile(out, dtype="<f8").reshape(-1, 128)
        elif suffix == ".parquet":
            table = pq.read_table(out)
            got = np.stack([table.column(f"e{i}").to_numpy() for i in range(128)], axis=1)
            assert table.column("example").to_pylist() == list(range(10))
        else:
            got = np.load(out)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        assert not list(tmp_path.glob("*.partial"))


def test_embed_postprocess_gives_reference_bytes(small_model, tmp_path):
    examples = np.random.default_rng(1).normal(-2.0, 1.5, (6, 96, 64)).astype(np.float32)
    np.save(tmp_path / "spec.npy", examples)
    result = run_cli("embed", tmp_path / "spec.npy", "--model", small_model, "--device", "cpu",
                     "--postprocess", "--out", tmp_path / "q.npy")
    assert result.returncode == 0, result.stderr
    quantized = np.load(tmp_path / "q.npy")
    assert quantized.dtype == np.uint8
    expected = Postprocessor.from_file(small_model / "pca_params.npz").postprocess(reference_embeddings(small_model, examples))
    assert (np.abs(quantized.astype(int) - expected.astype(int)) <= 1).all()
    assert (quantized == expected).mean() > 0.99


def test_embed_bad_inputs_exit_codes(small_model, tone_wav, tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert_one_line_error(run_cli("embed", tmp_path / "broken.wav", "--model", small_model, "--device", "cpu",
                                  "--out", tmp_path / "o.npy"), "broken.wav")
    assert not (tmp_path / "o.npy").exists()
    skipped = run_cli("embed", tmp_path / "broken.wav", tone_wav, "--model", small_model, "--device", "cpu",
                      "--on-error", "skip", "--out", tmp_path / "o.npy")
    assert skipped.returncode == 1, skipped.stderr
    assert "broken.wav" in skipped.stderr and np.load(tmp_path / "o.npy").shape == (3, 128)
    assert_one_line_error(run_cli("embed", tone_wav, "--model", small_model, "--device", "cpu",
                                  "--out", tmp_path / "o.txt"), "unknown output format")
    assert_one_line_error(run_cli("embed", tone_wav, "--model", small_model, "--precision", "int4",
                                  "--out", tmp_path / "o.npy"), "--precision int4: expected one of")


def test_quoted_glob_patterns_are_expanded_and_o_names_the_output(small_model, tmp_path):
    """A pattern the shell did not expand (quoted) is expanded in sorted order, ``**`` at any depth; a pattern
    that matches nothing is one error; ``-o`` is ``--out``."""
    import shutil

    from test_audio import EXAMPLES

    wavs = sorted(EXAMPLES.glob("*.wav"))[:2]
    (tmp_path / "in" / "deep").mkdir(parents=True)
    shutil.copy(wavs[0], tmp_path / "in" / "b.wav")
    shutil.copy(wavs[1], tmp_path / "in" / "deep" / "a.wav")
    result = run_cli("embed", str(tmp_path / "in" / "**" / "*.wav"), "--model", small_model, "--device", "cpu",
                     "-o", tmp_path / "out.npy")
    assert result.returncode == 0, result.stderr
    sources = [line.split(",")[0] for line in (tmp_path / "out.npy.index.csv").read_text().splitlines()[1:]]
    assert list(dict.fromkeys(sources)) == [str(tmp_path / "in" / "b.wav"), str(tmp_path / "in" / "deep" / "a.wav")]
    from vggish_rt.engine.errors import VggishError
    from vggish_rt.engine.inputs import expand_inputs

    with pytest.raises(VggishError, match=r"\*\.flac: no file matches this pattern"):
        expand_inputs([str(tmp_path / "in" / "*.flac")])


def test_ray_refuses_the_single_machine_options_it_would_ignore(tmp_path):
    """--ray lists failed inputs and goes on, decodes in its own tasks and commits once: --on-error fail,
    --workers, --processes and --commit-every are refused, named, before Ray or any model is touched
    (they were accepted and silently ignored); --on-error skip is what it does, and is accepted."""
    np.zeros((2, 96, 64)).tofile(tmp_path / "a.dat")
    for given in (("--on-error", "fail"), ("--workers", "2"), ("--processes", "2"), ("--commit-every", "1"),
                  ("--resume",)):
        result = run_cli("embed", tmp_path / "a.dat", "--ray", *given, "--out", tmp_path / "o.npy")
        named = " ".join(given) if given[0] == "--on-error" else given[0]
        assert_one_line_error(result, f"error: --ray does not support {named} (")
    both = run_cli("embed", tmp_path / "a.dat", "--ray", "--workers", "2", "--commit-every", "0",
                   "--out", tmp_path / "o.npy")
    assert_one_line_error(both, "--ray does not support --workers, --commit-every (")
