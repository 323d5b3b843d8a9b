"""The CUDA runtime through ctypes: counting GPUs, and host <-> device copies that release the GIL.

onnxruntime's Python ``OrtValue.update_inplace`` and ``OrtValue.numpy`` copy
between host and device while holding the GIL (its binding has no
``gil_scoped_release``): with one thread per GPU session, every GPU's copies
then run one at a time, and a float32 batch of 1024 examples is 25 MB. A
ctypes call releases the GIL for its whole length, so :func:`copy` lets the
threads of different GPUs copy at the same time.

Each copy runs on the calling thread's own default stream
(``cudaStreamPerThread``, which does not wait for onnxruntime's streams) and
is synchronised before returning, so the data is on the device (or the host)
when it returns. The library is the process's libcudart, the one onnxruntime
itself loaded (``onnxruntime.preload_dlls`` or the system's).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from collections.abc import Iterator

from vggish_rt.engine.errors import VggishError

HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2          # cudaMemcpyKind
_PER_THREAD_STREAM = ctypes.c_void_p(2)         # cudaStreamPerThread
_NAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so")


class _Gate:
    """A process-wide shared/exclusive lock over this process's CUDA work (see :data:`GATE`).

    Reentrant within a thread: a thread inside a section passes nested sections of either kind through
    (an exclusive section may then hold shared work of its own); a shared holder asking for an exclusive
    section is a programming error, refused (two such threads would wait for each other forever).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0              # threads in shared sections
        self._exclusive = False       # a thread is in the exclusive section
        self._waiting_exclusive = 0   # exclusive sections waiting: new shared ones wait behind them
        self._held = threading.local()  # .kind: the section this thread is in ("shared", "exclusive" or None)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Steady work: running a warm session, copies. Many at once; never beside an exclusive section."""
        if self._kind():
            yield
            return
        with self._condition:
            while self._exclusive or self._waiting_exclusive:
                self._condition.wait()
            self._shared += 1
        self._held.kind = "shared"
        try:
            yield
        finally:
            self._held.kind = None
            with self._condition:
                self._shared -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Work that may capture a stream, or must not run beside one: creating a session, its first run at a
        batch shape (cuDNN's algorithm search), allocating or page-locking memory, making a context. Alone."""
        held = self._kind()
        if held == "shared":
            raise RuntimeError("an exclusive CUDA section inside a shared one")
        if held:
            yield
            return
        with self._condition:
            self._waiting_exclusive += 1
            while self._exclusive or self._shared:
                self._condition.wait()
            self._waiting_exclusive -= 1
            self._exclusive = True
        self._held.kind = "exclusive"
        try:
            yield
        finally:
            self._held.kind = None
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()

    def _kind(self) -> str | None:
        return getattr(self._held, "kind", None)


# Every CUDA call this process makes goes through it: CUDA forbids "unsafe" calls (cudaDeviceSynchronize,
# cudaMalloc, cudaHostRegister, ...) in any thread while another thread captures a stream in the global mode,
# and invalidates that capture, and onnxruntime's CUDA provider and cuDNN do both at start-up (a session's
# creation synchronizes the device; its first runs capture: docs/reliability.md). Exclusive sections for
# those, shared ones for steady work: so nothing runs beside a session's start-up, by construction.
GATE = _Gate()


@functools.lru_cache(maxsize=None)
def runtime() -> ctypes.CDLL | None:
    """The CUDA runtime library, or None where there is none."""
    for name in _NAMES:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                        ctypes.c_void_p]
        lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        lib.cudaSetDevice.argtypes = [ctypes.c_int]
        lib.cudaGetDeviceCount.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        lib.cudaHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
        lib.cudaFreeHost.argtypes = [ctypes.c_void_p]
        lib.cudaFree.argtypes = [ctypes.c_void_p]
        lib.cudaMemsetAsync.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p]
        lib.cudaHostRegister.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
        lib.cudaHostUnregister.argtypes = [ctypes.c_void_p]
        return lib
    return None


def device_count() -> int:
    """CUDA devices the runtime sees (0 without a runtime library or a driver)."""
    lib = runtime()
    count = ctypes.c_int(0)
    return count.value if lib is not None and lib.cudaGetDeviceCount(ctypes.byref(count)) == 0 else 0


def start_contexts(device_ids: tuple[int, ...]) -> None:
    """Create each device's primary context (the one onnxruntime's sessions use) in a background thread, so
    that it is made while the caller reads and prepares the model; errors are left to the sessions to report."""
    lib = runtime()
    if lib is None:
        return

    def start() -> None:
        with GATE.exclusive():
            for device_id in device_ids:
                if lib.cudaSetDevice(device_id) == 0:
                    lib.cudaFree(None)  # the runtime's idiom for "initialise the context now"

    threading.Thread(target=start, name="vggish-cuda-contexts", daemon=True).start()


def _check(lib: ctypes.CDLL, status: int, what: str) -> None:
    if status != 0:
        raise VggishError(f"CUDA {what} failed: {lib.cudaGetErrorString(status).decode()}")


def _loaded() -> ctypes.CDLL:
    lib = runtime()
    if lib is None:
        raise VggishError("the CUDA runtime library (libcudart) is not loaded")
    return lib


def copy(destination: int, source: int, nbytes: int, kind: int, device_id: int) -> None:
    """Copy ``nbytes`` from address ``source`` to ``destination`` (``kind``: HOST_TO_DEVICE or
    DEVICE_TO_HOST) for device ``device_id``; returns when the copy is complete. Releases the GIL.
    Host memory may be pageable or page-locked (the latter copies at the link's full rate)."""
    lib = _loaded()
    with GATE.shared():
        _check(lib, lib.cudaSetDevice(device_id), "cudaSetDevice")
        _check(lib, lib.cudaMemcpyAsync(destination, source, nbytes, kind, _PER_THREAD_STREAM), "cudaMemcpyAsync")
        _check(lib, lib.cudaStreamSynchronize(_PER_THREAD_STREAM), "cudaStreamSynchronize")


def zero(destination: int, nbytes: int, device_id: int) -> None:
    """Set ``nbytes`` of device memory at ``destination`` to zero; returns when done. Releases the GIL."""
    lib = _loaded()
    with GATE.shared():
        _check(lib, lib.cudaSetDevice(device_id), "cudaSetDevice")
        _check(lib, lib.cudaMemsetAsync(destination, 0, nbytes, _PER_THREAD_STREAM), "cudaMemsetAsync")
        _check(lib, lib.cudaStreamSynchronize(_PER_THREAD_STREAM), "cudaStreamSynchronize")


def host_alloc(nbytes: int) -> int:
    """``nbytes`` of page-locked host memory (cudaHostAlloc, portable to every device); returns its address.
    Copies from it run at the link's full rate, without the driver's staging through a bounce buffer."""
    lib = _loaded()
    pointer = ctypes.c_void_p()
    with GATE.exclusive():
        _check(lib, lib.cudaHostAlloc(ctypes.byref(pointer), nbytes, 1), "cudaHostAlloc")  # cudaHostAllocPortable
    return int(pointer.value)


def host_free(address: int) -> None:
    """Free memory from :func:`host_alloc`. Errors are ignored: at interpreter exit the CUDA context may be
    gone already, and the memory with it."""
    lib = runtime()
    if lib is not None:
        lib.cudaFreeHost(address)


def host_register(address: int, nbytes: int) -> bool:
    """Page-lock ``nbytes`` of existing host memory at ``address`` (for every device), so that copies from it
    run at the link's rate; False where that cannot be done (no runtime, or the kernel refuses)."""
    lib = runtime()
    if lib is None or device_count() == 0:
        return False
    with GATE.exclusive():
        if lib.cudaHostRegister(address, nbytes, 1) != 0:  # cudaHostRegisterPortable
            lib.cudaGetLastError()  # clear it: the memory stays pageable, copies from it still work
            return False
    return True


def host_unregister(address: int) -> None:
    """Undo :func:`host_register` (before the memory is unmapped)."""
    lib = runtime()
    if lib is not None:
        lib.cudaHostUnregister(address)
