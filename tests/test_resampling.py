"""The graph's resampler (``--resampler onnx``, engine.resampling): resampy's output, from native rows, in a job."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
from conftest import assert_one_line_error, run_cli, windows_model
from vggish_rt.engine import params
from vggish_rt.engine.resampling import NativeRowStream, native_rows, with_resampler
from vggish_rt.engine.session import create_session
from vggish_rt.engine.windows import Hop, cut_windows

resampy = pytest.importorskip("resampy")


@pytest.mark.parametrize("rate, seconds, hop, padded", [
    (48000, 5.31, 0.96, True), (44100, 3.3, 0.96, False), (22050, 3.05, 0.5, True), (8000, 2.2, 0.96, True),
    (32000, 4.2, 2.0, False), (11025, 1.7, 0.96, False), (48000, 0.6, 0.96, True)])
def test_native_rows_through_the_front_are_resampys_windows(rate, seconds, hop, padded):
    """Every window, the first (zeros before the start), the last (zeros after the end), the padded ones (zero
    past resampy's length) and a hop longer than a window, within float32 sums of resampy's kaiser_best."""
    rng = np.random.default_rng(rate)
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.4 * np.sin(2 * np.pi * 1000 * t) + 0.3 * rng.uniform(-1, 1, len(t))).astype(np.float32)
    hop = Hop.from_seconds(hop)
    expected = cut_windows(resampy.resample(samples.astype(np.float64), rate, 16000, filter="kaiser_best")
                           .astype(np.float32), hop, padded, padded)
    rows = native_rows(samples, rate, hop, padded, padded)
    stream, pieces, start = NativeRowStream(rate, hop, padded, padded), [], 0
    while start < len(samples):  # decoded blocks of any size give the same rows
        size = int(rng.integers(1, 3 * rate))
        pieces.append(stream.push(samples[start : start + size]))
        start += size
    pieces.append(stream.finish())
    np.testing.assert_array_equal(np.concatenate(pieces), rows)
    assert len(rows) == len(expected)
    if len(rows):
        for exact_tf32 in (False, True):  # the GPU's split products give the same sums on the CPU
            resampled = create_session(with_resampler(windows_model(), rate, exact_tf32), "cpu", threads=1).run(
                None, {params.ONNX_WAVEFORM: rows})[0]
            np.testing.assert_allclose(resampled, expected, rtol=0, atol=1e-6)


def write_rates(directory, rates_seconds):
    rng = np.random.default_rng(0)
    directory.mkdir()
    for i, (rate, seconds) in enumerate(rates_seconds):
        t = np.arange(int(rate * seconds)) / rate
        wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(directory / f"{i}_{rate}.wav", wave.astype(np.float32), rate, subtype="PCM_16")


def read_rows(path):
    rows = list(csv.reader(open(path)))[1:]
    return [r[:4] for r in rows], np.array([[float(v) for v in r[-128:]] for r in rows])


@pytest.mark.slow
def test_a_job_resampling_in_the_graph_gives_the_reference_resamplers_embeddings(small_model, tmp_path):
    """Mixed rates through the decoding pool (and through this process with --workers 0): the rows and times of
    --resampler resampy, embeddings within float32 sums of them; a 16 kHz file's rows are soxr's, bit for bit; a
    rate the front cannot take is a failed input, named (the probe's verdict)."""
    write_rates(tmp_path / "in", [(48000, 5.3), (44100, 3.1), (16000, 2.5), (22050, 4.0), (8000, 2.2), (48000, 0.6)])
    common = ("embed", tmp_path / "in", "--model", small_model, "--device", "cpu", "--pad-tail")
    outputs = {}
    for name, extra in (("onnx", ["--resampler", "onnx"]), ("onnx_in_process", ["--resampler", "onnx", "--workers", "0"]),
                        ("resampy", ["--resampler", "resampy"]), ("soxr", [])):  # soxr: the rows, not the values
        result = run_cli(*common, *extra, "--out", tmp_path / f"{name}.csv")
        assert result.returncode == 0 and "from 6 of 6 inputs" in result.stdout, result.stderr
        outputs[name] = read_rows(tmp_path / f"{name}.csv")
    assert (tmp_path / "onnx.csv").read_bytes() == (tmp_path / "onnx_in_process.csv").read_bytes()
    provenance, embeddings = outputs["onnx"]
    reference_provenance, reference = outputs["resampy"]
    assert provenance == reference_provenance and len(provenance) == 22
    np.testing.assert_allclose(embeddings, reference, rtol=0, atol=1e-4 * np.abs(reference).max())
    soxr_provenance, soxr = outputs["soxr"]
    assert soxr_provenance == provenance
    native = [i for i, p in enumerate(provenance) if p[0].endswith("_16000.wav")]  # alone in its batch in both
    alone = run_cli("embed", tmp_path / "in" / "2_16000.wav", *common[2:], "--out", tmp_path / "alone.csv")
    assert alone.returncode == 0, alone.stderr
    np.testing.assert_array_equal(embeddings[native], read_rows(tmp_path / "alone.csv")[1])
    sf.write(tmp_path / "in" / "odd_11111.wav", np.zeros(30000, np.float32), 11111)
    result = run_cli(*common, "--resampler", "onnx", "--on-error", "skip", "--out", tmp_path / "odd.csv")
    assert result.returncode == 1 and "from 6 of 7 inputs" in result.stdout and "1 failed" in result.stdout
    assert "odd_11111.wav: 11111 Hz: the resampler 'onnx' needs windows that start on whole samples" in result.stderr


def test_the_graphs_resampler_is_refused_where_no_end_to_end_graph_runs(small_model, tmp_path):
    write_rates(tmp_path / "in", [(48000, 1.5)])
    for command in (("embed", "--frontend", "numpy", "--model", small_model, "--device", "cpu", "--out", tmp_path / "a.npy"),
                    ("features", "--out", tmp_path / "f.npy"),
                    ("embed", "--ray", "--model", small_model, "--out", tmp_path / "ray")):
        result = run_cli(*command, "--resampler", "onnx", tmp_path / "in")
        assert_one_line_error(result, "--resampler onnx: resamples inside the end-to-end graph")
    # an unknown resampler is the command's error before any work, not every input's failure
    result = run_cli("embed", tmp_path / "in", "--model", small_model, "--device", "cpu", "--on-error", "skip",
                     "--resampler", "sox", "--out", tmp_path / "b.npy")
    assert_one_line_error(result, "--resampler sox: expected one of soxr, resampy, onnx")
    assert not list(tmp_path.glob("b.npy*"))
