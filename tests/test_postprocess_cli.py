"""Post-processing from the command line, PCA fitting, AudioSet TFRecords, resampy, failure reports."""
from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_one_line_error, run_cli
from test_postprocess import reference_postprocess
from vggish_rt.engine.postprocess import Postprocessor, load_pca_params, pca_params_bytes


def test_postprocess_command_is_byte_exact(tmp_path):
    rng = np.random.default_rng(0)
    matrix, means = rng.standard_normal((128, 128)) * 0.2, rng.standard_normal((128, 1))
    (tmp_path / "pca.npz").write_bytes(pca_params_bytes(matrix, means))
    embeddings = rng.standard_normal((300, 128)).astype(np.float32)
    np.save(tmp_path / "e.npy", embeddings)
    result = run_cli("postprocess", tmp_path / "e.npy", "--pca-params", tmp_path / "pca.npz", "--out", tmp_path / "q.npy")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "q.npy"), reference_postprocess(embeddings, matrix, means))
    np.save(tmp_path / "bad.npy", np.zeros((3, 64), np.float32))
    assert_one_line_error(run_cli("postprocess", tmp_path / "bad.npy", "--pca-params", tmp_path / "pca.npz",
                                  "--out", tmp_path / "q2.npy"), "bad.npy", "[3, 64]")
    assert not (tmp_path / "q2.npy").exists()


def test_fit_pca_command_whitens(tmp_path):
    rng = np.random.default_rng(1)
    embeddings = (rng.standard_normal((5000, 128)) * np.linspace(0.2, 2, 128) @ rng.standard_normal((128, 128))).astype(np.float32)
    np.save(tmp_path / "e.npy", embeddings)
    result = run_cli("fit-pca", tmp_path / "e.npy", "--out", tmp_path / "pca.npz")
    assert result.returncode == 0, result.stderr
    projected = Postprocessor(*load_pca_params(tmp_path / "pca.npz")).project(embeddings)
    np.testing.assert_allclose(np.cov(projected, rowvar=False), np.eye(128), atol=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow (the [export] extra)")
def test_tfrecord_round_trip_through_tensorflow(small_model, tmp_path):
    from test_audio import EXAMPLES
    from vggish_rt.export.tf_compat import tf_v1

    out = tmp_path / "audioset.tfrecord"
    result = run_cli("embed", EXAMPLES / "Front_Center.wav", EXAMPLES / "complete.oga", "--model", small_model,
                     "--device", "cpu", "--pad-short", "--out", out)
    assert result.returncode == 0, result.stderr
    reference = tmp_path / "q.npy"
    assert run_cli("embed", EXAMPLES / "Front_Center.wav", EXAMPLES / "complete.oga", "--model", small_model,
                   "--device", "cpu", "--pad-short", "--postprocess", "--out", reference).returncode == 0
    tf = tf_v1()
    records = list(tf.compat.v1.io.tf_record_iterator(str(out)))
    assert len(records) == 2
    expected = np.load(reference)
    for i, record in enumerate(records):
        example = tf.train.SequenceExample.FromString(record)
        assert example.context.feature["video_id"].bytes_list.value[0].decode().endswith((".wav", ".oga"))
        frames = example.feature_lists.feature_list["audio_embedding"].feature
        got = np.frombuffer(frames[0].bytes_list.value[0], np.uint8)
        np.testing.assert_array_equal(got, expected[i])


@pytest.mark.skipif(importlib.util.find_spec("resampy") is None, reason="needs resampy")
def test_resampy_option_reproduces_the_reference_resampler(tmp_path):
    import resampy

    from vggish_rt.engine.audio import load_audio

    signal = np.random.default_rng(2).uniform(-0.5, 0.5, 44100 * 2)
    sf.write(tmp_path / "x.wav", signal, 44100, subtype="FLOAT")
    expected = resampy.resample(sf.read(tmp_path / "x.wav", dtype="float32")[0].astype(np.float64), 44100, 16000)
    np.testing.assert_allclose(load_audio(tmp_path / "x.wav", resampler="resampy"), expected.astype(np.float32), rtol=0, atol=0)


def test_failures_are_reported_in_a_file(small_model, tmp_path):
    from test_audio import EXAMPLES

    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 10)
    out = tmp_path / "e.npy"
    result = run_cli("embed", tmp_path / "bad.wav", EXAMPLES / "Noise.wav", "--model", small_model, "--device", "cpu",
                     "--on-error", "skip", "--out", out)
    assert result.returncode == 1
    rows = list(csv.reader(open(f"{out}.failures.csv")))
    assert rows[0] == ["source", "reason"] and rows[1][0] == str(tmp_path / "bad.wav") and "not readable" in rows[1][1]
    assert np.load(out).shape[0] == 1
