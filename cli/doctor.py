"""``vggish-rt doctor``: what is installed, what it sees, and whether the model is sound."""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.modeldir import ModelDirectory, default_model_dir

PACKAGES = ("vggish-rt", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "soundfile", "soxr", "resampy",
            "pyarrow", "typer", "tensorflow-cpu", "tensorflow", "tf-slim", "tf2onnx", "ray")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def report(model: Path | None) -> bool:
    """Print the report on stdout; True when the runtime and the model are usable."""
    ok = True
    print(f"python {platform.python_version()} on {platform.platform()}")
    for name in PACKAGES:
        version = _version(name)
        if version:
            print(f"  {name} {version}")
    if _version("onnxruntime") and _version("onnxruntime-gpu"):
        print("problem: both onnxruntime and onnxruntime-gpu are installed; they share one module. "
              "Uninstall both, then install exactly one.")
        ok = False
    try:
        from vggish_rt.engine.session import cuda_device_count, onnxruntime

        ort = onnxruntime()
        print(f"onnxruntime providers: {', '.join(ort.get_available_providers())}")
        print(f"CUDA GPUs visible to onnxruntime: {cuda_device_count()}")
    except VggishError as exc:
        print(f"problem: {exc}")
        ok = False
    path = model or default_model_dir()
    try:
        directory = ModelDirectory(path)
    except VggishError as exc:
        print(f"model: problem: {exc}")
        return False
    print(f"model: {directory.describe()}")
    for name, state in directory.verify_all().items():
        print(f"  {name}: {'sha256 ok' if state == 'ok' else 'problem: ' + state}")
        ok = ok and state == "ok"
    return ok
