"""An embedding job: inputs -> blocks -> batches -> runners -> partial store -> output file.

The job behind ``vggish-rt embed``, usable from Python as :func:`run_job`.

- Inputs stream as blocks (engine.sources); audio files are decoded in CPU
  worker processes into shared memory (engine.decoding), spectrograms read a
  chunk at a time.
- Blocks are cut into fixed batches and run on the device's sessions
  (engine.pipeline); embeddings come back in input order and go to a partial
  store (engine.store), committed every few seconds with the position reached.
- On several GPUs (or with ``processes``), one process per device runs its
  own share of the inputs (engine.shards), and this process merges their
  embeddings in input order into the same store, with the same report.
- ``resume=True`` continues a killed job from its last commit: the batches
  after it are the same batches the uninterrupted job ran, so the output is
  byte for byte the same.
- At the end the store becomes the output file (engine.formats), with mean
  pooling and post-processing applied there.
- A failing input is fatal (``on_error='fail'``) or recorded and skipped
  (``'skip'``); the report lists every failure and every audio input too short
  to give an example.
"""
from __future__ import annotations

import csv
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vggish_rt.engine import params, resampling
from vggish_rt.engine.decoding import DecodePool, started_beside, to_examples
from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.errors import ArgumentError, DeviceFailure, Interrupted, VggishError, option
from vggish_rt.engine.formats import check_output, finish, index_path, refuse_overwriting_inputs
from vggish_rt.engine.inputs import is_spectrogram, open_spectrograms, printable
from vggish_rt.engine.ledger import InputEnded, JobReport, Ledger, check_on_error
from vggish_rt.engine.modeldir import PCA_FILE
from vggish_rt.engine.pipeline import batches, run_batches
from vggish_rt.engine.postprocess import Postprocessor
from vggish_rt.engine.probe import ProbeReport, in_chunks, probe_input
from vggish_rt.engine.resampling import sized_kinds
from vggish_rt.engine.rowkind import EXAMPLES, WINDOWS, RowKind, audio_rows
from vggish_rt.engine.shards import DeviceProcesses, Unit, plan_units
from vggish_rt.engine.sources import Block, InputRows, ReadOptions, audio_rate, input_blocks, skip_rows
from vggish_rt.engine.store import PartialStore, Rows, store_files

Progress = Callable[[int], None]
POOLS = ("none", "mean")


@dataclass
class JobOptions:
    """How inputs become examples and embeddings become output rows.

    ``read``: windows, resampler and ``.dat`` dtype (engine.sources.ReadOptions). ``pool='mean'``: one row per input (the mean of its examples' embeddings,
    before post-processing). ``on_error='skip'``: a spectrogram file that turns
    bad part-way (NaN rows) keeps the rows embedded before the bad chunk; its
    failure is reported all the same. ``metadata``: a CSV table with one row per output
    row, whose columns lead the CSV/Parquet output (spectrogram inputs, or any
    input with ``pool='mean'``). ``workers``: audio decoding processes
    (default: every core but one; 0: decode in this process). ``processes``:
    device processes, each with its own share of the inputs (engine.shards;
    default: one per GPU when there are several; else none, the job runs in
    this process).
    """

    read: ReadOptions = field(default_factory=ReadOptions)
    postprocessor: Postprocessor | None = None
    pool: str = "none"
    on_error: str = "fail"
    metadata: Path | None = None
    workers: int | None = None
    processes: int | None = None
    chunk_examples: int = 256       # spectrogram rows read at a time (12.6 MB of float64)
    commit_seconds: float = 2.0


# Of each input, the first and last bytes go into the job's fingerprint with its size and time.
FINGERPRINT_EDGE_BYTES = 65_536


def _scan(sources: list[Path], embedder: Embedder, options: JobOptions) -> tuple[dict[str, Any], ProbeReport]:
    """The job's fingerprint and its inputs' probe (engine.probe), in one pass over the inputs: each is opened
    once, and a WAV's length is parsed from the first bytes the fingerprint reads.

    The fingerprint is what must not change between a killed job and its resumption: the metadata table's
    and the PCA file's whole content, model files, options, and of each input (:func:`_input_digest`) its
    path, its first and last 64 KiB, its size, its modification time and its status-change time (ctime).

    The kernel sets an inode's ctime at every write to it, and no call lets a user set it back (unlike
    the modification time), so any change to an input's content since the killed job shows here
    without reading every input whole again. It also moves on chmod, chown, rename or a new hard link:
    such an input is refused as changed, though its bytes may be the same. Inputs are scanned by a pool of
    threads (reading and hashing release the GIL).
    """
    def scan(first: int, stop: int) -> tuple[bytes, list[tuple[int, int, str | None]]]:
        directories: dict[str, str] = {}
        digests, probed = [], []
        for number in range(first, stop):
            try:
                digest, head, size = _input_digest(sources[number], directories)
            except OSError as exc:  # the probe reports it, as reading it would
                digest, head, size = hashlib.sha256(os.fsencode(sources[number]) + b"\0unreadable").digest(), b"", 0
                probed.append((number, 0, printable(f"{sources[number]}: cannot be read ({exc.strerror or exc})")))
            else:
                probed.append(probe_input(number, sources[number], options.read, head, size))
            digests.append(digest)
        return b"".join(digests), probed

    listing, probe = hashlib.sha256(), ProbeReport()
    for digests, probed in in_chunks(len(sources), scan, "vggish-scan", chunk=256):
        listing.update(digests)
        for entry in probed:
            probe.add(*entry)
    metadata = hashlib.sha256(options.metadata.read_bytes()).hexdigest() if options.metadata else ""
    pca = embedder.model.manifest["files"].get(PCA_FILE, {}).get("sha256") if options.postprocessor else None
    return {"inputs": listing.hexdigest(), "count": len(sources), "model": str(embedder.model.path),
            "model_files": {str(kind): embedder.model.manifest["files"].get(embedder._model_file(kind), {}).get("sha256")
                            for kind in (EXAMPLES, WINDOWS)},
            "batch_size": embedder.batch_size, "precision": embedder.precision, "frontend": embedder.frontend,
            "relu": embedder.relu, "hop_frames": options.read.hop.frames, "pad_short": options.read.pad_short,
            "pad_tail": options.read.pad_tail, "resampler": options.read.resampler,
            "dat_dtype": options.read.dat_dtype, "pool": options.pool,
            "postprocess": options.postprocessor is not None, "pca_params": pca,
            "metadata": str(options.metadata or ""), "metadata_sha256": metadata}, probe


def _input_digest(source: Path, directories: dict[str, str]) -> tuple[bytes, bytes, int]:
    """(sha256 of an input's resolved path, size, modification and status-change times, first and last
    64 KiB; those first bytes; its size).

    ``directories`` caches the resolved directory of each parent (a file that is itself a link is resolved
    whole): resolving every path component of every input cost more than reading its edges.
    """
    name = os.fspath(source)
    fd = os.open(name, os.O_RDONLY)
    try:
        stat = os.fstat(fd)
        head = os.pread(fd, FINGERPRINT_EDGE_BYTES, 0)
        # a file no longer than one edge is all in its head: its tail is neither read nor hashed again
        tail = os.pread(fd, FINGERPRINT_EDGE_BYTES, stat.st_size - FINGERPRINT_EDGE_BYTES) \
            if stat.st_size > FINGERPRINT_EDGE_BYTES else b""
    finally:
        os.close(fd)
    parent, base = os.path.split(os.path.abspath(name))
    if os.path.islink(name):
        resolved = os.path.realpath(name)
    else:
        if parent not in directories:
            directories[parent] = os.path.realpath(parent)
        resolved = os.path.join(directories[parent], base)
    digest = hashlib.sha256(os.fsencode(resolved)
                            + f"\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0".encode())
    digest.update(head)
    digest.update(tail)
    return digest.digest(), head, stat.st_size


def _load_metadata(path: Path, expected_rows: int) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of a CSV table that must have ``expected_rows`` rows."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            table = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VggishError(f"{option('metadata', path)}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not table:
        raise VggishError(f"{option('metadata', path)}: empty (expected a header line and {expected_rows} rows)")
    columns, rows = table[0], table[1:]
    if len(rows) != expected_rows:
        raise VggishError(f"{option('metadata', path)}: {len(rows)} rows, but the inputs give {expected_rows} output rows")
    if any(len(row) != len(columns) for row in rows):
        raise VggishError(f"{option('metadata', path)}: rows do not all have {len(columns)} fields")
    return columns, rows


def _metadata_offsets(sources: list[Path], options: JobOptions) -> list[int]:
    """The metadata row of each input's first output row (before any work starts)."""
    if options.pool == "mean":
        return list(range(len(sources)))
    if not all(is_spectrogram(s) for s in sources):
        raise VggishError(f"{option('metadata')} needs spectrogram inputs (.npy/.dat) or {option('pool', 'mean')}: "
                          "the number of examples an audio file gives is known only after decoding it")
    counts = [len(open_spectrograms(s, options.read.dat_dtype)) for s in sources]
    return [int(x) for x in np.cumsum([0, *counts[:-1]])]


class _Reader:
    """Walks the inputs from a resume position: (block, metadata rows, input number) triples and, after each
    input's rows, its InputEnded (with the error that stopped it, if one did). Decides nothing (engine.ledger)."""

    def __init__(self, sources: list[Path], embedder: Embedder, options: JobOptions, position: dict[str, Any],
                 metadata: list[list[str]] | None, offsets: list[int] | None, pool: DecodePool | None) -> None:
        self.sources, self.embedder, self.options, self.pool = sources, embedder, options, pool
        self.first_source, self.first_example = position.get("source", 0), position.get("example", 0)
        self.metadata, self.offsets = metadata, offsets

    def meta(self, number: int, index: np.ndarray) -> list[list[str]]:
        """The metadata rows of input ``number``'s examples ``index`` (none without a metadata table)."""
        if self.metadata is None:
            return []
        if self.options.pool == "mean":
            return [self.metadata[number]] * len(index)
        return [self.metadata[self.offsets[number] + int(i)] for i in index]

    def _all(self) -> Iterator[tuple[int, Path, Iterator[Block]]]:
        """(number, path, its blocks) of every input from the first one to do: spectrograms read here, audio
        decoded by the pool's worker processes (or here, without a pool)."""
        numbered = list(enumerate(self.sources))[self.first_source:]
        read, chunk = self.options.read, self.options.chunk_examples
        if self.pool is not None:
            for number, path, decoded in self.pool.decode(numbered, audio=lambda p: not is_spectrogram(p)):
                yield number, path, decoded if decoded is not None else input_blocks(path, read, chunk)
            return
        numpy_frontend = self.embedder.frontend == "numpy"
        for number, path in numbered:
            blocks = input_blocks(path, read, chunk)
            yield number, path, map(to_examples, blocks) if numpy_frontend and not is_spectrogram(path) else blocks

    def __iter__(self) -> Iterator[InputRows | InputEnded]:
        for number, path, blocks in self._all():
            skip = self.first_example if number == self.first_source else 0
            error = None
            try:
                for block in skip_rows(blocks, skip):
                    yield InputRows(number, block, self.meta(number, block.index))
            except VggishError as exc:  # reading this input (engine.sources.input_blocks names it)
                error = str(exc)
            yield InputEnded(number, str(path), error, skip)


def run_job(sources: list[Path], out: Path, embedder: Embedder, options: JobOptions,
            progress: Progress = lambda _: None, resume: bool = False,
            say: Callable[[str], None] = lambda _: None, expect: Progress = lambda _: None) -> JobReport:
    """Embed every source into ``out``; returns the report. The output appears only when complete.

    Every input is probed (engine.probe) beside start-up: ``expect`` gets the examples still to embed once
    known, ``progress`` each batch's as it is stored; with on_error='fail' a bad input stops the job as soon
    as the probe finds it (about when the first rows are stored), keeping nothing. On an error (or a kill) the
    partial store stays beside ``out`` for ``resume``; a resumed job tells ``say`` where it goes on.

    Plan (checks, row kinds, metadata) -> runner (this process's threads, or one process per device) ->
    reader -> sink (engine.ledger's policy, the store) -> the output file.
    """
    check_on_error(options.on_error)
    out = Path(out)
    kinds, columns, metadata, offsets = _plan(sources, out, embedder, options)
    with ExitStack() as stack:
        # Start-up: the sessions here, and beside them the scan of the inputs (fingerprint and probe) and the
        # decoding workers' start. Sessions before the store: a model that cannot run leaves no store behind.
        # Rows flow before the scan ends: the first commit waits for the fingerprint, and the sink takes the
        # probe's verdict as soon as it is known, at the latest before the output is written.
        background = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="vggish-start"))
        scanned = background.submit(_scan, sources, embedder, options)
        run, pool = _start_runner(stack, sources, embedder, options, kinds)
        store = PartialStore(out, lambda: scanned.result()[0], (params.EMBEDDING_SIZE,), np.float32)
        position = store.resume() if resume else {}
        if resume:
            say(_resuming(position, store.rows, sources))
        else:
            store.create()
        sink = _Sink(store, Ledger(options.on_error, position), scanned, options, progress, expect)
        with _stopping(store, sink, out):
            run(_Reader(sources, embedder, options, position, metadata, offsets, pool), sink)
            written = sink.finish(columns, len(sources))
    store.discard()
    report = sink.ledger.report
    write_failures(out, report)
    report.rows = written  # what the output holds, pooled or not
    return report


def _plan(sources: list[Path], out: Path, embedder: Embedder,
          options: JobOptions) -> tuple[tuple[RowKind, ...], list[str] | None, list[list[str]] | None, list[int] | None]:
    """Before any work: the output and options checked; (row kinds, whose sessions are made first; metadata
    columns, rows and each input's first metadata row, without a metadata table None)."""
    check_job_output(out, sources, options.postprocessor, options.pool)
    if embedder.frontend == "numpy":
        resampling.refuse_in_graph(options.read.resampler, "frontend='numpy'")
    kinds = _row_kinds(sources, embedder, options.read)
    for kind in kinds:
        embedder._require(kind)
    if options.metadata is None:
        return kinds, None, None, None
    offsets = _metadata_offsets(sources, options)
    expected = len(sources) if options.pool == "mean" else sum(len(open_spectrograms(s, options.read.dat_dtype)) for s in sources)
    columns, metadata = _load_metadata(options.metadata, expected)
    return kinds, columns, metadata, offsets


def _start_runner(stack: ExitStack, sources: list[Path], embedder: Embedder, options: JobOptions,
                  kinds: tuple[RowKind, ...]) -> tuple[Callable[["_Reader", "_Sink"], None], DecodePool | None]:
    """The job's runner, started (sessions made, decoding workers starting), and the decode pool the reader
    uses: this process's threads, one per session, or ``processes`` device processes (default: one per GPU
    when there are several) that read their own share of the inputs (engine.shards)."""
    gpus = embedder.devices if embedder.placement.kind == "cuda" else 1
    processes = options.processes or (gpus if gpus > 1 else 0)  # 0: the job runs in this process
    if processes:
        devices = stack.enter_context(_device_processes(sources, embedder, options, kinds, processes))
        devices.wait_ready()
        return (lambda reader, sink: _run_sharded(sources, devices, reader, sink)), None
    pool_ready = stack.enter_context(started_beside(_decode_pool(sources, embedder, options)))
    workers = embedder._workers(kinds)
    pool = pool_ready()
    buffers = embedder._batch_buffers(sized_kinds(kinds, options.read.resampler), len(workers))

    def run(reader: _Reader, sink: _Sink) -> None:
        for batch, values in run_batches(batches(reader, embedder._batch_rows, buffers), workers):
            sink.take(batch.rows(values), batch.numbers, batch.ended)
    return run, pool


class _Sink:
    """The job's one sink: rows through the ledger into the store, committed every ``commit_seconds`` with the
    ledger's position; the probe's verdict taken as soon as it is known."""

    def __init__(self, store: PartialStore, ledger: Ledger, scanned: Future, options: JobOptions,
                 progress: Progress, expect: Progress) -> None:
        self.store, self.ledger, self.scanned, self.options = store, ledger, scanned, options
        self.progress, self.expect = progress, expect
        self.kept, self.unprobed, self.last_commit = store.rows, True, time.monotonic()

    def probed(self, wait: bool) -> None:
        """Once the scan is done (``wait``: wait for it): the total to ``expect``; with on_error='fail', a
        bad input ends the job, nothing kept (a resume would meet the same input)."""
        if self.unprobed and (wait or self.scanned.done()):
            self.unprobed = False
            probe = self.scanned.result()[1]
            if probe.failures and self.options.on_error == "fail":
                self.store.discard()
                raise _probe_failure(probe.failures)
            self.expect(max(0, probe.examples - self.kept))

    def take(self, rows: Rows | None, numbers: np.ndarray | None, ended: list[InputEnded]) -> None:
        """Rows of inputs ``numbers`` (int64 [n]), then the inputs that ended after them, in input order."""
        self.probed(wait=False)
        kept = self.ledger.rows(rows, numbers) if rows is not None else None
        for event in ended:
            self.ledger.ended(event)
        if kept is not None and len(kept):
            self.store.append(kept)
            self.progress(len(kept))
        if time.monotonic() - self.last_commit >= self.options.commit_seconds:
            self.store.commit(self.ledger.position())
            self.last_commit = time.monotonic()

    def finish(self, columns: list[str] | None, count: int) -> int:
        """Every input ended: the report completed and committed, the store written out as the output file
        (engine.formats: pooling, post-processing, no pooled row from a failed input); its rows."""
        self.probed(wait=True)
        self.ledger.finish()
        self.store.commit({**self.ledger.position(), "source": count, "example": 0})
        return finish(self.store, columns, pooled=self.options.pool == "mean", postprocessor=self.options.postprocessor,
                      failed_sources=self.ledger.failed_sources())


@contextmanager
def _stopping(store: PartialStore, sink: _Sink, out: Path) -> Iterator[None]:
    """A job stopped by an error or a signal: one line saying what was kept (and how to resume), nothing left
    behind when nothing was committed; the store closed either way."""
    try:
        yield
    except (VggishError, OSError) as exc:
        if isinstance(exc, VggishError) and sink.unprobed:  # a bad input reached before the probe's verdict:
            sink.probed(wait=True)                           # the verdict, naming every bad input, if it has any
        if store.committed_rows == 0:  # nothing a --resume could keep: leave nothing behind
            store.discard()
        if isinstance(exc, OSError):  # a full disk, a quota, a file-size limit, while appending to the store
            kept = (f"the {store.committed_rows} rows committed so far are kept in {store.path}: free space and "
                    f"rerun with {option('resume', True)}") if store.committed_rows else "nothing was kept"
            raise VggishError(f"{option('out', out)}: writing failed ({exc.strerror}); any previous {out.name} is intact; "
                              f"{kept}") from None
        if isinstance(exc, DeviceFailure):
            raise DeviceFailure(f"{exc}; {_kept(store)}") from None
        raise
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM through the CLI's handler
        if store.committed_rows == 0:
            store.discard()
        raise Interrupted.from_signal(interrupt, _kept(store)) from None
    finally:
        store.close()


def _kept(store: PartialStore) -> str:
    """What a stopped job kept, and how to go on from it."""
    if not store.committed_rows:
        return "nothing was kept"
    return (f"the {store.committed_rows} rows committed so far are kept in {store.path}: the same command with "
            f"{option('resume', True)} goes on from there")


def check_job_output(out: Path, sources: list[Path], postprocessor: Postprocessor | None, pool: str) -> None:
    """Refuse an output the job cannot write (its format, ``pool``, a .tfrecord's needs) or one that would write
    over an input (the output, its index, failures file or store)."""
    if pool not in POOLS:
        raise ArgumentError("pool", pool, f"expected one of {', '.join(POOLS)}")
    check_output(out)
    refuse_overwriting_inputs([out, index_path(out), failures_path(out), *store_files(out)], sources)
    if out.suffix.lower() == ".tfrecord" and (postprocessor is None or pool != "none"):
        raise ArgumentError("out", out, f".tfrecord holds quantized embeddings per example: use it with "
                            f"{option('postprocessor', flag='postprocess')} and {option('pool', 'none')}")


def _row_kinds(sources: list[Path], embedder: Embedder, options: ReadOptions) -> tuple[RowKind, ...]:
    """The kinds of rows whose sessions are made before the job starts: log-mel examples, 16 kHz windows,
    or with the graph's resampler the native rows of the first audio input's rate (others' sessions are made
    when their first batch comes)."""
    logmel = [is_spectrogram(s) or embedder.frontend == "numpy" for s in sources]
    first_audio = next((s for s, spectrogram in zip(sources, logmel) if not spectrogram), None)
    kinds = {EXAMPLES} if any(logmel) else set()
    if first_audio is not None:
        try:
            kinds.add(audio_rows(audio_rate(first_audio, options)))
        except VggishError:  # a bad first file: reported when read; the sessions are for the usual rate
            kinds.add(WINDOWS)
    return tuple(sorted(kinds))


def _probe_failure(failures: list[tuple[int, str]]) -> VggishError:
    """The error that stops an on_error='fail' job whose probe found bad inputs (its store discarded)."""
    more = len(failures) - 1
    others = f" (and {more} more bad input{'s' * (more > 1)})" if more else ""
    return VggishError(f"{failures[0][1]}{others}; nothing was embedded: with {option('on_error', 'skip')} the job embeds the "
                       "other inputs and lists the bad ones")


def _resuming(position: dict[str, Any], rows: int, sources: list[Path]) -> str:
    """Where a resumed job goes on: the rows kept, the input and example it starts at."""
    number = position.get("source", 0)
    if number >= len(sources):
        return f"resuming: {rows} rows kept; every input was embedded, writing the output"
    return (f"resuming: {rows} rows kept; going on at input {number + 1} of {len(sources)} "
            f"({printable(str(sources[number]))}), example {position.get('example', 0)}")


def _decode_pool(sources: list[Path], embedder: Embedder, options: JobOptions) -> DecodePool | None:
    """The job's decoding worker processes, not yet started: when four or more inputs are audio (fewer
    decode here, sooner than workers start), unless ``workers`` is 0."""
    if options.workers == 0 or sum(not is_spectrogram(s) for s in sources) < 4:
        return None
    return DecodePool(options.read, embedder.frontend == "numpy", options.workers,
                      pinned=embedder.placement.kind == "cuda")


def _device_processes(sources: list[Path], embedder: Embedder, options: JobOptions, kinds: tuple[RowKind, ...],
                      processes: int) -> DeviceProcesses:
    """``processes`` device processes (engine.shards) for this job, not yet started; a job of spectrograms
    only starts no decoding pools in them."""
    workers = options.workers if any(not is_spectrogram(s) for s in sources) else 0
    return DeviceProcesses([embedder._shard_arguments(i, processes) for i in range(processes)], kinds, options.read,
                           options.chunk_examples, workers)


def _run_sharded(sources: list[Path], devices: DeviceProcesses, reader: _Reader, sink: _Sink) -> None:
    """The job's rows from the device processes, in input order, into the sink: each unit's rows, then its
    input's end after its last unit (or after an error)."""
    units = plan_units(sources, reader.first_source, reader.first_example, reader.options.read.dat_dtype)

    def emit(unit: Unit, rows: Rows | None, error: str | None) -> None:
        if rows is not None:
            rows.metadata = reader.meta(unit.number, rows.example)
        ended = [InputEnded(unit.number, unit.path, error, unit.skip)] if error is not None or unit.last else []
        sink.take(rows, np.full(len(rows), unit.number) if rows is not None else None, ended)

    devices.run(units, emit)


def failures_path(out: Path) -> Path:
    return out.with_name(out.name + ".failures.csv")


def write_failures(out: Path, report: JobReport) -> None:
    """``<out>.failures.csv`` (source, reason) when inputs failed; a stale one from an earlier run is removed."""
    path = failures_path(out)
    if not report.failures:
        path.unlink(missing_ok=True)
        return
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["source", "reason"])
        writer.writerows(report.failures)
