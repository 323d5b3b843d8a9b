"""The demo model: seeded He-scaled weights in the released layout, and generated audio.

The weights are random, so the demo model's embeddings carry no meaning; it
exists so that the whole product runs and is tested where the pretrained
checkpoint cannot be downloaded. Every manifest and command says so.
"""
from __future__ import annotations

import numpy as np

from vggish_rt.engine import params
from vggish_rt.export.checkpoint import VGGISH, Widths, variable_shapes

DEMO_SEED = 20200801


def demo_variables(seed: int = DEMO_SEED, widths: Widths = VGGISH) -> dict[str, np.ndarray]:
    """float32 weights for every VGGish variable, in the released shapes.

    ReLU layers get He scaling (std sqrt(2 / fan_in)), so activations keep their
    scale through the stack; fc2, which has no ReLU, gets sqrt(1 / fan_in).
    Biases are small and positive, so no ReLU unit starts dead.
    """
    rng = np.random.default_rng(seed)
    variables = {}
    for name, shape in variable_shapes(widths).items():
        if name.endswith("/biases"):
            variables[name] = np.full(shape, 0.01, np.float32)
            continue
        fan_in = int(np.prod(shape[:-1]))
        gain = 1.0 if name.startswith("vggish/fc2/") else 2.0
        variables[name] = (rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(gain / fan_in)))
    return variables


def demo_audio(seed: int = DEMO_SEED, clips: int = 64, seconds: float = 5.0) -> list[np.ndarray]:
    """Generated 16 kHz mono clips, float32 in [-1, 1]: tones, chords, chirps,
    noise of several colours, clicks and amplitude-modulated harmonics (speech-like).

    Real-audio stand-ins for fitting the demo PCA and calibrating int8: unlike
    random log-mel values they have the spectral structure of sound.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * params.SAMPLE_RATE)
    t = np.arange(n) / params.SAMPLE_RATE
    out = []
    for i in range(clips):
        kind = i % 6
        if kind == 0:
            f = rng.uniform(100, 6000)
            x = np.sin(2 * np.pi * f * t)
        elif kind == 1:
            x = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 4000, size=3))
        elif kind == 2:
            f0, f1 = rng.uniform(100, 7000, size=2)
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
        elif kind == 3:
            white = rng.standard_normal(n)
            spectrum = np.fft.rfft(white) / np.maximum(np.arange(n // 2 + 1), 1) ** rng.uniform(0, 1)
            x = np.fft.irfft(spectrum, n)
        elif kind == 4:
            x = np.zeros(n)
            x[rng.integers(0, n, size=int(rng.uniform(5, 80)))] = rng.choice([-1.0, 1.0])
        else:
            f0 = rng.uniform(90, 250)
            harmonics = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
            x = harmonics * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
        x = x / max(np.abs(x).max(), 1e-9) * rng.uniform(0.05, 0.9)
        out.append(x.astype(np.float32))
    return out
