"""Streaming batches through one or more runners, results in input order.

    producer thread --> [todo queue] --> one worker thread per runner --> [done queue] --> caller, in order

The producer turns a stream of blocks into batches of exactly ``batch_size``
rows (the last one shorter); a batch never mixes audio windows with log-mel
examples. At most ``depth x workers`` batches are in flight between the
producer and the caller, so memory stays flat whatever the job's size and
whichever stage is slowest.
The caller receives each batch with its embeddings strictly in sequence.

Threads, not processes, one per session (two per GPU), decided by
measurement on two H200s (docs/benchmarks.md): onnxruntime releases the GIL in
``run`` and the runner's copies (engine.cudart) release it too; threads reached
1.84x-1.89x one GPU (1.70x-1.77x while the copies held the GIL); worker
processes fed from this one producer through shared memory were slower
(152,580 against 174,579 examples/s in fp32), since every batch then costs
one more copy. Only fully
independent processes, each reading its own input, scaled 2x; that is a job
sharded by input (engine.shards runs this pipeline in each such process). A
worker with a ``prepare`` (engine.embedder.Worker: its session) runs it in its
own thread before taking a batch, so the workers ready first start the job. A
worker with a ``start_after`` (seconds) waits that long before it prepares, and
never prepares if the other workers took every batch meanwhile.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.inputs import printable
from vggish_rt.engine.ledger import InputEnded
from vggish_rt.engine.rowkind import EXAMPLES, RowKind
from vggish_rt.engine.sources import InputRows
from vggish_rt.engine.staging import BatchBuffers, BatchInputs, DeviceRows, HostInputs
from vggish_rt.engine.store import Rows


@dataclass
class Batch:
    """Rows that run together. ``inputs``: float32 [n, 96, 64] examples or [n, 15600] windows, in host memory
    or already on the device that runs them (engine.staging); ``numbers``: each row's input number.

    ``ended``: the inputs that ended while this batch was cut (engine.ledger.InputEnded), each of them with
    its rows in this batch or earlier ones; a last batch of no rows carries the ends after the last row.
    """

    seq: int
    kind: RowKind
    inputs: np.ndarray | DeviceRows | None  # dropped once run
    sources: list[str]
    index: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    metadata: list[list[str]] = field(default_factory=list)
    recycle: Callable[[], None] | None = None  # gives ``inputs``' buffer back (engine.staging)
    numbers: np.ndarray | None = None          # int64 [n]: each row's source number
    ended: list[InputEnded] = field(default_factory=list)

    def rows(self, values: np.ndarray) -> Rows:
        return Rows(self.sources, self.index, self.start_s, self.end_s, values, self.metadata)


def batches(blocks: Iterable[InputRows | InputEnded],
            batch_size: int | Callable[[RowKind], int], buffers: BatchBuffers | None = None) -> Iterator[Batch]:
    """Cut blocks of rows (engine.sources.InputRows) into Batches of ``batch_size`` rows (a number, or the
    rows of a batch of each kind: engine.resampling.batch_rows); an InputEnded among them rides on the batch
    being cut (``ended``).

    Rows are copied into the batch's float32 inputs as their block arrives, and
    a block's ``release`` is called once all its rows are copied, so the
    batcher never holds a decoding worker's memory while it waits for more rows.
    ``buffers``: the inputs are assembled in these (each at least a batch of the
    largest row), and the batch's ``recycle`` gives the buffer back; without
    them, each batch gets a new array.
    """
    pieces: list[_Piece] = []
    rows_of = batch_size if callable(batch_size) else lambda _: batch_size
    filled, seq, kind, size = 0, 0, EXAMPLES, 0
    inputs: BatchInputs | None = None
    give_back: Callable[[], None] | None = None
    ended: list[InputEnded] = []

    def emit() -> Batch:
        nonlocal pieces, filled, seq, inputs, give_back, ended
        batch = _batch(seq, kind, inputs.rows(filled) if inputs is not None else None, pieces, give_back, ended)
        pieces, filled, seq, inputs, give_back, ended = [], 0, seq + 1, None, None, []
        return batch

    for item in blocks:
        if isinstance(item, InputEnded):
            ended.append(item)
            continue
        block = item.block
        if filled and block.kind != kind:
            yield emit()
        kind, size = block.kind, rows_of(block.kind)
        data = block.windows if block.windows is not None else block.examples
        start = 0
        while start < len(block):
            if inputs is None:
                shape = (size, *data.shape[1:])
                if buffers is not None:
                    inputs, give_back = buffers.take(shape)
                else:
                    inputs = HostInputs(np.empty(shape, np.float32))
            take = min(size - filled, len(block) - start)
            inputs.put(filled, data[start : start + take])
            pieces.append(_Piece(item, start, start + take))
            filled += take
            start += take
            if filled == size:
                if start == len(block) and block.release is not None:
                    block.release()
                    block.release = None
                yield emit()
        if block.release is not None:
            block.release()
    if filled or ended:
        yield emit()


@dataclass(frozen=True)
class _Piece:
    """Rows [start, stop) of ``rows``' block, copied into a batch."""

    rows: InputRows
    start: int
    stop: int


def _batch(seq: int, kind: RowKind, inputs: np.ndarray | DeviceRows | None, pieces: list[_Piece],
           give_back: Callable[[], None] | None, ended: list[InputEnded]) -> Batch:
    """The Batch of ``inputs`` whose rows are ``pieces``, in order."""
    sources: list[str] = []
    for p in pieces:
        sources += [printable(str(p.rows.block.source))] * (p.stop - p.start)
    cut = [(p.rows.block, slice(p.start, p.stop)) for p in pieces]
    columns = ([b.index[s] for b, s in cut], [b.start_s[s] for b, s in cut], [b.end_s[s] for b, s in cut],
               [np.full(p.stop - p.start, p.rows.number) for p in pieces])
    index, start_s, end_s, numbers = (np.concatenate(c) if c else np.empty(0, t)
                                      for c, t in zip(columns, (np.int64, np.float64, np.float64, np.int64)))
    metadata = [row for p in pieces for row in p.rows.metadata[p.start : p.stop]]
    return Batch(seq, kind, inputs, sources, index, start_s, end_s, metadata, give_back, numbers, ended)


_DONE = object()
DEPTH = 2  # batches in flight per worker between the producer and the caller


def run_batches(source: Iterable[Batch], workers: list[Callable[[Batch], np.ndarray]],
                depth: int = DEPTH) -> Iterator[tuple[Batch, np.ndarray]]:
    """Run every batch on one of ``workers`` (one a device); yield (batch, float32 [n,128]) in sequence order.

    An exception in the producer or a worker stops everything and is re-raised here.
    """
    lanes = _Lanes(workers, depth)
    threads = [threading.Thread(target=lanes.produce, args=(source,), name="vggish-producer", daemon=True)]
    threads += [threading.Thread(target=lanes.work, args=(w,), name=f"vggish-device-{i}", daemon=True)
                for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    try:
        yield from lanes.in_order()
    finally:
        # Stop and join every thread before returning or raising: a worker left inside onnxruntime while
        # the interpreter exits aborts the process ("terminate called without an active exception").
        lanes.stop()
        for thread in threads:
            thread.join()


class _Lanes:
    """run_batches' queues: the producer's batches to the workers (``todo``), their results or exceptions back
    (``done``), handed to the caller in sequence order."""

    def __init__(self, workers: list[Callable[[Batch], np.ndarray]], depth: int) -> None:
        self.workers = workers
        self.todo: queue.Queue = queue.Queue()
        self.done: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.ending = threading.Event()  # set once a worker took an end marker (every batch is taken) or on stopping
        # Batches between the producer and the caller, queued, running or waiting to be handed back in
        # order: bounded, so a slow consumer cannot make finished batches pile up in memory.
        self.in_flight = threading.Semaphore(depth * len(workers))

    def produce(self, source: Iterable[Batch]) -> None:
        try:
            for batch in source:
                while not self.in_flight.acquire(timeout=0.1):
                    if self.stopping.is_set():
                        return
                if self.stopping.is_set():
                    return
                self.todo.put(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self.done.put(exc)
        finally:
            for _ in self.workers:
                self.todo.put(_DONE)

    def work(self, worker: Callable[[Batch], np.ndarray]) -> None:
        if self.ending.wait(getattr(worker, "start_after", 0.0)):  # every batch taken before this worker's turn came
            self.done.put(_DONE)
            return
        prepare = getattr(worker, "prepare", None)  # a worker's own start-up (its session), beside the others' work
        try:
            if prepare is not None:
                prepare()
            while (batch := self.todo.get()) is not _DONE and not self.stopping.is_set():
                values = worker(batch) if len(batch.index) else np.empty((0, params.EMBEDDING_SIZE), np.float32)
                if batch.recycle is not None:
                    batch.recycle()
                batch.inputs = None  # the caller needs the rows' provenance, not their inputs
                self.done.put((batch, values))
            self.ending.set()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self.done.put(exc)
        self.done.put(_DONE)

    def in_order(self) -> Iterator[tuple[Batch, np.ndarray]]:
        waiting: dict[int, tuple[Batch, np.ndarray]] = {}
        next_seq, finished = 0, 0
        while finished < len(self.workers) or next_seq in waiting:
            if finished < len(self.workers):
                item = self.done.get()
                if item is _DONE:
                    finished += 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                waiting[item[0].seq] = item
            while next_seq in waiting:
                yield waiting.pop(next_seq)
                self.in_flight.release()
                next_seq += 1

    def stop(self) -> None:
        self.stopping.set()
        self.ending.set()
        for _ in self.workers:
            self.todo.put(_DONE)
