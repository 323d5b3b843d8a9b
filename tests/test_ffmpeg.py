"""Formats libsndfile does not read, decoded through FFmpeg's libraries (PyAV); the files are encoded here by PyAV."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

av = pytest.importorskip("av", reason="PyAV is not installed")

from conftest import run_cli  # noqa: E402
from vggish_rt.engine.audio import iter_audio, load_audio  # noqa: E402
from vggish_rt.engine.errors import VggishError  # noqa: E402

RATE = 48_000


def signal(seconds: float = 3.0, rate: int = RATE) -> np.ndarray:
    """float32 [2, S]: a chirp with noise, the right channel at half level."""
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.02 * np.random.default_rng(0).standard_normal(len(t))
    return np.stack([left, 0.5 * left]).astype(np.float32)


def encode(path: Path, container: str, codec: str | None, samples: np.ndarray, rate: int = RATE,
           video: bool = False) -> Path:
    """Write ``samples`` (float32 [2, S]) with PyAV; ``video``: a 2-frame video track too, as in a phone's .mp4;
    ``codec`` None: no audio track."""
    with av.open(str(path), "w", format=container) as out:
        picture = out.add_stream("mpeg4", rate=1) if video else None
        stream = out.add_stream(codec, rate=rate) if codec is not None else None
        if picture is not None:
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        if stream is not None:
            stream.layout = "stereo"
        if picture is not None:
            for pts in range(2):
                frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                frame.pts = pts
                out.mux(picture.encode(frame))
            out.mux(picture.encode(None))
        if stream is not None:
            planar = codec != "pcm_s16le"
            data = samples if planar else (np.clip(samples.T, -1, 1 - 1 / 32768) * 32768).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(data, format="fltp" if planar else "s16", layout="stereo")
            frame.rate = rate
            out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    return path


def test_pcm_in_matroska_decodes_bit_for_bit_as_the_same_wav(tmp_path):
    """Lossless: 16-bit PCM in an .mkv (FFmpeg) gives exactly the samples of the same PCM in a .wav (libsndfile):
    integer scaling, channel averaging and resampling are the same."""
    samples = signal()
    encode(tmp_path / "a.mkv", "matroska", "pcm_s16le", samples)
    pcm = (np.clip(samples.T, -1, 1 - 1 / 32768) * 32768).astype(np.int16)
    sf.write(tmp_path / "a.wav", pcm, RATE, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.mkv"), load_audio(tmp_path / "a.wav"))


@pytest.mark.parametrize("channels, layout", [(2, "stereo"), (6, "5.1"), (8, "7.1")])
def test_channels_average_as_the_reference_averages_them_in_either_decoder(tmp_path, channels, layout):
    """Planar float in Matroska (FFmpeg, gathered into blocks in its FIFO, averaged a channel at a time) and
    the same float WAV (libsndfile, interleaved) both give the reference's ``np.mean(samples, axis=1)`` at 16
    kHz bit for bit, in blocks that end anywhere: 8 channels too, where NumPy's mean sums pairwise."""
    samples = (0.3 * np.random.default_rng(channels).standard_normal((100_003, channels))).astype(np.float32)
    reference = samples.mean(axis=1)
    with av.open(str(tmp_path / "a.mka"), "w", format="matroska") as out:
        stream = out.add_stream("pcm_f32le", rate=16_000, layout=layout)
        for start in range(0, len(samples), 4_000):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[start : start + 4_000].reshape(1, -1)),
                                               format="flt", layout=layout)
            frame.rate = 16_000
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    sf.write(tmp_path / "a.wav", samples, 16_000, subtype="FLOAT")
    for name in ("a.mka", "a.wav"):
        for block_seconds in (0.37, 60.0):
            decoded = np.concatenate(list(iter_audio(tmp_path / name, block_seconds=block_seconds)))
            np.testing.assert_array_equal(decoded, reference, err_msg=f"{name}, blocks of {block_seconds} s")


@pytest.mark.parametrize("name, container, codec, video", [
    ("aac.m4a", "mp4", "aac", False),
    ("opus.webm", "webm", "libopus", False),
    ("phone.mp4", "mp4", "aac", True),
    ("opus.mkv", "matroska", "libopus", False),
])
def test_lossy_and_video_containers_decode_to_the_signal(tmp_path, name, container, codec, video):
    """AAC in M4A, Opus in WebM and in Matroska, the AAC track of an MP4 holding video: 16 kHz mono that
    matches the source (at the best lag within 60 ms, for encoder delay: AAC's is 1,024 samples at 48 kHz) to a
    correlation of 0.95 (AAC at its default 128 kb/s keeps 0.977 of this chirp in white noise)."""
    samples = signal()
    decoded = load_audio(encode(tmp_path / name, container, codec, samples, video=video))
    reference = load_audio(_wav(tmp_path / "ref.wav", samples))
    assert abs(len(decoded) - len(reference)) < 0.1 * 16_000
    n = min(len(decoded), len(reference)) - 1000
    best = max(np.corrcoef(decoded[lag : lag + n], reference[:n])[0, 1] for lag in range(1000))
    assert best > 0.95, (name, best)


def _wav(path: Path, samples: np.ndarray) -> Path:
    sf.write(path, samples.T, RATE, subtype="FLOAT")
    return path


def test_unreadable_ffmpeg_inputs_each_give_a_clear_error(tmp_path):
    (tmp_path / "empty.m4a").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a movie\n" * 50)
    encode(tmp_path / "silent.mp4", "mp4", None, signal(), video=True)  # a video track only
    for name, fragment in (("empty.m4a", "empty file"), ("text.mp4", "not readable audio (FFmpeg:"),
                           ("silent.mp4", "has no audio track")):
        with pytest.raises(VggishError, match=fragment.replace("(", r"\(")):
            load_audio(tmp_path / name)


def test_a_folder_of_every_format_is_embedded_or_reported(small_model, tmp_path):
    """A directory gives every file, whatever its suffix: each is a row source, a reported failure or a
    reported clip too short; hidden files are left out, and said so. With the default --on-error fail the
    probe stops the job before any work, naming the bad inputs; nothing is left behind."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    samples = signal()
    good = {"a.m4a": ("mp4", "aac", False), "b.webm": ("webm", "libopus", False), "c.mp4": ("mp4", "aac", True),
            "sub/d.mkv": ("matroska", "libopus", False)}
    for name, (container, codec, video) in good.items():
        encode(folder / name, container, codec, samples, video=video)
    for name, format, subtype in (("e.wav", "WAV", "FLOAT"), ("f.flac", "FLAC", "PCM_16"), ("g.mp3", "MP3", None),
                                  ("h.ogg", "OGG", "VORBIS"), ("i.opus", "OGG", "OPUS"), ("j.recording", "WAV", "PCM_16")):
        sf.write(folder / name, samples.T, RATE, format=format, subtype=subtype)
    sf.write(folder / "short.wav", samples.T[: RATE // 2], RATE)
    (folder / "empty.m4a").write_bytes(b"")
    (folder / "notes.txt").write_text("recorded on the 3rd\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    out = tmp_path / "out.npy"
    failed = run_cli("embed", folder, "--model", small_model, "--device", "cpu", "-o", out)
    assert failed.returncode == 2 and "empty.m4a: empty file (and 1 more bad input); nothing was embedded" in failed.stderr
    assert "1 hidden file(s) left out" in failed.stderr
    assert not list(tmp_path.glob("out.npy*")), list(tmp_path.iterdir())
    result = run_cli("embed", folder, "--model", small_model, "--device", "cpu", "--on-error", "skip", "-o", out)
    assert result.returncode == 1, result.stderr
    sources = {line[0] for line in csv.reader(open(tmp_path / "out.npy.index.csv"))} - {"source"}
    failures = {row["source"] for row in csv.DictReader(open(tmp_path / "out.npy.failures.csv"))}
    embedded = {*good, "e.wav", "f.flac", "g.mp3", "h.ogg", "i.opus", "j.recording"}
    assert sources == {str(folder / n) for n in embedded}
    assert failures == {str(folder / "empty.m4a"), str(folder / "notes.txt")}
    assert "from 11 of 13 inputs" in result.stdout and result.stdout.strip().endswith("; 2 failed, 1 too short")
    assert f"{folder / 'short.wav'}: shorter than 0.975 s" in result.stderr
