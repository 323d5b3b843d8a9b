"""onnxruntime sessions: one per device, providers checked, never a silent fallback.

``onnxruntime`` and ``onnxruntime-gpu`` both install the module ``onnxruntime``;
exactly one of them must be installed (the ``[cpu]`` or ``[gpu]`` extra).
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from types import ModuleType

from vggish_rt.engine import cudart
from vggish_rt.engine.errors import ArgumentError, VggishError

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@functools.lru_cache(maxsize=None)
def onnxruntime() -> ModuleType:
    """The onnxruntime module (CUDA libraries preloaded once), or a VggishError saying how to install it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise VggishError("onnxruntime is not installed: pip install 'vggish-rt[cpu]' (or '[gpu]' for "
                          "onnxruntime-gpu; never both)") from None
    ort.set_default_logger_severity(3)  # errors only: its warnings are not addressed to our users
    if hasattr(ort, "preload_dlls") and CUDA in ort.get_available_providers():
        try:  # CUDA and cuDNN from pip wheels (nvidia-*), when present
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - system libraries may still be found by the loader
            pass
    return ort


@dataclass(frozen=True)
class Placement:
    """Where sessions run: ``kind`` 'cpu' or 'cuda', and the CUDA device ids."""

    kind: str
    device_ids: tuple[int, ...] = ()

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else "cuda:" + ",".join(map(str, self.device_ids))


def cuda_device_count() -> int:
    """GPUs visible to onnxruntime-gpu (0 without it or without a driver)."""
    if CUDA not in onnxruntime().get_available_providers():
        return 0
    return cudart.device_count()


def resolve_placement(device: str, device_ids: list[int] | None = None) -> Placement:
    """Parse ``auto``, ``cpu``, ``cuda``, ``cuda:0`` or ``cuda:0,1`` into a Placement.

    ``auto`` is CUDA on every visible GPU when onnxruntime-gpu sees one, else CPU.
    Asking for CUDA where it is not available is an error, never a fallback.
    """
    match = re.fullmatch(r"(auto|cpu|cuda)(?::(\d+(?:,\d+)*))?", device.strip().lower())
    if not match:
        raise ArgumentError("device", device, "expected auto, cpu, cuda or cuda:0,1,...")
    kind, ids_text = match.groups()
    ids = [int(i) for i in ids_text.split(",")] if ids_text else device_ids
    if kind == "cpu":
        return Placement("cpu")
    available = cuda_device_count()
    if kind == "auto" and not ids:
        return Placement("cuda", tuple(range(available))) if available else Placement("cpu")
    if not available:
        providers = ", ".join(onnxruntime().get_available_providers())
        raise ArgumentError("device", device, f"no CUDA GPU available to onnxruntime (providers: {providers}); "
                            "install vggish-rt[gpu] on a machine with an NVIDIA GPU, or use the CPU")
    ids = list(ids) if ids else list(range(available))
    bad = [i for i in ids if not 0 <= i < available]
    if bad or len(set(ids)) != len(ids):
        raise ArgumentError("device", device, f"GPU ids {ids} invalid or repeated ({available} GPU(s) visible)")
    return Placement("cuda", tuple(ids))


def create_session(model: bytes, kind: str, device_id: int = 0, threads: int | None = None,
                   cuda_options: dict[str, str] | None = None, tensorrt_cache: str | None = None) -> object:
    """An InferenceSession on one device, checked to really run there.

    CPU: ``threads`` intra-op threads (default: every core). CUDA: device
    ``device_id`` with ``cuda_options`` (onnxruntime's CUDA provider options).
    ``tensorrt_cache``: use the TensorRT provider first, with its engine cache in
    that directory (needs TensorRT's libraries, which pip cannot install on our
    machines; without them this is a clear error, never a quiet fallback).
    """
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if kind == "cpu":
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        providers: list = [CPU]
    else:
        # Every node runs on the GPU: one CPU thread, not spinning, instead of a pool of one spinning thread per core
        options.intra_op_num_threads = threads or 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [(CUDA, {"device_id": str(device_id), **(cuda_options or {})})]
        if tensorrt_cache is not None:
            if TENSORRT not in ort.get_available_providers():
                raise ArgumentError("provider", "tensorrt", "this onnxruntime build has no TensorRT provider")
            providers.insert(0, (TENSORRT, {"device_id": str(device_id), "trt_engine_cache_enable": "True",
                                            "trt_engine_cache_path": tensorrt_cache}))
    try:
        session = ort.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise VggishError(f"onnxruntime could not create a {kind} session: {str(exc).splitlines()[0]}") from None
    wanted = CPU if kind == "cpu" else TENSORRT if tensorrt_cache is not None else CUDA
    if wanted == TENSORRT and session.get_providers()[0] != TENSORRT:
        raise ArgumentError("provider", "tensorrt", "TensorRT's libraries (libnvinfer) could not be loaded; install "
                          "TensorRT for your CUDA version, or use the CUDA provider (the default)")
    if session.get_providers()[0] != wanted:
        raise VggishError(f"onnxruntime gave providers {session.get_providers()} instead of {wanted}; refusing a silent fallback")
    return session
