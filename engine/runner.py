"""Running one model on one device, batch after batch.

On the CPU a batch runs as it is. On CUDA, input and output buffers live on
the device, allocated at the batch size and bound to the session (IO binding):
a batch assembled on the device (engine.staging.DeviceRows) is bound where it
is; a batch in host memory is copied into the runner's own input buffer (a
full float32 batch straight from its own memory, a tail batch or another dtype
through a reused float32 staging array). Every batch has the same shape (a
short tail batch is zero-padded and its padding rows dropped from the output),
so cuDNN's exhaustive algorithm search runs once, not once per new shape: in
a first run of zeros when the buffers are bound. Creating the session, binding
and that first run form one exclusive section of engine.cudart.GATE (nothing
else in the process touches CUDA meanwhile); every later run is a shared one.
Copies go through engine.cudart, which releases the GIL while they run, so the
sessions of several GPUs copy at the same time (onnxruntime's own OrtValue
copies hold the GIL).

Out of memory at the batch size (onnxruntime's allocation failures, CUDA's,
cuDNN's and cuBLAS's), the runner halves its batch size, rebinds, tells
``report`` once and runs the batch again in pieces; the job goes on at the
smaller size. Only at batch size 1 does the error become the job's.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable

import numpy as np

from vggish_rt.engine import cudart, params
from vggish_rt.engine.errors import DeviceFailure, VggishError, option
from vggish_rt.engine.session import create_session, onnxruntime
from vggish_rt.engine.staging import DeviceRows


# onnxruntime's arena ("Available memory of X is smaller than requested bytes of Y", as seen on an H200
# under gpu_mem_limit), CUDA's, cuDNN's and cuBLAS's allocation failures, and the C++ runtime's.
_OUT_OF_MEMORY = re.compile(r"out of memory|failed to allocate|bad_alloc|ALLOC_FAILED|cudaErrorMemoryAllocation"
                            r"|Available memory of \d+ is smaller than requested bytes", re.IGNORECASE)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an onnxruntime exception reports an exhausted allocator (host or device)."""
    return bool(_OUT_OF_MEMORY.search(str(error)))


def _first_line(error: BaseException) -> str:
    """onnxruntime's message, its first line, at most 300 characters (its texts run to pages)."""
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Runner:
    """One session of one model file on one device; call it with a batch of at most ``batch_size`` rows.

    ``row_shape`` is one input row's shape: (96, 64) for log-mel examples,
    (15600,) for waveform windows. Returns float32 [n, 128].
    """

    def __init__(self, model: bytes, input_name: str, row_shape: tuple[int, ...], batch_size: int,
                 kind: str = "cpu", device_id: int = 0, threads: int | None = None,
                 cuda_options: dict[str, str] | None = None, tensorrt_cache: str | None = None,
                 report: Callable[[str], None] = _to_stderr) -> None:
        self.report = report
        self.input_name, self.row_shape, self.batch_size = input_name, row_shape, batch_size
        self.kind, self.device_id = kind, device_id
        self._run_options = onnxruntime().RunOptions()
        self._run_options.log_severity_level = 4  # a failed run is raised, and said in one line (DeviceFailure)
        if kind != "cuda":
            self.session = create_session(model, kind, device_id, threads, cuda_options, tensorrt_cache)
            return
        with cudart.GATE.exclusive():  # nothing else on CUDA in this process meanwhile (engine.cudart.GATE)
            self.session = create_session(model, kind, device_id, threads, cuda_options, tensorrt_cache)
            self._bind_fitting()

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.device_id}"

    def _bind(self) -> None:
        """Device buffers at the batch size, bound; then a first run of zeros at that shape (cuDNN's algorithm
        search, the CUDA provider's first allocations), all in one exclusive section of engine.cudart.GATE."""
        ort = onnxruntime()
        shape = [self.batch_size, *self.row_shape]
        with cudart.GATE.exclusive():
            self._staging = np.zeros(shape, np.float32)
            self._host_output = np.empty((self.batch_size, params.EMBEDDING_SIZE), np.float32)
            self._input = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cuda", self.device_id)
            self._output = ort.OrtValue.ortvalue_from_shape_and_type([self.batch_size, params.EMBEDDING_SIZE],
                                                                     np.float32, "cuda", self.device_id)
            self._binding = self.session.io_binding()
            self._binding.bind_ortvalue_output(params.ONNX_EMBEDDING, self._output)
            self._to_device(self._staging)
            self._binding.bind_ortvalue_input(self.input_name, self._input)
            self.session.run_with_iobinding(self._binding, self._run_options)

    def __call__(self, batch: np.ndarray | DeviceRows) -> np.ndarray:
        n = len(batch)
        if n > self.batch_size:  # after a halving: the pipeline's batches are still cut at the first size
            if isinstance(batch, DeviceRows):  # run in pieces from host memory (only after running out of memory)
                batch = batch.to_host()
            size = self.batch_size  # fixed now: running a piece may halve it again
            return np.concatenate([self(batch[i:i + size]) for i in range(0, n, size)])
        try:
            return self._run(batch)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes; only OOM is handled
            self._halve_or_raise(exc, n)
            return self(batch)

    def _halve_or_raise(self, exc: Exception, n: int) -> None:
        """After ``exc`` running ``n`` rows: out of memory, go on at half the batch size (said once, rebound on
        CUDA); any other error of onnxruntime's is a DeviceFailure, ours is raised as it is."""
        if isinstance(exc, VggishError):
            raise exc
        if not is_out_of_memory(exc):
            raise DeviceFailure(f"{self}: onnxruntime failed running a batch of {n} rows "
                                f"({type(exc).__name__}: {_first_line(exc)})") from None
        size = min(self.batch_size, n) // 2
        if size < 1:
            raise VggishError(f"{self}: out of memory even at batch size 1 ({_first_line(exc)})") from None
        self.report(f"warning: {self} ran out of memory at batch size {min(self.batch_size, n)}; "
                    f"going on at {size} (set {option('batch_size', size)} to start there)")
        self.batch_size = size
        if self.kind == "cuda":
            self._bind_fitting()

    def _bind_fitting(self) -> None:
        """:meth:`_bind` at the batch size, halved while it does not fit."""
        try:
            self._bind()
        except Exception as exc:  # noqa: BLE001 - onnxruntime's classes
            self._halve_or_raise(exc, self.batch_size)

    def _run(self, batch: np.ndarray | DeviceRows) -> np.ndarray:
        n = len(batch)
        if self.kind == "cpu":
            return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)},
                                    self._run_options)[0]
        with cudart.GATE.shared():  # the copies and the run: steady work, beside other sessions' own
            if isinstance(batch, DeviceRows):  # assembled on this device: bound where it is, zeros after its rows
                if batch.device_id != self.device_id or batch.capacity < self.batch_size:
                    raise VggishError(f"{self}: a batch on cuda:{batch.device_id} of {batch.capacity} rows cannot run here")
                self._binding.bind_input(self.input_name, "cuda", self.device_id, np.float32,
                                         [self.batch_size, *self.row_shape], batch.address)
            else:
                if n == self.batch_size and batch.dtype == np.float32 and batch.flags.c_contiguous:
                    host = batch  # a full batch goes straight from its own memory
                else:
                    self._staging[:n] = batch
                    self._staging[n:] = 0.0
                    host = self._staging
                self._to_device(host)
                self._binding.bind_ortvalue_input(self.input_name, self._input)
            self.session.run_with_iobinding(self._binding, self._run_options)
            return self._to_host()[:n].copy()

    def _to_device(self, host: np.ndarray) -> None:
        """float32 [batch_size, *row_shape] host rows -> the bound input buffer (GIL released)."""
        cudart.copy(self._input.data_ptr(), host.ctypes.data, host.nbytes, cudart.HOST_TO_DEVICE, self.device_id)

    def _to_host(self) -> np.ndarray:
        """The bound output buffer -> float32 [batch_size, 128] in host memory (reused; GIL released)."""
        cudart.copy(self._host_output.ctypes.data, self._output.data_ptr(), self._host_output.nbytes,
                    cudart.DEVICE_TO_HOST, self.device_id)
        return self._host_output
