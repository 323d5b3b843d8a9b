"""Output formats: a finished PartialStore becomes the file ``--out`` names.

- ``.npy``: the values (float32 [N,128]; uint8 when post-processed) and
  ``<out>.index.csv`` beside it (``source,example,start_s,end_s``);
- ``.dat``: the seed's raw layout, float64 little-endian N x 128, no header,
  and ``<out>.index.csv``;
- ``.csv``: the seed's layout: the index columns (or, with a metadata table,
  its columns instead) then ``e0``..``e127``;
- ``.parquet``: the same columns as the CSV, one row group per chunk;
- ``.tfrecord``: AudioSet's layout, one SequenceExample per input with the
  post-processed bytes per example (needs TensorFlow: vggish_rt.export.tfrecord).

Each file is written under a temporary name and renamed into place, so an
earlier output of the same name stays intact until the new one is complete.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.postprocess import Postprocessor
from vggish_rt.engine.store import INDEX_COLUMNS, PartialStore

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = (".npy", ".csv", ".parquet", ".dat", ".tfrecord")
EMBEDDING_COLUMNS = [f"e{i}" for i in range(params.EMBEDDING_SIZE)]
CHUNK = 8192                # embedding rows a chunk (4 MB of float32 [*,128])
CHUNK_BYTES = 4 * 2**20     # rows of any other shape (log-mel features) are read this many bytes at a time


def index_path(out: Path) -> Path:
    return out.with_name(out.name + ".index.csv")


def check_output(out: Path, formats: tuple[str, ...] = FORMATS) -> None:
    """Refuse an unknown suffix or a missing directory before any work starts."""
    suffix = out.suffix.lower()
    if suffix not in formats:
        raise VggishError(f"--out {out}: unknown output format {out.suffix!r} (use {', '.join(formats)})")
    if not out.parent.is_dir():
        raise VggishError(f"--out {out}: directory {out.parent} does not exist")


Chunks = Iterator[tuple[np.ndarray, list[list[str]]]]


def finish(store: PartialStore, metadata_columns: list[str] | None = None, pooled: bool = False,
           postprocessor: Postprocessor | None = None) -> None:
    """Write ``store.out`` (and its index, where the format has one) from the store, atomically.

    ``pooled``: one row per source, the mean of its rows (rows of a source are
    contiguous in the store). ``postprocessor``: applied after pooling; the
    values become uint8.
    """
    out = store.out
    suffix = out.suffix.lower()
    columns = metadata_columns or []
    count = _count_sources(store) if pooled else store.rows
    dtype = np.dtype(np.uint8) if postprocessor is not None else store.dtype

    rows_per_chunk = max(1, min(CHUNK, CHUNK_BYTES // (store.dtype.itemsize * int(np.prod(store.row_shape)))))

    def chunks() -> Chunks:
        stream = _pool(store.read_rows(rows_per_chunk)) if pooled else store.read_rows(rows_per_chunk)
        for values, lines in stream:
            yield (postprocessor.postprocess(values) if postprocessor is not None else values), lines

    temporary = out.with_name(f".{out.name}.tmp")
    index_temporary = out.with_name(f".{out.name}.index.tmp")
    try:
        if suffix in (".npy", ".dat"):
            binary = (dtype, (count, *store.row_shape)) if suffix == ".npy" else (np.dtype("<f8"), None)
            with open(index_temporary, "wb") as index:
                index.write(_csv_line([*INDEX_COLUMNS, *columns]).encode())
                if pooled:
                    _write_binary(_index_as_written(chunks(), index), temporary, *binary)
                else:  # the store's index lines are the final ones: copied, not parsed
                    store.copy_index(index)
                    values = store.read_values(rows_per_chunk)
                    _write_binary((postprocessor.postprocess(v) for v in values) if postprocessor is not None else values,
                                  temporary, *binary)
        elif suffix == ".csv":
            _write_csv(chunks(), temporary, columns)
        elif suffix == ".tfrecord":  # run_job has checked: post-processed, not pooled
            from vggish_rt.export.tfrecord import write_sequence_examples

            write_sequence_examples(temporary, _per_source(chunks()))
        else:
            _write_parquet(chunks(), temporary, columns, (0, *store.row_shape), dtype)
        if index_temporary.exists():
            os.replace(index_temporary, index_path(out))
        os.replace(temporary, out)
    except OSError as exc:
        raise VggishError(f"--out {out}: writing failed ({exc.strerror}); any previous output is intact") from None
    finally:
        temporary.unlink(missing_ok=True)
        index_temporary.unlink(missing_ok=True)


def _by_source(chunks: Chunks) -> Iterator[tuple[list[list[str]], np.ndarray]]:
    """(index lines, values [n,...]) for each run of contiguous rows of one source."""
    lines_run: list[list[str]] = []
    values_run: list[np.ndarray] = []
    for values, lines in chunks:
        for row, line in zip(values, lines):
            if lines_run and line[0] != lines_run[0][0]:
                yield lines_run, np.stack(values_run)
                lines_run, values_run = [], []
            lines_run.append(line)
            values_run.append(row)
    if lines_run:
        yield lines_run, np.stack(values_run)


def _per_source(chunks: Chunks) -> Iterator[tuple[str, float, float, np.ndarray]]:
    """(source, first start_s, last end_s, values [n,...]) for each source."""
    for lines, values in _by_source(chunks):
        yield lines[0][0], float(lines[0][2] or 0.0), float(lines[-1][3] or 0.0), values


def _count_sources(store: PartialStore) -> int:
    with open(store.path / "index.csv", encoding="utf-8", newline="") as f:
        count, previous = 0, None
        for line in csv.reader(f):
            count += line[0] != previous
            previous = line[0]
    return count


def _pool(chunks: Chunks) -> Chunks:
    """Mean of each source's rows (float64 sums), one row a source: example 0, first start, last end;
    regrouped into chunks of up to CHUNK pooled rows."""
    out_values: list[np.ndarray] = []
    out_lines: list[list[str]] = []
    for lines, values in _by_source(chunks):
        out_values.append(values.astype(np.float64).mean(axis=0))
        out_lines.append([lines[0][0], "0", lines[0][2], lines[-1][3], *lines[0][4:]])
        if len(out_values) == CHUNK:
            yield np.asarray(out_values, np.float32), out_lines
            out_values, out_lines = [], []
    if out_values:
        yield np.asarray(out_values, np.float32), out_lines


def _csv_line(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def _index_as_written(chunks: Chunks, index: BinaryIO) -> Iterator[np.ndarray]:
    """The chunks' values, writing each chunk's index lines to ``index`` on the way."""
    for values, lines in chunks:
        index.write("".join(_csv_line(line) for line in lines).encode())
        yield values


def _write_binary(values: Iterator[np.ndarray], path: Path, dtype: np.dtype, shape: tuple[int, ...] | None) -> None:
    """Raw rows in ``dtype``, after an .npy header of ``shape`` (none for .dat)."""
    with open(path, "wb") as f:
        if shape is not None:
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(f, header)
        for chunk in values:
            np.ascontiguousarray(chunk, dtype).tofile(f)


def _leading(lines: list[list[str]], metadata_columns: list[str]) -> list[list[str]]:
    """The CSV/Parquet leading fields: the metadata columns when given (the seed's layout), else the index."""
    width = len(INDEX_COLUMNS)
    return [line[width:] for line in lines] if metadata_columns else [line[:width] for line in lines]


def _write_csv(chunks: Chunks, path: Path, metadata_columns: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*(metadata_columns or INDEX_COLUMNS), *EMBEDDING_COLUMNS])
        for values, lines in chunks:
            text = values.astype(str).tolist()  # shortest round-trip text: float32 stays float32-exact
            writer.writerows(lead + row for lead, row in zip(_leading(lines, metadata_columns), text))


def parquet_table(values: np.ndarray, lines: list[list[str]], metadata_columns: list[str]) -> "pa.Table":
    import pyarrow as pa

    leading = _leading(lines, metadata_columns)
    columns: dict[str, pa.Array] = {}
    if metadata_columns:
        for j, name in enumerate(metadata_columns):
            columns[name] = pa.array([row[j] for row in leading], pa.string())
    else:
        columns["source"] = pa.array([row[0] for row in leading], pa.string())
        columns["example"] = pa.array([int(row[1]) for row in leading], pa.int64())
        for j, name in ((2, "start_s"), (3, "end_s")):
            columns[name] = pa.array([float(row[j]) if row[j] else None for row in leading], pa.float64())
    for i, name in enumerate(EMBEDDING_COLUMNS):
        columns[name] = pa.array(values[:, i])
    return pa.table(columns)


def _write_parquet(chunks: Chunks, path: Path, metadata_columns: list[str], empty_shape: tuple[int, ...],
                   dtype: np.dtype) -> None:
    """One row group per chunk; no rows still make a table with the right columns."""
    import pyarrow.parquet as pq

    writer = None
    try:
        for values, lines in chunks:
            table = parquet_table(values, lines, metadata_columns)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        if writer is None:
            pq.write_table(parquet_table(np.empty(empty_shape, dtype), [], metadata_columns), path)
    finally:
        if writer is not None:
            writer.close()
