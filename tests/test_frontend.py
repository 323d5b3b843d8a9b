"""The NumPy frontend against an independent, loop-by-loop transcription of the reference."""
from __future__ import annotations

import numpy as np
import pytest

from vggish_rt.engine.frontend import log_mel, log_mel_examples, mel_matrix
from vggish_rt.engine.windows import Hop, count_windows, cut_windows, window_times


def reference_log_mel(signal: np.ndarray) -> np.ndarray:
    """mel_features.log_mel_spectrogram as the reference writes it, float64, one frame at a time."""
    def hz_to_mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)
    bins_mel = hz_to_mel(np.linspace(0.0, 8000.0, 257))
    edges = np.linspace(hz_to_mel(125.0), hz_to_mel(7500.0), 66)
    weights = np.empty((257, 64))
    for i in range(64):
        lo, c, hi = edges[i:i + 3]
        weights[:, i] = np.maximum(0.0, np.minimum((bins_mel - lo) / (c - lo), (hi - bins_mel) / (hi - c)))
    weights[0, :] = 0.0
    window = 0.5 - 0.5 * np.cos(2 * np.pi / 400 * np.arange(400))
    count = 1 + (len(signal) - 400) // 160
    out = np.empty((count, 64))
    for f in range(count):
        frame = signal[f * 160:f * 160 + 400].astype(np.float64)
        out[f] = np.log(np.abs(np.fft.rfft(frame * window, 512)) @ weights + 0.01)
    return out


def reference_examples(signal):
    lm = reference_log_mel(signal)
    n = 1 + (len(lm) - 96) // 96
    return np.stack([lm[i * 96:i * 96 + 96] for i in range(n)])


def _example_recordings() -> np.ndarray:
    """The example recordings (real speech and sounds), one after another at 16 kHz."""
    from test_audio import EXAMPLES
    from vggish_rt.engine.audio import load_audio

    return np.concatenate([load_audio(p) for p in sorted(EXAMPLES.iterdir()) if p.suffix in (".wav", ".oga")])


_TIME = np.arange(64000) / 16000
SIGNALS = {
    # where float32 windowing lost precision: loud frames' quiet high bands (1.1e-4 and 2e-4 off before)
    "example_recordings": _example_recordings(),
    "loud_tone_over_quiet_noise": 0.9 * np.sin(2 * np.pi * 440 * _TIME) + 1e-5 * np.random.default_rng(1).standard_normal(64000),
    "sine_1k": 0.5 * np.sin(2 * np.pi * 1000 * np.arange(48000) / 16000),
    "noise": np.random.default_rng(0).uniform(-1, 1, 40000),
    "silence": np.zeros(32000),
    "chirp": np.sin(2 * np.pi * (100 + 3000 * np.arange(50000) / 50000) * np.arange(50000) / 16000),
    "full_scale_square": np.sign(np.sin(2 * np.pi * 440 * np.arange(20000) / 16000)),
}


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_log_mel_examples_match_reference(name):
    signal = SIGNALS[name].astype(np.float32)
    expected = reference_examples(signal.astype(np.float64))
    actual = log_mel_examples(cut_windows(signal))
    assert actual.shape == expected.shape and actual.dtype == np.float32
    assert np.abs(actual - expected).max() <= 1e-5  # the promise is 1e-4 (docs/reliability.md); 4e-7 measured


def test_silence_is_log_offset():
    assert np.allclose(log_mel(np.zeros(15600)), np.log(0.01))


def test_mel_matrix_properties():
    weights = mel_matrix()
    assert weights.shape == (257, 64) and (weights[0] == 0).all() and weights.max() <= 1.0
    assert (weights.sum(axis=0) > 0).all()


def test_window_counts_follow_the_reference():
    assert count_windows(15599) == 0 and count_windows(15600) == 1
    assert count_windows(16000) == 1 and count_windows(15600 + 15360) == 2
    assert count_windows(16000, pad_short=True) == 1 and count_windows(8000, pad_short=True) == 1
    assert count_windows(15600 + 100, pad_tail=True) == 2
    hop = Hop.from_seconds(0.48)
    assert hop.frames == 48 and not hop.rounded
    assert count_windows(16000 * 3, hop) == 1 + (48000 - 15600) // 7680
    assert Hop.from_seconds(0.333).rounded and Hop.from_seconds(0.333).frames == 33
    start, end = window_times(3)
    np.testing.assert_allclose(start, [0.0, 0.96, 1.92])
    np.testing.assert_allclose(end - start, 0.96)


def test_padding_short_clip_is_zero_padded():
    clip = np.ones(8000, np.float32)
    windows = cut_windows(clip, pad_short=True)
    assert windows.shape == (1, 15600)
    assert (windows[0, :8000] == 1).all() and (windows[0, 8000:] == 0).all()
    assert cut_windows(clip).shape == (0, 15600)
