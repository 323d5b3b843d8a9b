"""Decoding audio files in CPU worker processes into shared memory, results in input order.

    main: tasks (consecutive files) --> worker processes: decode, resample, window (and, with the NumPy
    frontend, log-mel) --> rows written into the worker's own slots of one shared-memory arena -->
    small messages (a slot's pieces: file, offset, rows, first example; the files that ended) --> main:
    Blocks viewing the slots, in input order

No audio crosses a pipe: a worker writes its files' rows one after another
into one of its ``SLOTS_PER_WORKER`` slots of ``SLOT_ROWS`` windows and sends
only where they are, once the slot is full or its task done; a file longer
than a slot fills several, so any length streams in bounded memory, and many
small files share a slot and a message. The main process views the slot (no
copy), and calls each Block's ``release`` once the batcher has copied its
rows into a batch; the slot goes back to its worker when every piece in it
has been. Deadlock-free: workers take tasks in input order and send what
they hold before they wait for a slot, so the earliest unfinished file's
worker never waits behind a later file.

Each worker runs its BLAS single-threaded (the NumPy frontend's mel matrix
product): a pool of N workers with one BLAS thread per core each ran N x cores
threads that mostly waited on each other, which left the machine idle
(measured: 100 files of 40 s, --frontend numpy, 2 workers on 2 cores: 7.3 s;
with one BLAS thread each: 1.7 s). Workers end with the main process, kill -9
included (each watches it through a pidfd); the arena's name is unlinked as
soon as every worker has mapped it, and a job killed before that has its
arena removed by the next job that decodes, so nothing stays in /dev/shm.

On CUDA (``pinned``) the main process page-locks the arena (cudaHostRegister):
the batcher's copies from the slots to the GPU (engine.staging) then run at
the link's rate instead of through the driver's staging of pageable memory.
"""
from __future__ import annotations

import mmap
import multiprocessing
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggish_rt.engine import cudart, params, resampling
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.processes import ProcessGroup, Ready, follow, running
from vggish_rt.engine.rowkind import EXAMPLES, audio_rows
from vggish_rt.engine.sources import Block, ReadOptions, input_blocks
from vggish_rt.engine.windows import window_times

SLOT_ROWS = 64                # windows a slot holds (3.99 MB of float32; more log-mel examples, fewer native rows)
SLOTS_PER_WORKER = 4          # slots of rows a worker may be ahead of the main process
TASK_FILES = 32               # files a task holds at most: one hand-off for many small files
TASK_BYTES = 1 << 20          # and bytes: a task of larger files holds fewer, a file of 1 MiB or more alone
_SLOT_FLOATS = SLOT_ROWS * params.EXAMPLE_SAMPLES
_SLOT_BYTES = _SLOT_FLOATS * 4
_SINGLE_THREADED = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
ARENA_PREFIX = "vggish-rt-decode-"  # then the job's pid: /dev/shm/vggish-rt-decode-<pid>-<random>


def to_examples(block: Block) -> Block:
    """A windows block -> the same rows as log-mel examples (the NumPy frontend)."""
    return Block(block.source, block.index, block.start_s, block.end_s, examples=log_mel_examples(block.windows))


def default_workers() -> int:
    """Decoding processes when none are asked for: every core but one (the main process batches, copies and
    writes), at least one."""
    return max(1, (os.cpu_count() or 1) - 1)


def _slots(arena: mmap.mmap | memoryview, count: int) -> np.ndarray:
    """The arena as ``count`` slots: float32 [count, floats a slot holds]."""
    return np.frombuffer(arena, np.float32, count * _SLOT_FLOATS).reshape(count, _SLOT_FLOATS)


def _row_shape(numpy_frontend: bool, rate: int) -> tuple[int, ...]:
    """The rows a worker writes for audio at ``rate``: log-mel examples, 16 kHz windows or native rows."""
    return resampling.row_shape(EXAMPLES if numpy_frontend else audio_rows(rate))


def _remove_stale_arenas(directory: str) -> None:
    """Unlink arenas left by jobs killed in the fraction of a second before their workers had mapped them."""
    for name in os.listdir(directory):
        if name.startswith(ARENA_PREFIX):
            pid = name[len(ARENA_PREFIX):].split("-")[0]
            if pid.isdigit() and not running(int(pid)):
                Path(directory, name).unlink(missing_ok=True)


@dataclass(frozen=True)
class SlotPiece:
    """Input ``number``'s ``rows`` rows from example ``first`` on, audio at ``rate`` Hz, lie in a slot from
    float ``offset`` on."""

    number: int
    offset: int
    rows: int
    first: int
    rate: int


@dataclass(frozen=True)
class Decoded:
    """Input ``number`` has no more rows; ``error`` the VggishError's text that ended it, None for a file
    decoded to its end."""

    number: int
    error: str | None = None


@dataclass(frozen=True)
class SlotFilled:
    """A worker's message: what happened, in order, since its last message: pieces of rows in slot ``slot``
    (None when it holds none) and inputs that ended. One message a filled slot or a finished task, however
    many files it holds: a folder of 1 s clips costs a message for every few dozen files, not two a file."""

    slot: int | None
    events: list[SlotPiece | Decoded]


class _SlotWriter:
    """A worker's side of the slots: rows written one after another into its current slot, each file's a
    piece, the slot sent when full (and at the end of a task) with the inputs that ended meanwhile."""

    def __init__(self, slots: np.ndarray, mine: list[int], free, results, numpy_frontend: bool) -> None:
        self.slots, self.mine, self.free, self.results = slots, mine, free, results
        self.numpy_frontend = numpy_frontend
        self.slot: int | None = None
        self.used = 0  # floats of the current slot written
        self.events: list[SlotPiece | Decoded] = []

    def put(self, number: int, block: Block) -> None:
        rows = to_examples(block).examples if self.numpy_frontend else block.windows
        width = int(np.prod(rows.shape[1:]))
        done = 0
        while done < len(rows):
            if self.slot is None or (_SLOT_FLOATS - self.used) < width:
                self.send()
                self.slot, self.used = (self.mine.pop() if self.mine else self.free.get()), 0
            take = min((_SLOT_FLOATS - self.used) // width, len(rows) - done)
            view = self.slots[self.slot, self.used : self.used + take * width].reshape(take, *rows.shape[1:])
            view[:] = rows[done : done + take]
            last = self.events[-1] if self.events else None
            if isinstance(last, SlotPiece) and last.number == number and last.rate == block.rate \
                    and last.offset + last.rows * width == self.used:  # the same file's rows, on from its last
                self.events[-1] = SlotPiece(number, last.offset, last.rows + take, last.first, block.rate)
            else:
                self.events.append(SlotPiece(number, self.used, take, int(block.index[done]), block.rate))
            self.used += take * width
            done += take

    def end(self, decoded: Decoded) -> None:
        self.events.append(decoded)

    def send(self) -> None:
        """Send what happened since the last message; the slot is then the main process's until it gives it
        back (a slot with no rows stays this worker's)."""
        if not self.events:
            return
        holds = self.slot is not None and self.used > 0
        self.results.put(SlotFilled(self.slot if holds else None, self.events))
        if self.slot is not None and not holds:
            self.mine.append(self.slot)
        self.slot, self.used, self.events = None, 0, []


def _work(worker: int, arena_path: str, slot_count: int, tasks, results, free, options: ReadOptions,
          numpy_frontend: bool, job: int) -> None:
    """A worker process: decode each task's files into this worker's slots; see the module docstring.

    It ends with the main process ``job``, kill -9 included."""
    follow(job)
    with open(arena_path, "r+b") as f:
        arena = mmap.mmap(f.fileno(), slot_count * _SLOT_BYTES)
    writer = _SlotWriter(_slots(arena, slot_count), list(range(worker * SLOTS_PER_WORKER,
                                                                (worker + 1) * SLOTS_PER_WORKER)),
                         free, results, numpy_frontend)
    results.put(Ready(worker))
    while (task := tasks.get()) is not None:
        for number, path in task:
            try:
                for block in input_blocks(Path(path), options):  # one rate, so one row shape, a file
                    writer.put(number, block)
                writer.end(Decoded(number))
            except VggishError as exc:  # after the rows it gave: the caller decides whether it is fatal
                writer.end(Decoded(number, str(exc)))
        writer.send()


class DecodePool:
    """Worker processes that decode audio files into shared memory (see the module docstring)."""

    def __init__(self, options: ReadOptions, numpy_frontend: bool, workers: int | None = None,
                 pinned: bool = False) -> None:
        self.options, self.numpy_frontend, self.pinned = options, numpy_frontend, pinned
        self.workers = max(1, workers or default_workers())
        self._group: ProcessGroup | None = None
        self._registered: int | None = None  # the arena's address while page-locked

    def __enter__(self) -> "DecodePool":
        count = self.workers * SLOTS_PER_WORKER
        # forkserver: never fork a process that holds onnxruntime threads. The server starts with this
        # environment, so its workers load BLAS single-threaded (see the module docstring).
        context = multiprocessing.get_context("forkserver")
        saved = {name: os.environ.get(name) for name in _SINGLE_THREADED}
        os.environ.update({name: value for name, value in _SINGLE_THREADED.items() if saved[name] is None})
        directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        _remove_stale_arenas(directory)
        handle, arena_path = tempfile.mkstemp(prefix=f"{ARENA_PREFIX}{os.getpid()}-", dir=directory)
        try:
            os.ftruncate(handle, count * _SLOT_BYTES)
            self._arena = mmap.mmap(handle, count * _SLOT_BYTES)
            # Tasks and given-back slots: SimpleQueues, whose put writes to the pipe in the calling thread (tiny
            # messages): a Queue wakes a feeder thread per put, one per queue, all wanting the GIL
            self._tasks, self._results = context.SimpleQueue(), context.Queue()
            self._free = [context.SimpleQueue() for _ in range(self.workers)]
            processes = [context.Process(target=_work, daemon=True, name=f"vggish-decode-{w}",
                                         args=(w, arena_path, count, self._tasks, self._results, self._free[w],
                                               self.options, self.numpy_frontend, os.getpid()))
                         for w in range(self.workers)]
            self._group = ProcessGroup("audio decoding worker", processes, self._tasks, self._results)
            self._group.start()
            self._group.wait_ready()  # every worker has mapped the arena
        except BaseException:
            self.__exit__()
            raise
        finally:
            os.close(handle)
            os.unlink(arena_path)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
        self._slots = _slots(self._arena, count)
        address = np.frombuffer(self._arena, np.uint8).ctypes.data
        if self.pinned and cudart.host_register(address, count * _SLOT_BYTES):
            self._registered = address
        return self

    def __exit__(self, *_: object) -> None:
        if self._group is not None:  # a worker waiting for a task ends at once; a busy one is killed
            self._group.close(grace_s=1.0)
            self._group = None
        if self._registered is not None:
            cudart.host_unregister(self._registered)
            self._registered = None

    def _release(self, slot: int) -> Callable[[], None]:
        """A piece's ``release``: the slot goes back to its worker once every piece in it is copied."""
        def release() -> None:
            self._pieces_left[slot] -= 1
            if not self._pieces_left[slot]:
                self._free[slot // SLOTS_PER_WORKER].put(slot)
        return release

    def decode(self, numbered: Iterable[tuple[int, Path]],
               audio: Callable[[Path], bool] = lambda _: True) -> Iterator[tuple[int, Path, Iterator[Block] | None]]:
        """Yield (number, path, its blocks) in the order given. A file's blocks view shared memory until their
        ``release`` is called; a bad file's blocks end in its VggishError (after any rows it gave).

        Files go to the workers in tasks of consecutive files (up to TASK_FILES of them and TASK_BYTES, a
        large file alone); ``numbered`` is read lazily, at most ``2 x workers`` tasks ahead of the caller.
        Paths for which ``audio`` is false are not decoded: they come back in their place with None."""
        pending = iter(numbered)
        queued: deque[tuple[int, Path, bool]] = deque()
        tasks: deque[int] = deque()  # the last input number of each task in flight
        waiting: dict[int, deque[tuple[int, SlotPiece] | Decoded]] = {}
        self._pieces_left = [0] * (self.workers * SLOTS_PER_WORKER)

        def refill() -> None:
            while tasks and (not queued or queued[0][0] > tasks[0]):
                tasks.popleft()  # the caller has reached past that task's files
            task: list[tuple[int, str]] = []
            size = 0
            while len(tasks) < 2 * self.workers and len(queued) < 2 * self.workers * TASK_FILES:
                item = next(pending, None)
                if item is None:
                    break
                decoded = audio(item[1])
                queued.append((*item, decoded))
                if decoded:
                    task.append((item[0], str(item[1])))
                    size += _size(item[1])
                if len(task) == TASK_FILES or size >= TASK_BYTES:
                    send(task)
                    task, size = [], 0
            if task:
                send(task)

        def send(task: list[tuple[int, str]]) -> None:
            self._tasks.put(task)
            tasks.append(task[-1][0])

        def events(number: int) -> Iterator[tuple[int, SlotPiece] | Decoded]:
            while True:
                while not waiting.get(number):
                    message = self._group.receive()
                    if message.slot is not None:
                        self._pieces_left[message.slot] = sum(isinstance(e, SlotPiece) for e in message.events)
                    for event in message.events:
                        waiting.setdefault(event.number, deque()).append(
                            (message.slot, event) if isinstance(event, SlotPiece) else event)
                event = waiting[number].popleft()
                yield event
                if isinstance(event, Decoded):
                    del waiting[number]
                    return

        refill()
        while queued:
            number, path, decoded = queued.popleft()
            yield number, path, self._blocks(path, events(number)) if decoded else None
            refill()

    def _blocks(self, path: Path, events: Iterator[tuple[int, SlotPiece] | Decoded]) -> Iterator[Block]:
        for event in events:
            if isinstance(event, Decoded):
                if event.error is not None:
                    raise VggishError(event.error)
                return
            slot, piece = event
            first, count = piece.first, piece.rows
            shape = _row_shape(self.numpy_frontend, piece.rate)
            width = int(np.prod(shape))
            rows = self._slots[slot, piece.offset : piece.offset + count * width].reshape(count, *shape)
            start_s, end_s = window_times(count, self.options.hop, first * self.options.hop.samples)
            yield Block(path, np.arange(first, first + count), start_s, end_s,
                        **{"examples" if self.numpy_frontend else "windows": rows},
                        release=self._release(slot), rate=piece.rate)


def _size(path: Path) -> int:
    """``path``'s size in bytes for grouping tasks (0 when it cannot be read: its worker says why)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


@contextmanager
def started_beside(pool: DecodePool | None) -> Iterator[Callable[[], DecodePool | None]]:
    """Start ``pool``'s workers in a thread while the caller goes on with its own start-up (sessions); the
    function yielded waits for them and returns the pool (None for None). The pool ends with the block.

    Measured on an H200 with 16 cores: the pool's start (a forkserver and 15 workers importing NumPy,
    libsndfile and soxr) took 0.55 s, and the sessions 1.2 s, one after the other.
    """
    if pool is None:
        yield lambda: None
        return
    with ThreadPoolExecutor(1, thread_name_prefix="vggish-decode-start") as starter:
        started = starter.submit(pool.__enter__)
        try:
            yield started.result
        finally:
            if started.exception() is None:  # a failed start has cleaned up after itself
                pool.__exit__()
