"""One process per GPU: sessions in worker processes, batches through shared memory.

Measured on two H200s (docs/benchmarks.md): sessions for both GPUs in one
process scaled 1.80x-1.87x, two processes 1.98x-2.03x. So with several GPUs
each device gets a spawned process that holds its own single-device
``Embedder`` (the same runners, rewrites and checksum checks). Each session
slot of a device has a pipe and two shared-memory buffers, input
``[batch, row]`` float32 and output ``[batch, 128]`` float32: the main
process's pipeline thread for that slot copies a batch in, sends
``(kind, rows)``, and waits for the rows' embeddings; nothing large is pickled.
"""
from __future__ import annotations

import multiprocessing
import threading
import weakref
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError

ROW_SHAPES = {"examples": (params.NUM_FRAMES, params.NUM_BANDS), "windows": (params.EXAMPLE_SAMPLES,)}
_READY = "ready"


def _serve(settings: dict[str, Any], device: str, kinds: tuple[str, ...], channels: list[tuple[Any, str, str]]) -> None:
    """Worker process: build the device's runners, then serve each slot's requests in its own thread."""
    from vggish_rt.engine.embedder import Embedder

    try:
        embedder = Embedder(device=device, **settings)
        runners = {(kind, slot): embedder.runner(kind, 0, slot) for kind in kinds for slot in range(len(channels))}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        for connection, _, _ in channels:
            connection.send(("error", f"{device}: {exc}"))
        return
    batch = embedder.batch_size

    def serve(slot: int) -> None:
        connection, input_name, output_name = channels[slot]
        inputs = shared_memory.SharedMemory(input_name)
        outputs = shared_memory.SharedMemory(output_name)
        views = {kind: np.ndarray((batch, *ROW_SHAPES[kind]), np.float32, buffer=inputs.buf) for kind in kinds}
        out = np.ndarray((batch, params.EMBEDDING_SIZE), np.float32, buffer=outputs.buf)
        connection.send(_READY)
        while (request := connection.recv()) is not None:
            kind, rows = request
            try:
                out[:rows] = runners[(kind, slot)](views[kind][:rows])
                connection.send(rows)
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                connection.send(("error", f"{device}: {exc}"))
        del views, out  # release the buffers before closing the shared memory
        inputs.close()
        outputs.close()

    threads = [threading.Thread(target=serve, args=(slot,)) for slot in range(len(channels))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class RemoteDevices:
    """Worker processes, one per device in ``devices``, with ``slots`` sessions each.

    ``settings``: Embedder keyword arguments other than ``device`` (model_dir,
    precision, batch_size, ...). :meth:`workers` gives one callable per slot for
    the pipeline, each taking a Batch and returning float32 [n,128].
    """

    def __init__(self, settings: dict[str, Any], devices: list[str], slots: int, kinds: tuple[str, ...]) -> None:
        self.batch_size = settings["batch_size"]
        row_bytes = max(int(np.prod(ROW_SHAPES[k])) for k in kinds) * 4
        context = multiprocessing.get_context("spawn")
        self._memory: list[shared_memory.SharedMemory] = []
        self._connections = []
        self._processes = []
        self._views: list[tuple[np.ndarray, np.ndarray]] = []
        for device in devices:
            channels = []
            for _ in range(slots):
                inputs = shared_memory.SharedMemory(create=True, size=self.batch_size * row_bytes)
                outputs = shared_memory.SharedMemory(create=True, size=self.batch_size * params.EMBEDDING_SIZE * 4)
                self._memory += [inputs, outputs]
                mine, theirs = context.Pipe()
                channels.append((theirs, inputs.name, outputs.name))
                self._connections.append(mine)
                self._views.append((np.ndarray(self.batch_size * row_bytes // 4, np.float32, buffer=inputs.buf),
                                    np.ndarray((self.batch_size, params.EMBEDDING_SIZE), np.float32, buffer=outputs.buf)))
            process = context.Process(target=_serve, args=(settings, device, kinds, channels), daemon=True,
                                      name=f"vggish-{device}")
            process.start()
            self._processes.append(process)
        self._finalizer = weakref.finalize(self, _shutdown, self._connections, self._processes, self._memory)
        for connection in self._connections:  # every slot's sessions exist before any batch runs
            reply = connection.recv()
            if reply != _READY:
                self.close()
                raise VggishError(reply[1])

    def _run(self, slot: int, batch: Any) -> np.ndarray:
        inputs, outputs = self._views[slot]
        rows = len(batch.inputs)
        inputs[: batch.inputs.size].reshape(batch.inputs.shape)[...] = batch.inputs
        self._connections[slot].send((batch.kind, rows))
        reply = self._connections[slot].recv()
        if reply != rows:
            raise VggishError(reply[1] if isinstance(reply, tuple) else f"worker answered {reply!r}")
        return outputs[:rows].copy()

    def workers(self) -> list:
        return [lambda batch, slot=slot: self._run(slot, batch) for slot in range(len(self._connections))]

    def close(self) -> None:
        self._finalizer()


def _shutdown(connections: list, processes: list, memory: list[shared_memory.SharedMemory]) -> None:
    for connection in connections:
        try:
            connection.send(None)
        except (OSError, ValueError):
            pass
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    for block in memory:
        block.close()
        block.unlink()
