"""The graph's resampling front alone (``--resampler onnx``, engine.resampling) on CUDA, TF32 on.

    python3 bench/gpu/front.py [--rates 48000,44100,32000,22050,8000] [--before PATH/resampling.py]

For each rate: native rows of 20 s of a 440 Hz tone (0.5) with a quiet 3.1 kHz partial (1e-4), through the
front spliced before an identity graph; the CUDA provider's windows against the CPU provider's (max abs),
with the products split for TF32 (what the engine runs on GPUs) and without; and GPU-resident rows/s at
batch 1024 (IO binding, median of 8 runs after 3). ``--before``: another version of engine/resampling.py
(e.g. from an older commit, ``git show REV:engine/resampling.py``), measured the same way, unsplit.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from conftest import windows_model  # noqa: E402
from vggish_rt.engine import resampling  # noqa: E402
from vggish_rt.engine.session import create_session, onnxruntime  # noqa: E402
from vggish_rt.engine.windows import DEFAULT_HOP  # noqa: E402


def resident_rows_per_s(session, rows: np.ndarray) -> float:
    ort = onnxruntime()
    batch = np.ascontiguousarray(np.resize(rows, (1024, rows.shape[1])))
    binding = session.io_binding()
    binding.bind_ortvalue_input("waveform", ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0))
    binding.bind_output("embedding", "cuda", 0)
    for _ in range(3):
        session.run_with_iobinding(binding)
    times = []
    for _ in range(8):
        started = time.perf_counter()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        times.append(time.perf_counter() - started)
    return 1024 / float(np.median(times))


def load(path: Path):
    spec = importlib.util.spec_from_file_location("resampling_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="48000,44100,32000,22050,8000")
    parser.add_argument("--before", type=Path, default=None)
    arguments = parser.parse_args()
    variants = [("split (engine)", resampling, True), ("unsplit", resampling, False)]
    if arguments.before:
        variants.append(("before", load(arguments.before), False))
    for rate in map(int, arguments.rates.split(",")):
        t = np.arange(rate * 20) / rate
        wave = (0.5 * np.sin(2 * np.pi * 440 * t) + 1e-4 * np.sin(2 * np.pi * 3100 * t)).astype(np.float32)
        for name, module, split in variants:
            rows = module.native_rows(wave, rate, DEFAULT_HOP, pad_tail=True)
            cpu = create_session(module.with_resampler(windows_model(), rate), "cpu").run(None, {"waveform": rows})[0]
            model = module.with_resampler(windows_model(), rate, exact_tf32=True) if split else \
                module.with_resampler(windows_model(), rate)
            session = create_session(model, "cuda")
            error = float(np.abs(session.run(None, {"waveform": rows})[0] - cpu).max())
            print(f"{rate:>6} {name:15} max abs vs CPU {error:.2e}  {resident_rows_per_s(session, rows):>11,.0f} "
                  "rows/s GPU-resident", flush=True)


if __name__ == "__main__":
    main()
