"""Decoding audio files in CPU worker processes, results in input order.

Each worker decodes one file, cuts its windows and, with the NumPy frontend,
computes the log-mel examples too, so the network's process only batches and
runs. At most ``4 x workers`` files are in flight, so memory stays bounded.
A file longer than ``LONG_FILE_SECONDS`` is not decoded in a worker (its
windows would cross process boundaries in one piece); the worker says so and
the caller streams it block by block instead.
"""
from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from vggish_rt.engine.audio import read_info
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.sources import Block, WindowOptions, audio_blocks

LONG_FILE_SECONDS = 600.0


def decode_file(path: Path, options: WindowOptions, numpy_frontend: bool) -> list[Block] | None:
    """A file's blocks (windows, or examples with ``numpy_frontend``), or None when it is too long for a worker.

    Raises VggishError for a bad file.
    """
    if read_info(path).duration > LONG_FILE_SECONDS:
        return None
    return [to_examples(block) if numpy_frontend else block for block in audio_blocks(path, options)]


def to_examples(block: Block) -> Block:
    """A windows block -> the same rows as log-mel examples (the NumPy frontend)."""
    return Block(block.source, block.index, block.start_s, block.end_s, examples=log_mel_examples(block.windows))


def _task(path: Path, options: WindowOptions, numpy_frontend: bool) -> list[Block] | None | VggishError:
    try:
        return decode_file(path, options, numpy_frontend)
    except VggishError as exc:  # returned, not raised: the caller decides whether it is fatal
        return exc


class DecodePool:
    """Worker processes that decode audio files (see the module docstring)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> "DecodePool":
        # forkserver: never fork a process that holds onnxruntime threads
        self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"))
        return self

    def __exit__(self, *_: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def decode(self, paths: Iterable[Path], options: WindowOptions,
               numpy_frontend: bool) -> Iterator[tuple[Path, list[Block] | None | VggishError]]:
        """Yield (path, blocks | None for a long file | the file's error), in the order given."""
        in_flight: deque[tuple[Path, Future]] = deque()
        iterator = iter(paths)
        for path in iterator:
            in_flight.append((path, self._executor.submit(_task, path, options, numpy_frontend)))
            if len(in_flight) >= 4 * self.workers:
                break
        while in_flight:
            path, future = in_flight.popleft()
            next_path = next(iterator, None)
            if next_path is not None:
                in_flight.append((next_path, self._executor.submit(_task, next_path, options, numpy_frontend)))
            yield path, future.result()
