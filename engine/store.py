"""The partial store behind every output: rows land here first, then become the output.

``<out>.partial/`` holds

- ``rows.bin``: the values, raw, row after row (float32 embeddings [n,128],
  before any pooling or post-processing; float32 [n,96,64] for features);
- ``index.csv``: one line a row, ``source,example,start_s,end_s`` (then the
  metadata columns, when a metadata table is given);
- ``journal.json``: the job's fingerprint and, after each committed chunk, the
  rows written, both files' byte sizes and where in the inputs the next row
  comes from.

Appends go to the files; :meth:`PartialStore.commit` flushes, fsyncs and
rewrites the journal atomically. After a crash, :meth:`PartialStore.resume`
truncates both files to the last commit, so nothing is counted twice.
``engine.formats.finish`` converts the store into the requested format under
a temporary name and renames it into place; :meth:`PartialStore.discard` then
removes the store.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from vggish_rt.engine.errors import VggishError, option

if TYPE_CHECKING:
    import pyarrow as pa

INDEX_COLUMNS = ["source", "example", "start_s", "end_s"]
JOURNAL_VERSION = 2  # 2: the report of engine.ledger (an overflowed input is never counted done)


@dataclass
class Rows:
    """A block of output rows: where each came from, and its values.

    ``start_s``/``end_s`` are NaN for spectrogram inputs, which carry no times.
    ``metadata`` holds one list of strings a row when a metadata table is given.
    """

    source: list[str]
    example: np.ndarray                 # int64 [n], index of the example within its source
    start_s: np.ndarray                 # float64 [n]
    end_s: np.ndarray                   # float64 [n]
    values: np.ndarray                  # float32 [n, 128] (features: float32 [n, 96, 64])
    metadata: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)


def index_lines(rows: Rows) -> list[list[str]]:
    """The index fields of every row: source, example, times with 6 decimals (empty for
    spectrograms, whose times are NaN), then the row's metadata fields."""
    times = [("", "") if start != start else (f"{start:.6f}", f"{end:.6f}")  # NaN != NaN
             for start, end in zip(rows.start_s.tolist(), rows.end_s.tolist())]
    metadata = rows.metadata or [[]] * len(rows)
    return [[source, str(example), *time, *fields]
            for source, example, time, fields in zip(rows.source, rows.example.tolist(), times, metadata)]


def index_text(rows: Rows) -> str:
    """The index lines of ``rows`` as the csv module writes :func:`index_lines` (QUOTE_MINIMAL, "\\n" line ends),
    built one f-string a row: the source field is quoted once per run of one source. Rows with metadata go
    through the csv module."""
    if rows.metadata:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(index_lines(rows))
        return buffer.getvalue()
    quoted: dict[str, str] = {}
    parts = []
    for source, example, start, end in zip(rows.source, rows.example.tolist(), rows.start_s.tolist(),
                                           rows.end_s.tolist()):
        field = quoted.get(source)
        if field is None:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow([source, ""])
            field = quoted[source] = buffer.getvalue()[:-1]  # "source," as the csv module quotes it
        if start != start:  # NaN: a spectrogram's row
            parts.append(f"{field}{example},,\n")
            continue
        times = _TIMES.get((start, end))
        if times is None:
            if len(_TIMES) >= _TIMES_KEPT:
                _TIMES.clear()
            times = _TIMES[(start, end)] = f",{start:.6f},{end:.6f}\n"
        parts.append(f"{field}{example}{times}")
    return "".join(parts)


# The times fields of recent (start, end) pairs, formatted: files cut alike share them (an example's times
# depend only on its position when files start at 0), so most rows format no float.
_TIMES: dict[tuple[float, float], str] = {}
_TIMES_KEPT = 65_536


def _read_index(path: Path, chunk: int) -> Iterator["pa.Table"]:
    """index.csv (no header) as Arrow tables of exactly ``chunk`` lines (the last one shorter), every field a
    string (empty fields stay empty strings); quoted fields, commas and newlines in them as the csv module wrote."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if path.stat().st_size == 0:
        return
    with open(path, encoding="utf-8", newline="") as f:  # the first line gives the number of fields
        width = len(next(csv.reader(f)))
    names = [f"f{i}" for i in range(width)]
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(column_names=names, block_size=4 * 2**20),
                            parse_options=pacsv.ParseOptions(newlines_in_values=True),
                            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in reader:
        pending.append(batch)
        held += len(batch)
        while held >= chunk:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield table.slice(0, chunk)
            rest = table.slice(chunk)
            pending, held = rest.to_batches(), len(rest)
    if held:
        yield pa.Table.from_batches(pending, reader.schema).combine_chunks()


def store_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def lock_path(out: Path) -> Path:
    """The lock a job writing ``out`` holds (see PartialStore)."""
    return out.with_name(out.name + ".lock")


def store_files(out: Path) -> list[Path]:
    """Every existing file a job writing ``out`` would write over or remove besides the output itself: its
    lock and what a killed run left in its store (to be refused as inputs, as the output is)."""
    directory = store_path(out)
    return [lock_path(out), *(sorted(directory.iterdir()) if directory.is_dir() else [])]


class PartialStore:
    """Append-only rows + index with a journal; see the module docstring."""

    def __init__(self, out: Path, fingerprint: dict[str, Any] | Callable[[], dict[str, Any]],
                 row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        """``fingerprint``: the job's, or a call that gives it (a job's scan of its inputs, still running while
        rows are appended: the first commit or a resume waits for it)."""
        self.out = Path(out)
        self.path = store_path(self.out)
        self._fingerprint = fingerprint
        self.row_shape, self.dtype = row_shape, np.dtype(dtype)
        self.rows = 0
        self.committed_rows = 0  # rows a resume would keep
        self.position: dict[str, Any] = {}
        self._rows_file: io.BufferedWriter | None = None
        self._index_file: io.TextIOWrapper | None = None
        self._lock_file: io.TextIOWrapper | None = None

    @property
    def fingerprint(self) -> dict[str, Any]:
        if callable(self._fingerprint):
            self._fingerprint = self._fingerprint()
        return self._fingerprint

    # -- opening ---------------------------------------------------------------
    def _lock(self) -> None:
        """Hold ``<out>.lock`` (an flock, let go by the kernel when this process ends, kill -9 included) for as
        long as this store is open: a second job writing the same output stops here, before it touches the
        first one's store."""
        lock = lock_path(self.out)
        try:
            handle = open(lock, "a+")
        except OSError as exc:
            raise VggishError(f"{self.out}: cannot write ({exc.strerror})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise VggishError(f"{option('out', self.out)}: another job is writing it now (it holds {lock}); wait "
                              f"for it to end, or name another {option('out')}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle

    def create(self) -> None:
        """Start a new store, replacing any left over from an earlier run. Its journal is written by the first
        commit: killed before it, the store has nothing a resume could keep."""
        self._lock()
        if self.path.exists():
            shutil.rmtree(self.path)
        try:
            self.path.mkdir()
            self._open("wb", "w")
        except OSError as exc:
            self.discard()
            raise VggishError(f"{self.out}: cannot write ({exc.strerror})") from None

    def resume(self) -> dict[str, Any]:
        """Reopen a store left by a killed run of the same job; returns the committed position.

        Raises VggishError when there is nothing to resume or it belongs to another job.
        """
        self._lock()
        try:
            return self._reopen()
        except VggishError:
            self.close()
            self._unlock_file()
            raise

    def _reopen(self) -> dict[str, Any]:
        journal_file = self.path / "journal.json"
        if not journal_file.is_file():
            raise VggishError(f"{option('resume', True)}: no unfinished job for {self.out} (no {journal_file})")
        try:
            journal = json.loads(journal_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise VggishError(f"{option('resume', True)}: {journal_file} is unreadable ({exc})") from None
        if journal.get("version") != JOURNAL_VERSION or journal.get("fingerprint") != self.fingerprint:
            left = journal.get("fingerprint") or {}
            changed = sorted(k for k in {*left, *self.fingerprint} if left.get(k) != self.fingerprint.get(k))
            raise VggishError(f"{option('resume', True)}: {self.path} was left by a different job (changed since: "
                              f"{', '.join(changed) or 'the store format'}); remove it or run without {option('resume')}")
        for name, size in (("rows.bin", journal["rows_bytes"]), ("index.csv", journal["index_bytes"])):
            file = self.path / name
            if file.stat().st_size < size:
                raise VggishError(f"{option('resume', True)}: {file} is shorter than its journal says; the store is damaged")
            os.truncate(file, size)
        self.rows, self.position = journal["rows"], journal["position"]
        self.committed_rows = self.rows
        self._open("ab", "a")
        return self.position

    def _open(self, binary_mode: str, text_mode: str) -> None:
        self._rows_file = open(self.path / "rows.bin", binary_mode)
        self._index_file = open(self.path / "index.csv", text_mode, encoding="utf-8", newline="")

    # -- writing ---------------------------------------------------------------
    def append(self, rows: Rows) -> None:
        values = np.ascontiguousarray(rows.values, self.dtype)
        if values.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {values.shape[1:]} in a store of {self.row_shape}")
        self._rows_file.write(values.tobytes())
        self._index_file.write(index_text(rows))
        self.rows += len(rows)

    def commit(self, position: dict[str, Any]) -> None:
        """Make everything appended so far durable, with ``position`` (where the next row comes from)."""
        for handle in (self._rows_file, self._index_file):
            handle.flush()
            os.fsync(handle.fileno())
        self.position = position
        journal = {"version": JOURNAL_VERSION, "fingerprint": self.fingerprint, "rows": self.rows,
                   "rows_bytes": self._rows_file.tell(), "index_bytes": self._index_file.tell(),
                   "position": position}
        temporary = self.path / "journal.json.tmp"
        temporary.write_text(json.dumps(journal, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path / "journal.json")
        self.committed_rows = self.rows

    # -- reading back ----------------------------------------------------------
    def read_values(self, chunk: int) -> Iterator[np.ndarray]:
        """Yield the committed values [k, *row_shape], ``chunk`` rows at a time.

        Plain reads, not a memory map: mapped pages would count as the process's
        resident memory, which must stay flat whatever the store's size.
        """
        row_items = int(np.prod(self.row_shape))
        with open(self.path / "rows.bin", "rb") as values:
            for start in range(0, self.rows, chunk):
                count = min(chunk, self.rows - start)
                rows = np.fromfile(values, self.dtype, count * row_items)
                if len(rows) != count * row_items:
                    raise VggishError(f"{self.path / 'rows.bin'}: shorter than its journal says; the store is damaged")
                yield rows.reshape(count, *self.row_shape)

    def read_index(self, chunk: int) -> Iterator["pa.Table"]:
        """The committed index lines as Arrow tables of ``chunk`` rows (see :meth:`read_rows`)."""
        return _read_index(self.path / "index.csv", chunk)

    def read_rows(self, chunk: int) -> Iterator[tuple[np.ndarray, "pa.Table"]]:
        """Yield (values [k, *row_shape], index [k]) from the committed store, ``chunk`` rows at a time.

        The index is an Arrow table of strings, one column a field of index.csv
        (source, example, start_s, end_s, then the metadata columns), parsed by
        Arrow's CSV reader: no per-row Python.
        """
        index = self.read_index(chunk)
        for values in self.read_values(chunk):
            table = next(index, None)
            if table is None or len(table) != len(values):
                raise VggishError(f"{self.path / 'index.csv'}: fewer lines than rows; the store is damaged")
            yield values, table

    def copy_index(self, target: BinaryIO) -> None:
        """Append the committed index lines (CSV, no header) to ``target`` as they are stored."""
        with open(self.path / "index.csv", "rb") as f:
            shutil.copyfileobj(f, target, 4 * 2**20)

    # -- ending ----------------------------------------------------------------
    def close(self) -> None:
        """Close the files and let go of the output's lock (the store stays for a --resume)."""
        for handle in (self._rows_file, self._index_file, self._lock_file):
            if handle is not None and not handle.closed:
                handle.close()

    def discard(self) -> None:
        """Remove the store and its lock file (after a clean finish, or an error without --resume in view)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._unlock_file()

    def _unlock_file(self) -> None:
        """Remove ``<out>.lock`` if this store held it."""
        if self._lock_file is not None:
            lock_path(self.out).unlink(missing_ok=True)

