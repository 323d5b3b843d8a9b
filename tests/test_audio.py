"""Audio decoding: formats, scaling, channels, resampling, streaming, and broken files."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_one_line_error, run_cli
from vggish_rt.engine.audio import iter_audio, load_audio
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.inputs import expand_inputs
from vggish_rt.engine.sources import ReadOptions, audio_blocks
from vggish_rt.engine.windows import cut_windows

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "audio"


def wav_bytes(tag=1, channels=1, rate=16000, bits=16, data=b"", declared=None) -> bytes:
    """A RIFF WAV with every header field under the test's control."""
    declared = len(data) if declared is None else declared
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * channels * bits // 8) & 0xFFFFFFFF, channels * bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + declared) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt))
            + fmt + b"data" + struct.pack("<I", declared) + data)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"),
                                         ("FLAC", "PCM_16"), ("AIFF", "PCM_16"), ("OGG", "VORBIS")])
def test_formats_decode_to_the_same_signal(tmp_path, fmt, subtype):
    t = np.arange(32000) / 16000
    signal = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, signal, 16000, format=fmt, subtype=subtype)
    decoded = load_audio(path)
    assert decoded.dtype == np.float32 and len(decoded) == len(signal)
    tolerance = 0.05 if subtype == "VORBIS" else 1e-4
    assert np.abs(decoded - signal).max() < tolerance


def test_int16_scaled_as_the_reference(tmp_path):
    samples = np.array([-32768, -1, 0, 1, 16384, 32767] * 100, np.int16)
    sf.write(tmp_path / "x.wav", samples, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(tmp_path / "x.wav"), samples / 32768.0)


def test_multichannel_is_averaged(tmp_path):
    left, right = np.full(1000, 0.5), np.full(1000, -0.25)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), 0.125)


def test_resampling_48k_keeps_a_tone(tmp_path):
    t = np.arange(48000 * 2) / 48000
    sf.write(tmp_path / "t.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), 48000, subtype="FLOAT")
    decoded = load_audio(tmp_path / "t.wav")
    assert len(decoded) == 32000
    expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000)
    assert np.abs(decoded[1000:-1000] - expected[1000:-1000]).max() < 1e-3


def test_streaming_decode_equals_whole_file(tmp_path):
    rng = np.random.default_rng(0)
    signal = rng.uniform(-0.5, 0.5, 44100 * 7)
    sf.write(tmp_path / "n.wav", signal, 44100, subtype="FLOAT")
    whole = np.concatenate(list(iter_audio(tmp_path / "n.wav", block_seconds=1000)))
    streamed = np.concatenate(list(iter_audio(tmp_path / "n.wav", block_seconds=0.37)))
    assert len(streamed) == len(whole)
    assert np.abs(streamed - whole).max() < 1e-5
    options = ReadOptions()
    blocks = list(audio_blocks(tmp_path / "n.wav", options))
    assert np.concatenate([b.index for b in blocks]).tolist() == list(range(len(cut_windows(whole))))


def test_real_recordings_frontend_matches_independent_reference():
    from test_frontend import reference_examples

    for path in sorted(EXAMPLES.glob("*.wav")):
        waveform = load_audio(path)
        expected = reference_examples(waveform.astype(np.float64))
        assert np.abs(log_mel_examples(cut_windows(waveform)) - expected).max() <= 1e-4, path


def bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, fragment its error must hold)."""
    pcm = (np.sin(np.arange(32000) / 5) * 10000).astype("<i2").tobytes()
    files = {
        "empty": ("empty.wav", b"", "empty file"),
        "header_only": ("header.wav", wav_bytes(), "no audio samples"),
        "truncated": ("trunc.wav", wav_bytes(data=pcm[:1001], declared=len(pcm)), "truncated"),
        "not_audio": ("text.wav", b"this is a text file, not audio\n" * 50, "not readable audio"),
        "unsupported_codec": ("codec.wav", wav_bytes(tag=0x1234, data=pcm), "not readable audio"),
        "zero_rate": ("zero.wav", wav_bytes(rate=0, data=pcm), "zero.wav"),
        "absurd_rate": ("absurd.wav", wav_bytes(rate=3, data=pcm), "absurd sample rate 3 Hz"),
    }
    out = {}
    for name, (file, data, fragment) in files.items():
        (tmp / file).write_bytes(data)
        out[name] = (tmp / file, fragment)
    sf.write(tmp / "nan.wav", np.array([0.1, np.nan, np.inf] * 10000, np.float32), 16000, subtype="FLOAT")
    out["nan"] = (tmp / "nan.wav", "NaN or Inf")
    return out


def test_bad_audio_files_each_give_a_clear_error(tmp_path):
    for name, (path, fragment) in bad_inputs(tmp_path).items():
        with pytest.raises(VggishError) as caught:
            load_audio(path)
        assert str(path) in str(caught.value) and fragment in str(caught.value), (name, str(caught.value))


@pytest.mark.slow
def test_bad_audio_on_the_command_line(tmp_path):
    cases = bad_inputs(tmp_path)
    for name in ("empty", "truncated", "nan"):
        path, fragment = cases[name]
        assert_one_line_error(run_cli("features", path, "--out", tmp_path / "f.npy"), str(path), fragment)
        assert not (tmp_path / "f.npy").exists()
    (tmp_path / "no_audio_here").mkdir()
    (tmp_path / "no_audio_here" / "notes.txt").write_text("hi")
    assert_one_line_error(run_cli("features", tmp_path / "no_audio_here", "--out", tmp_path / "f.npy"),
                          "notes.txt: not readable audio")


def test_features_cli_writes_examples_and_index(tmp_path):
    result = run_cli("features", EXAMPLES, "--out", tmp_path / "f.npy", "--pad-short")
    assert result.returncode == 0, result.stderr
    features = np.load(tmp_path / "f.npy")
    sources = expand_inputs([str(EXAMPLES)])
    assert features.shape == (len(sources), 96, 64) and features.dtype == np.float32  # each clip 1-1.5 s: one example
    index = (tmp_path / "f.npy.index.csv").read_text().splitlines()
    assert index[0] == "source,example,start_s,end_s" and len(index) == len(sources) + 1
    hop = run_cli("features", EXAMPLES / "Front_Center.wav", "--out", tmp_path / "g.npy", "--hop", "0.333")
    assert hop.returncode == 0 and "rounded to 0.33 s" in hop.stderr


def test_python_api_reads_waveforms_and_paths_as_the_cli_reads_files(small_model, tmp_path):
    """embed_waveform: int16 PCM scaled as the decoders scale it, [S, channels] averaged (both as a file of the same
    samples gives); embed_files: one path as a str is one file; the demo model is announced with a warning."""
    import warnings

    from vggish_rt.engine import Embedder
    from vggish_rt.engine.errors import DemoModelWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embedder = Embedder(small_model, device="cpu")
    assert any(issubclass(w.category, DemoModelWarning) and "NOT pretrained" in str(w.message) for w in caught)
    rng = np.random.default_rng(3)
    stereo = (rng.uniform(-0.5, 0.5, (48_000, 2)) * 32768).astype(np.int16)
    sf.write(tmp_path / "s.wav", stereo, 48_000, subtype="PCM_16")
    from_file = next(embedder.embed_files(str(tmp_path / "s.wav")))
    assert from_file.source == tmp_path / "s.wav"
    from_array, start_s = embedder.embed_waveform(stereo, 48_000)
    np.testing.assert_array_equal(from_array, from_file.embeddings)
    np.testing.assert_array_equal(start_s, from_file.start_s)
    with pytest.raises(VggishError, match="expected float, int16 or int32"):
        embedder.embed_waveform(stereo.astype(np.int64), 48_000)


def test_one_embed_call_takes_paths_arrays_and_waveforms_batched_together(small_model, tmp_path, capsys):
    """Embedder.embed (and embedder(...)): one input gives one FileEmbeddings, a list a list, in order; rows of
    several inputs share batches and each input gets exactly its own rows, equal to embedding it alone at the
    same batch size; a progress bar on request; clear errors for a waveform without its rate and a batch size
    beyond the Embedder's."""
    from vggish_rt.engine import Embedder, FileEmbeddings

    embedder = Embedder(small_model, device="cpu", batch_size=16)
    rng = np.random.default_rng(4)
    wave = rng.uniform(-0.5, 0.5, (int(3.5 * 22_050), 2)).astype(np.float32)
    sf.write(tmp_path / "w.flac", wave, 22_050)
    examples = rng.normal(-2.0, 1.5, (5, 96, 64))
    alone = [embedder.embed(str(tmp_path / "w.flac"), batch_size=2), embedder.embed(examples, batch_size=2),
             embedder((wave[:30_000], 22_050), batch_size=2)]
    together = embedder([tmp_path / "w.flac", examples, (wave[:30_000], 22_050)], batch_size=2, progress=True)
    assert "embedding" in capsys.readouterr().err
    assert isinstance(alone[0], FileEmbeddings) and [r.source for r in together] == [tmp_path / "w.flac", None, None]
    assert [len(r.embeddings) for r in together] == [3, 5, 1]
    for one, joint in zip(alone, together):
        np.testing.assert_array_equal(one.embeddings, joint.embeddings)
        np.testing.assert_array_equal(one.start_s, joint.start_s)
    assert np.isnan(together[1].start_s).all() and together[2].start_s.tolist() == [0.0]
    pcm, _ = sf.read(tmp_path / "w.flac", dtype="int16")  # the file's 16-bit samples, as int16 PCM
    np.testing.assert_array_equal(embedder.embed(pcm, sample_rate=22_050).embeddings,
                                  embedder.embed(tmp_path / "w.flac").embeddings)
    assert embedder.embed([]) == []
    with pytest.raises(VggishError, match="is a waveform: give its rate"):
        embedder.embed(wave)
    with pytest.raises(VggishError, match="expected 1 to this Embedder's batch_size"):
        embedder.embed(examples, batch_size=17)
    with pytest.raises(VggishError, match=r"^precision='int4': expected one of fp32"):  # the argument, as Python names it
        Embedder(small_model, precision="int4")


def test_the_probe_reads_wav_lengths_as_libsndfile_does(tmp_path):
    """The probe parses a plain WAV's header itself (the job's scan has its first bytes): the same frames and
    rate as libsndfile for every PCM width, float, 8-bit, multichannel and WAVE_FORMAT_EXTENSIBLE; anything it
    does not parse (a truncated data chunk, FLAC) goes to libsndfile, which says what is wrong."""
    from vggish_rt.engine.audio import wav_layout
    from vggish_rt.engine.probe import input_examples

    def wav_length(head: bytes, size: int) -> tuple[int, int] | None:
        layout = wav_layout(head, size)
        return None if layout is None else (layout.frames, layout.rate)

    samples = np.random.default_rng(6).uniform(-0.5, 0.5, (33_333, 3)).astype(np.float32)
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT", "DOUBLE"):
        for format in ("WAV", "WAVEX"):
            path = tmp_path / f"{subtype}_{format}.wav"
            sf.write(path, samples, 22_050, format=format, subtype=subtype)
            info = sf.info(path)
            assert wav_length(path.read_bytes()[:65_536], path.stat().st_size) == (info.frames, 22_050), path
    whole = (tmp_path / "PCM_16_WAV.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[:-1000])
    assert wav_length(whole[:-1000], len(whole) - 1000) is None
    with pytest.raises(VggishError, match="truncated"):
        input_examples(tmp_path / "cut.wav", head=whole[:-1000], size=len(whole) - 1000)
    sf.write(tmp_path / "a.flac", samples, 22_050)
    assert wav_length((tmp_path / "a.flac").read_bytes(), (tmp_path / "a.flac").stat().st_size) is None


def test_plain_wav_is_read_as_libsndfile_reads_it_bit_for_bit(tmp_path):
    """A plain WAV's samples are read without libsndfile (engine.audio._opened): every PCM width, float,
    8-bit and double (those two still by libsndfile), WAVE_FORMAT_EXTENSIBLE, 1 and 3 channels, give exactly
    libsndfile's float32 samples averaged as the reference averages them, in blocks that end anywhere."""
    samples = np.random.default_rng(7).uniform(-1, 1, (40_001, 3)).astype(np.float32)
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT", "DOUBLE"):
        for format in ("WAV", "WAVEX"):
            for channels in (1, 3):
                path = tmp_path / f"{subtype}_{format}_{channels}.wav"
                sf.write(path, samples[:, :channels], 16_000, format=format, subtype=subtype)
                expected = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)
                for block_seconds in (0.3, 60.0):
                    decoded = np.concatenate(list(iter_audio(path, block_seconds=block_seconds)))
                    np.testing.assert_array_equal(decoded, expected, err_msg=f"{path.name}, {block_seconds} s")
