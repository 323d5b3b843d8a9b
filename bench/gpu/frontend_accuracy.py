"""What TF32 does to the log-mel frontend when it runs inside the graph on a GPU.

    python3 bench/gpu/frontend_accuracy.py

The frontend graph alone (export.frontend_graph) on the CUDA provider with
TF32 on (the default) and off, against the NumPy frontend, on the example
recordings and on noise; prints the max abs log-mel error of each.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vggish_rt.engine.audio import load_audio
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.session import create_session
from vggish_rt.engine.windows import cut_windows
from vggish_rt.export.frontend_graph import frontend_model

examples = Path(__file__).resolve().parents[2] / "examples" / "audio"
clips = [load_audio(p) for p in sorted(examples.iterdir()) if p.suffix in (".wav", ".oga")]
windows = np.concatenate([cut_windows(c, pad_short=True) for c in clips]
                         + [np.random.default_rng(0).uniform(-1, 1, (64, 15600)).astype(np.float32)])
reference = log_mel_examples(windows)
model = frontend_model(17, 8).SerializeToString()
for tf32 in ("1", "0"):
    session = create_session(model, "cuda", 0, cuda_options={"use_tf32": tf32})
    got = session.run(None, {"waveform": np.ascontiguousarray(windows)})[0]
    print(f"use_tf32={tf32}: max abs log-mel error vs NumPy {np.abs(got - reference).max():.2e} "
          f"(mean {np.abs(got - reference).mean():.2e}) over {len(windows)} examples")
cpu = create_session(model, "cpu").run(None, {"waveform": np.ascontiguousarray(windows)})[0]
print(f"CPU provider: max abs log-mel error vs NumPy {np.abs(cpu - reference).max():.2e}")
