"""Fuzzing the readers of untrusted files with hypothesis, for a bounded number of examples each.

Whatever the bytes, a reader returns or raises VggishError (the one-line error
the CLI prints); any other exception is a crash, and fails the test.
Examples per target: 150 (set HYPOTHESIS_MAX_EXAMPLES to fuzz longer).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from corpus import npy_with_header, wav_bytes
from vggish_rt.engine.audio import load_audio
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.inputs import open_spectrograms
from vggish_rt.engine.manifest import read_manifest
from vggish_rt.engine.postprocess import load_pca_params

FUZZ = settings(max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", 150)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], derandomize=True)


def _in_file(name: str, data: bytes, read) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            read(path)
        except VggishError as exc:
            assert str(exc), "an empty error message"


def _read_spectrograms(path: Path) -> None:
    spectrograms = open_spectrograms(path)
    if len(spectrograms):
        spectrograms.read(0, min(len(spectrograms), 4))


_npy_headers = st.builds(
    lambda descr, shape, fortran: ("{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran, shape)),
    st.sampled_from(["<f8", "<f4", ">f8", "<f2", "<i4", "|O", "<c8", "|S3", "<U2", "<V8", "f8", "zz"]),
    st.tuples(st.integers(-2, 5), st.sampled_from([96, 95, 0]), st.sampled_from([64, 63, -1])) | st.tuples() |
    st.tuples(st.integers(0, 3)),
    st.booleans())


@FUZZ
@given(st.binary(max_size=4096))
def test_npy_reader_on_random_bytes(data):
    _in_file("x.npy", data, _read_spectrograms)


@FUZZ
@given(_npy_headers, st.binary(max_size=2 * 96 * 64 * 8))
@example("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 96, 64), }", b"")  # found by this test: a crash, fixed
def test_npy_reader_on_structured_headers(header, body):
    _in_file("x.npy", npy_with_header(header, body), _read_spectrograms)


@FUZZ
@given(st.integers(0, 3 * 96 * 64 * 8 + 16).map(lambda n: bytes(n)), st.binary(max_size=64))
def test_dat_reader_on_any_size(zeros, tail):
    _in_file("x.dat", zeros + tail, _read_spectrograms)


_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                            max_leaves=20)


@FUZZ
@given(st.dictionaries(st.sampled_from(["format", "format_version", "files", "pretrained", "models", "relu_output"]),
                       _json_values, max_size=6),
       st.booleans())
def test_manifest_reader_on_any_json(fields, realistic):
    if realistic:
        fields = {"format": "vggish-rt-model", "format_version": 1, **fields}
    _in_file("manifest.json", json.dumps(fields).encode(), lambda path: read_manifest(path.parent))


@FUZZ
@given(st.binary(max_size=2048))
def test_manifest_reader_on_random_bytes(data):
    _in_file("manifest.json", data, lambda path: read_manifest(path.parent))


@FUZZ
@given(st.binary(max_size=4096))
def test_pca_reader_on_random_bytes(data):
    try:
        load_pca_params(data, "fuzz.npz")
    except VggishError:
        pass


@FUZZ
@given(st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ".aiff"]), st.binary(max_size=8192))
def test_audio_loader_on_random_bytes(suffix, data):
    _in_file("x" + suffix, data, load_audio)


@FUZZ
@given(st.sampled_from([1, 3, 0, 2, 0xFFFE, 0x1234]), st.integers(0, 9), st.sampled_from([0, 1, 3, 8000, 44100, 16000, 2**31 - 1]),
       st.sampled_from([0, 8, 16, 24, 32, 64, 7]), st.binary(max_size=4096), st.integers(0, 2**32 - 1) | st.none())
def test_audio_loader_on_wav_headers(tag, channels, rate, bits, data, declared):
    _in_file("x.wav", wav_bytes(tag, channels, rate, bits, data, declared), load_audio)


@FUZZ
@given(st.integers(1, 4), st.lists(st.floats(width=32) , min_size=1, max_size=2000))
def test_audio_loader_on_float_samples(channels, samples):
    import soundfile as sf

    frames = np.array(samples[: len(samples) // channels * channels] or [0.0] * channels, np.float32).reshape(-1, channels)
    buffer = io.BytesIO()
    sf.write(buffer, frames, 16000, format="WAV", subtype="FLOAT")
    _in_file("x.wav", buffer.getvalue(), load_audio)
