"""An embedding job: inputs -> examples -> embeddings -> one output file.

The job behind ``vggish-rt embed``, usable from Python as :func:`run_job`.
Spectrogram arrays stream from memory maps in batches; audio files are
decoded, windowed and turned into log-mel examples one file at a time. A
failing input is either fatal (``on_error='fail'``) or recorded and skipped
(``'skip'``); the report lists every failure and why.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggish_rt.engine.audio import load_audio
from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.inputs import is_spectrogram, open_spectrograms
from vggish_rt.engine.postprocess import Postprocessor
from vggish_rt.engine.windows import DEFAULT_HOP, Hop, cut_windows, window_times
from vggish_rt.engine.writers import EmbeddingWriter, Rows

Progress = Callable[[int], None]


@dataclass
class JobOptions:
    """How inputs become examples and embeddings become output rows."""

    hop: Hop = DEFAULT_HOP
    pad_short: bool = False
    pad_tail: bool = False
    resampler: str = "soxr"
    postprocessor: Postprocessor | None = None
    on_error: str = "fail"          # 'fail' or 'skip'
    chunk_examples: int = 4096      # spectrogram rows read per step


@dataclass
class JobReport:
    """What a job did: rows written, inputs done, and the inputs that failed (path, reason)."""

    rows: int = 0
    inputs_done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    short_inputs: list[str] = field(default_factory=list)


def _blocks(source: Path, options: JobOptions, report: JobReport) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (examples [n,96,64], example index [n], start_s [n], end_s [n]) for one input."""
    if is_spectrogram(source):
        array = open_spectrograms(source)
        for start in range(0, len(array), options.chunk_examples):
            block = np.asarray(array[start : start + options.chunk_examples], np.float32)
            if not np.isfinite(block).all():
                raise VggishError(f"{source}: rows {start}..{start + len(block) - 1} hold NaN or Inf")
            nan = np.full(len(block), np.nan)
            yield block, np.arange(start, start + len(block)), nan, nan
        return
    windows = cut_windows(load_audio(source, options.resampler), options.hop, options.pad_short, options.pad_tail)
    if len(windows) == 0:
        report.short_inputs.append(str(source))
        return
    start_s, end_s = window_times(len(windows), options.hop)
    yield log_mel_examples(windows), np.arange(len(windows)), start_s, end_s


def run_job(sources: list[Path], out: Path, embedder: Embedder, options: JobOptions,
            progress: Progress = lambda _: None) -> JobReport:
    """Embed every source into ``out``; returns the report. The output appears only when complete."""
    report = JobReport()
    writer = EmbeddingWriter(out)
    try:
        for source in sources:
            try:
                for examples, index, start_s, end_s in _blocks(source, options, report):
                    embeddings = embedder.embed_examples(examples)
                    if options.postprocessor is not None:
                        embeddings = options.postprocessor.postprocess(embeddings)
                    writer.write(Rows([str(source)] * len(index), index, start_s, end_s, embeddings))
                    report.rows += len(index)
                    progress(len(index))
                report.inputs_done += 1
            except VggishError as exc:
                if options.on_error == "fail":
                    raise
                report.failures.append((str(source), str(exc)))
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return report
