"""Where batches are assembled: reused host buffers (page-locked on CUDA), or device buffers on one GPU.

The batcher (engine.pipeline) puts each block's rows into a batch's
:class:`BatchInputs` as the block arrives, and the device worker gives the
buffer back once the batch has run. A fixed set of buffers, reused, costs no
page faults per batch (a fresh 64 MB array costs 16,384 of them).

- :class:`BatchBuffers`: host buffers; on CUDA page-locked, so that the
  runner's host-to-device copy reads them at the link's rate while the other
  session of the same GPU runs its batch. Used on the CPU and where one
  process feeds several GPUs.
- :class:`DeviceBatchBuffers`: buffers on one GPU. Rows go from the block's
  own memory (a decoding worker's shared-memory slot, a spectrogram chunk) to
  the device as they arrive, through engine.cudart, which releases the GIL: the
  batcher copies no bytes itself, and the runner only runs. Rows that are not
  float32 and contiguous go through one page-locked bounce buffer first.
"""
from __future__ import annotations

import ctypes
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vggish_rt.engine import cudart
from vggish_rt.engine.session import onnxruntime


@dataclass
class DeviceRows:
    """``count`` rows of float32 inputs on CUDA device ``device_id`` at ``address``, in a buffer of
    ``capacity`` rows of ``row_shape`` whose rows after ``count`` are zero (a tail batch keeps the shape)."""

    address: int
    count: int
    capacity: int
    row_shape: tuple[int, ...]
    device_id: int

    def __len__(self) -> int:
        return self.count

    def to_host(self) -> np.ndarray:
        """The rows in host memory: float32 [count, *row_shape]."""
        host = np.empty((self.count, *self.row_shape), np.float32)
        cudart.copy(host.ctypes.data, self.address, host.nbytes, cudart.DEVICE_TO_HOST, self.device_id)
        return host


class BatchInputs(Protocol):
    """One batch being assembled: :meth:`put` rows at a row number, then :meth:`rows` for the runner."""

    def put(self, row: int, data: np.ndarray) -> None: ...

    def rows(self, count: int) -> np.ndarray | DeviceRows: ...


class HostInputs:
    """A batch in host memory: float32 [batch_size, *row_shape]."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def put(self, row: int, data: np.ndarray) -> None:
        self.array[row : row + len(data)] = data

    def rows(self, count: int) -> np.ndarray:
        return self.array[:count]


class DeviceInputs:
    """A batch in a device buffer of ``capacity`` rows; rows copied in as they are put (GIL released)."""

    def __init__(self, address: int, capacity: int, row_shape: tuple[int, ...], device_id: int,
                 bounce: np.ndarray) -> None:
        self.address, self.capacity, self.row_shape, self.device_id = address, capacity, row_shape, device_id
        self.row_bytes = 4 * int(np.prod(row_shape))
        self.bounce = bounce[: capacity * self.row_bytes].view(np.float32).reshape(capacity, *row_shape)

    def put(self, row: int, data: np.ndarray) -> None:
        if data.dtype != np.float32 or not data.flags.c_contiguous:
            staged = self.bounce[row : row + len(data)]
            staged[...] = data
            data = staged
        cudart.copy(self.address + row * self.row_bytes, data.ctypes.data, data.nbytes, cudart.HOST_TO_DEVICE,
                    self.device_id)

    def rows(self, count: int) -> DeviceRows:
        if count < self.capacity:
            cudart.zero(self.address + count * self.row_bytes, (self.capacity - count) * self.row_bytes,
                        self.device_id)
        return DeviceRows(self.address, count, self.capacity, self.row_shape, self.device_id)


class BatchBuffers:
    """``count`` host buffers of ``nbytes`` each; page-locked (cudaHostAlloc) when ``pinned``.

    :meth:`take` blocks until a buffer is free and returns it with the function
    that gives it back. The caller sizes ``count`` above the number of batches
    that can be in flight. Page-locked memory is freed when the object is.
    """

    def __init__(self, count: int, nbytes: int, pinned: bool) -> None:
        self.nbytes, self.pinned = nbytes, pinned
        self._addresses: list[int] = []
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(count):
            self._free.put(self._host(nbytes, pinned))

    def _host(self, nbytes: int, pinned: bool) -> np.ndarray:
        if not pinned:
            return np.zeros(nbytes, np.uint8)  # touched now: no page faults later
        address = cudart.host_alloc(nbytes)
        self._addresses.append(address)
        return np.frombuffer((ctypes.c_uint8 * nbytes).from_address(address), np.uint8)

    def take(self, shape: tuple[int, ...]) -> tuple[BatchInputs, Callable[[], None]]:
        """A free buffer holding float32 ``shape`` (at most ``nbytes``), and the function that gives it back."""
        buffer = self._free.get()
        array = buffer[: 4 * int(np.prod(shape))].view(np.float32).reshape(shape)
        return HostInputs(array), lambda: self._free.put(buffer)

    def __del__(self) -> None:
        for address in self._addresses:  # the page-locked memory, once nothing refers to the buffers
            cudart.host_free(address)


class DeviceBatchBuffers(BatchBuffers):
    """``count`` buffers of ``nbytes`` on CUDA device ``device_id`` (onnxruntime's allocator, freed with the
    object), and one page-locked bounce buffer of ``nbytes`` for rows that need converting."""

    def __init__(self, count: int, nbytes: int, device_id: int) -> None:
        self.nbytes, self.pinned, self.device_id = nbytes, True, device_id
        self._addresses = []
        self._bounce = self._host(nbytes, pinned=True)
        ort = onnxruntime()
        with cudart.GATE.exclusive():  # allocations: never beside a session's start-up
            self._values = [ort.OrtValue.ortvalue_from_shape_and_type([nbytes // 4], np.float32, "cuda", device_id)
                            for _ in range(count)]
        self._free = queue.Queue()
        for value in self._values:
            self._free.put(value.data_ptr())

    def take(self, shape: tuple[int, ...]) -> tuple[BatchInputs, Callable[[], None]]:
        address = self._free.get()
        inputs = DeviceInputs(address, shape[0], tuple(shape[1:]), self.device_id, self._bounce)
        return inputs, lambda: self._free.put(address)
