"""The job on several devices: one process per device, each with its own share of the inputs.

    main: units of work, in input order --> [tasks] --> device process i: its own Embedder (sessions on one
    GPU, or a share of the CPU's threads), its own decoding pool, batcher and runners --> [results]:
    embeddings of each unit's rows, and how each unit ended --> main: units merged in input order --> store

A unit is one audio file, or ``UNIT_ROWS`` consecutive rows of a spectrogram
file (so one large ``.npy`` is shared too). Every unit is queued at the start
and processes pull them as they go, so a slow unit does not hold the others
back. The main process keeps the embeddings of units finished ahead of the
earliest unfinished one (512 bytes a row): as many as the other processes
embed while that unit runs. Only embeddings and their provenance cross
between processes: audio is decoded where it is embedded.

The main process applies the error policy, keeps the report and commits the
store, exactly as the single-process job does, so the output (rows, order,
index, failures, resume) is the same bytes: a spectrogram file that fails in
one unit keeps the rows before the bad chunk, and its later units are
dropped. Device processes end with the job (kill -9 included).
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vggish_rt.engine.decoding import DecodePool, default_workers, started_beside, to_examples
from vggish_rt.engine.errors import DemoModelWarning, DeviceFailure, VggishError
from vggish_rt.engine.inputs import is_spectrogram, open_spectrograms, printable
from vggish_rt.engine.processes import Failed, ProcessGroup, Ready, follow
from vggish_rt.engine.resampling import sized_kinds
from vggish_rt.engine.rowkind import RowKind
from vggish_rt.engine.sources import Block, InputRows, ReadOptions, input_blocks, skip_rows
from vggish_rt.engine.store import Rows

UNIT_ROWS = 8192        # spectrogram rows a unit (a multiple of the 256-row chunks the job reads)


@dataclass(frozen=True)
class Unit:
    """Rows [start, stop) of input ``number`` (``stop`` None: to its end); rows before ``skip`` are dropped
    (a resumed job); ``last``: the input's last unit."""

    id: int
    number: int
    path: str
    start: int = 0
    stop: int | None = None
    skip: int = 0
    last: bool = True


@dataclass(frozen=True)
class UnitRows:
    """A device process's message: embeddings float32 [rows, 128] of unit ``unit``'s rows ``index`` (int64
    [rows], example numbers in their input), which span ``start_s`` to ``end_s`` (float64 [rows], seconds)."""

    unit: int
    index: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    embeddings: np.ndarray


@dataclass(frozen=True)
class UnitEnded:
    """A device process's message: unit ``unit`` gave ``rows`` rows in all; ``error`` the VggishError's text
    that ended it early, None for a unit read to its end."""

    unit: int
    rows: int
    error: str | None


@dataclass(frozen=True)
class BatchFailed:
    """A device process's message: a batch starting at unit ``unit``'s example ``example`` failed on its device
    (engine.errors.DeviceFailure ``message``); the rows before it were sent."""

    unit: int
    example: int
    message: str


def plan_units(sources: list[Path], first_source: int, first_example: int, dat_dtype: str = "float64") -> list[Unit]:
    """The units of a job that starts at input ``first_source``, example ``first_example`` (a ``.dat``'s rows
    counted as ``dat_dtype``)."""
    units: list[Unit] = []
    for number in range(first_source, len(sources)):
        path = sources[number]
        skip = first_example if number == first_source else 0
        if not is_spectrogram(path):
            units.append(Unit(len(units), number, str(path), skip=skip))
            continue
        rows = len(open_spectrograms(path, dat_dtype))
        starts = list(range(skip - skip % UNIT_ROWS, rows, UNIT_ROWS)) or [skip]
        for i, start in enumerate(starts):
            units.append(Unit(len(units), number, str(path), start, min(start + UNIT_ROWS, rows), skip,
                              last=i == len(starts) - 1))
    return units


def _unit_blocks(unit: Unit, chunk: int, options: ReadOptions, blocks: Iterator[Block] | None) -> Iterator[Block]:
    """A unit's blocks (``blocks`` decoded, else a spectrogram file's read through engine.sources.input_blocks),
    rows before ``skip`` dropped (copies kept, shared memory given back)."""
    if blocks is None:
        blocks = input_blocks(Path(unit.path), options, chunk, unit.start, unit.stop)
    return skip_rows(blocks, unit.skip)


def _device_process(arguments: dict[str, Any], kinds: tuple[RowKind, ...], options: ReadOptions, chunk: int,
                    workers: int, tasks, results, job: int) -> None:
    """One device's share of the job (see the module docstring): sends Ready once its sessions are made, then
    UnitRows and UnitEnded for each unit it pulls, BatchFailed when a batch failed on its device, and Failed
    for a failure of its own."""
    follow(job)
    import warnings

    warnings.simplefilter("ignore", DemoModelWarning)  # the job's own Embedder has warned, once
    from vggish_rt.engine.embedder import Embedder
    from vggish_rt.engine.pipeline import batches, run_batches

    try:
        embedder = Embedder(**arguments)
    except VggishError as exc:
        results.put(Failed(str(exc)))
        return
    numpy_frontend = embedder.frontend == "numpy"
    pool = DecodePool(options, numpy_frontend, workers, pinned=embedder.placement.kind == "cuda") if workers != 0 else None
    with started_beside(pool) as pool_ready:  # the decoding workers start while the sessions are made
        try:
            runners = embedder._workers(kinds)
            buffers = embedder._batch_buffers(sized_kinds(kinds, options.resampler), len(runners))
            pool = pool_ready()
        except VggishError as exc:
            results.put(Failed(str(exc)))
            return
        results.put(Ready(0))
        blocks = _pulled_blocks(tasks, results, pool, options, chunk, numpy_frontend)
        try:
            for batch, values in run_batches(batches(blocks, embedder._batch_rows, buffers=buffers), runners):
                cuts = [0, *(np.flatnonzero(np.diff(batch.numbers)) + 1).tolist(), len(values)]
                for a, z in zip(cuts[:-1], cuts[1:]):
                    results.put(UnitRows(int(batch.numbers[a]), batch.index[a:z], batch.start_s[a:z],
                                         batch.end_s[a:z], values[a:z]))
        except DeviceFailure as exc:  # the rows before the failed batch were sent: the job keeps them
            results.put(BatchFailed(exc.number, exc.example, str(exc)))
        except VggishError as exc:
            results.put(Failed(str(exc)))


def _pulled_blocks(tasks, results, pool: DecodePool | None, options: ReadOptions, chunk: int,
                   numpy_frontend: bool) -> Iterator[InputRows]:
    """The blocks of the units this process pulls from ``tasks`` (numbered by unit id), decoded by ``pool`` or
    read here; after each unit's rows, its UnitEnded on ``results``."""
    units: dict[int, Unit] = {}

    def pulled() -> Iterator[tuple[int, Path]]:
        while (unit := tasks.get()) is not None:
            units[unit.id] = unit
            yield unit.id, Path(unit.path)

    def unit_blocks() -> Iterator[tuple[int, Path, Iterator[Block] | None]]:
        """(unit id, path, decoded audio blocks or None for spectrogram rows), in the order pulled."""
        if pool is not None:
            yield from pool.decode(pulled(), audio=lambda path: not is_spectrogram(path))
            return
        for uid, path in pulled():
            audio = None if is_spectrogram(path) else input_blocks(path, options)
            yield uid, path, map(to_examples, audio) if audio is not None and numpy_frontend else audio

    for uid, _, decoded in unit_blocks():
        unit, rows, error = units.pop(uid), 0, None
        try:
            for block in _unit_blocks(unit, chunk, options, decoded):
                rows += len(block)
                yield InputRows(uid, block)
        except VggishError as exc:
            error = str(exc)
        results.put(UnitEnded(uid, rows, error))


@dataclass
class _Pending:
    """A unit's messages received so far."""

    rows: list[UnitRows]
    received: int = 0
    end: UnitEnded | None = None
    failed: BatchFailed | None = None


def _rows(unit: Unit, received: list[UnitRows]) -> Rows:
    """A unit's UnitRows as one Rows."""
    index, start_s, end_s, values = (np.concatenate([getattr(m, name) for m in received])
                                     for name in ("index", "start_s", "end_s", "embeddings"))
    return Rows([printable(unit.path)] * len(index), index, start_s, end_s, values)  # as engine.pipeline names rows


class DeviceProcesses:
    """One process per entry of ``arguments`` (Embedder keyword arguments), started on entering (each makes
    its sessions and starts its decoding pool while the caller goes on with its own start-up) and ended on
    leaving, killed if still running. :meth:`wait_ready` waits for every process's sessions; :meth:`run`
    runs the units. A process's own failure (a session that cannot be created, a dead process) raises
    VggishError."""

    def __init__(self, arguments: list[dict[str, Any]], kinds: tuple[RowKind, ...], options: ReadOptions, chunk: int,
                 workers: int | None) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA or onnxruntime state
        tasks, results = context.Queue(), context.Queue()
        per_process = workers if workers is not None else max(1, default_workers() // len(arguments))
        # not daemons: daemons may not start the decoding pools' processes; each ends with the job all the same
        processes = [context.Process(target=_device_process, name=f"vggish-device-{i}",
                                     args=(a, kinds, options, chunk, per_process, tasks, results, os.getpid()))
                     for i, a in enumerate(arguments)]
        self._group = ProcessGroup("device process", processes, tasks, results)
        self._ready = False

    def __enter__(self) -> "DeviceProcesses":
        self._group.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._group.close(grace_s=0)

    def wait_ready(self) -> None:
        """Return once every process has its sessions."""
        if not self._ready:
            self._group.wait_ready()
            self._ready = True

    def run(self, units: list[Unit], emit: Callable[[Unit, Rows | None, str | None], None]) -> None:
        """Run ``units``; call ``emit(unit, rows or None, error or None)`` for each unit, in order."""
        self.wait_ready()
        tasks = self._group.tasks
        for unit in units:  # all at once: a limit could hold the earliest unit in a partial batch forever
            tasks.put(unit)
        for _ in self._group.processes:
            tasks.put(None)
        pending: dict[int, _Pending] = {}
        for unit in units:
            state = pending.setdefault(unit.id, _Pending([]))
            while state.end is None or state.received < state.end.rows:
                if state.failed is not None:  # its rows before the failed batch are the job's, then the error
                    if state.rows:
                        emit(replace(unit, stop=state.failed.example, last=False), _rows(unit, state.rows), None)
                    raise DeviceFailure(state.failed.message)
                message = self._group.receive()
                target = pending.setdefault(message.unit, _Pending([]))
                if isinstance(message, UnitRows):
                    target.rows.append(message)
                    target.received += len(message.index)
                elif isinstance(message, BatchFailed):
                    target.failed = message
                else:
                    target.end = message
            del pending[unit.id]
            emit(unit, _rows(unit, state.rows) if state.rows else None, state.end.error)
        for process in self._group.processes:  # every unit is in: each process has ended its stream, or is ending it
            process.join(timeout=10.0)
