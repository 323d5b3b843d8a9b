"""An embedding job: inputs -> blocks -> embeddings -> one output file.

The job behind ``vggish-rt embed``, usable from Python as :func:`run_job`.
Every input streams as blocks (:mod:`vggish_rt.engine.sources`). A failing
input is either fatal (``on_error='fail'``) or recorded and skipped
(``'skip'``); the report lists every failure and why, and every audio input
too short to give an example.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.postprocess import Postprocessor
from vggish_rt.engine.sources import Block, WindowOptions, source_blocks
from vggish_rt.engine.writers import EmbeddingWriter, Rows

Progress = Callable[[int], None]
POOLS = ("none", "mean")


@dataclass
class JobOptions:
    """How inputs become examples and embeddings become output rows.

    ``pool='mean'`` writes one row per input (the mean of its examples'
    embeddings, before any post-processing) instead of one per example.
    """

    windows: WindowOptions = field(default_factory=WindowOptions)
    postprocessor: Postprocessor | None = None
    pool: str = "none"
    on_error: str = "fail"          # 'fail' or 'skip'
    chunk_examples: int = 4096      # spectrogram rows read per step


@dataclass
class JobReport:
    """What a job did: rows written, inputs done, failed inputs (path, reason), inputs too short."""

    rows: int = 0
    inputs_done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    short_inputs: list[str] = field(default_factory=list)


def _rows(block: Block, embeddings: np.ndarray) -> Rows:
    return Rows([str(block.source)] * len(block), block.index, block.start_s, block.end_s, embeddings)


class _MeanPool:
    """Accumulates one source's embeddings into a single row."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count, self.first, self.last = 0, None, None

    def add(self, block: Block, embeddings: np.ndarray) -> None:
        total = embeddings.astype(np.float64).sum(axis=0)
        self.total = total if self.total is None else self.total + total
        self.count += len(block)
        self.first = block if self.first is None else self.first
        self.last = block

    def row(self, source: Path) -> Rows | None:
        if self.total is None:
            return None
        mean = (self.total / self.count).astype(np.float32)[None, :]
        return Rows([str(source)], np.zeros(1, np.int64), self.first.start_s[:1], self.last.end_s[-1:], mean)


def run_job(sources: list[Path], out: Path, embedder: Embedder, options: JobOptions,
            progress: Progress = lambda _: None) -> JobReport:
    """Embed every source into ``out``; returns the report. The output appears only when complete."""
    if options.pool not in POOLS:
        raise VggishError(f"--pool {options.pool!r}: expected one of {', '.join(POOLS)}")
    if options.on_error not in ("fail", "skip"):
        raise VggishError(f"--on-error {options.on_error!r}: expected fail or skip")
    report = JobReport()
    writer = EmbeddingWriter(out)
    finish = options.postprocessor.postprocess if options.postprocessor else (lambda e: e)
    try:
        for source in sources:
            pool = _MeanPool() if options.pool == "mean" else None
            rows = 0
            try:
                for block in source_blocks(source, options.windows, options.chunk_examples):
                    embeddings = embedder.embed_block(block)
                    if pool is not None:
                        pool.add(block, embeddings)
                    else:
                        writer.write(_rows(block, finish(embeddings)))
                    rows += len(block)
                    progress(len(block))
                pooled = pool.row(source) if pool is not None else None
                if pooled is not None:
                    pooled.embeddings = finish(pooled.embeddings)
                    writer.write(pooled)
            except VggishError as exc:
                if options.on_error == "fail":
                    raise
                report.failures.append((str(source), str(exc)))
                continue
            if rows == 0:
                report.short_inputs.append(str(source))
            report.rows += 1 if pool is not None and rows else rows
            report.inputs_done += 1
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return report
