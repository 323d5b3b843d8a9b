"""Reusable host buffers that batches are assembled in: page-locked on CUDA.

The batcher copies each batch's rows into a free buffer (engine.pipeline);
the device worker gives it back once the runner has copied the rows to the
device. A fixed set of buffers, reused, costs no page faults per batch (a fresh
64 MB array costs 16,384 of them), and on CUDA the host-to-device copy reads
page-locked memory directly, at the link's rate, while the other session of
the same GPU runs its batch.
"""
from __future__ import annotations

import ctypes
import queue

import numpy as np

from vggish_rt.engine import cudart


class BatchBuffers:
    """``count`` host buffers of ``nbytes`` each; page-locked (cudaHostAlloc) when ``pinned``.

    :meth:`take` blocks until a buffer is free; :meth:`give` returns one. The
    caller sizes ``count`` above the number of batches that can be in flight.
    Page-locked memory is freed when the object is.
    """

    def __init__(self, count: int, nbytes: int, pinned: bool) -> None:
        self.nbytes, self.pinned = nbytes, pinned
        self._addresses: list[int] = []
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(count):
            if pinned:
                address = cudart.host_alloc(nbytes)
                self._addresses.append(address)
                buffer = np.frombuffer((ctypes.c_uint8 * nbytes).from_address(address), np.uint8)
            else:
                buffer = np.zeros(nbytes, np.uint8)  # touched now: no page faults later
            self._free.put(buffer)

    def take(self) -> np.ndarray:
        """A free buffer: uint8 [nbytes]."""
        return self._free.get()

    def give(self, buffer: np.ndarray) -> None:
        self._free.put(buffer)

    def __del__(self) -> None:
        for address in self._addresses:  # the page-locked memory, once nothing refers to the buffers
            cudart.host_free(address)
