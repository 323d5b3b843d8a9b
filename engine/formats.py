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
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError, option
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


def refuse_overwriting_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Refuse, before any work, an output that is one of the inputs: the same file under any name (the same
    path, ``./d/../x``, a symbolic or a hard link), compared by device and inode."""
    existing: dict[tuple[int, int], Path] = {}
    for output in outputs:
        try:
            status = os.stat(output)
        except OSError:  # not there yet: it cannot be an input
            continue
        existing[(status.st_dev, status.st_ino)] = output
    if not existing:
        return
    for source in inputs:
        try:
            status = os.stat(source)
        except OSError:
            continue
        output = existing.get((status.st_dev, status.st_ino))
        if output is not None:
            raise VggishError(f"{option('out', output)}: is the input {source} (the same file); refusing to write over an "
                              "input")


def check_output(out: Path, formats: tuple[str, ...] = FORMATS) -> None:
    """Refuse an unknown suffix, a missing directory or a directory as the output before any work starts."""
    suffix = out.suffix.lower()
    if suffix not in formats:
        raise VggishError(f"{option('out', out)}: unknown output format {out.suffix!r} (use {', '.join(formats)})")
    if not out.parent.is_dir():
        raise VggishError(f"{option('out', out)}: directory {out.parent} does not exist")
    if out.is_dir():
        raise VggishError(f"{option('out', out)}: is a directory; name a file (its suffix picks the format)")


Chunks = Iterator[tuple[np.ndarray, "pa.Table"]]  # (values [k, ...], index fields as strings [k]; store.read_rows)


def finish(store: PartialStore, metadata_columns: list[str] | None = None, pooled: bool = False,
           postprocessor: Postprocessor | None = None, failed_sources: frozenset[str] = frozenset()) -> int:
    """Write ``store.out`` (and its index, where the format has one) from the store, atomically;
    returns the number of rows written.

    ``pooled``: one row per input, the mean of its rows (rows of an input are
    contiguous in the store), none for the inputs in ``failed_sources`` (the
    rows they gave before failing are a prefix, not the input). ``postprocessor``: applied after pooling; the
    values become uint8.
    """
    out = store.out
    suffix = out.suffix.lower()
    columns = metadata_columns or []
    count = _count_sources(store, failed_sources) if pooled else store.rows
    dtype = np.dtype(np.uint8) if postprocessor is not None else store.dtype

    rows_per_chunk = max(1, min(CHUNK, CHUNK_BYTES // (store.dtype.itemsize * int(np.prod(store.row_shape)))))

    def chunks() -> Chunks:
        stream = _pool(store.read_rows(rows_per_chunk), failed_sources) if pooled else store.read_rows(rows_per_chunk)
        for values, index in stream:
            yield (postprocessor.postprocess(values) if postprocessor is not None else values), index

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
        raise VggishError(f"{option('out', out)}: writing failed ({exc.strerror}); any previous output is intact") from None
    finally:
        temporary.unlink(missing_ok=True)
        index_temporary.unlink(missing_ok=True)
    return count


def _input_starts(index: "pa.Table", previous_source: str | None) -> np.ndarray:
    """bool [n]: where a row begins an input's rows. Its source differs from the row
    before, or its example number is 0: the same file given twice in a row is two
    inputs, two pooled rows (an input's rows always begin at example 0)."""
    sources = index.column(0).to_numpy(zero_copy_only=False)
    examples = index.column(1).to_numpy(zero_copy_only=False)
    before = np.concatenate([np.array([previous_source], dtype=object), sources[:-1]])
    return (sources != before) | (examples == "0")


def _by_source(chunks: Chunks) -> Iterator[tuple["pa.Table", np.ndarray]]:
    """(index [n], values [n,...]) for the rows of each input, in order."""
    import pyarrow as pa

    held_index: list[pa.Table] = []
    held_values: list[np.ndarray] = []
    previous = None
    for values, index in chunks:
        if not index.num_rows:
            continue
        starts = np.flatnonzero(_input_starts(index, previous)).tolist()
        previous = index.column(0)[-1].as_py()
        bounds = [*starts, index.num_rows]
        if bounds[0] > 0:  # the chunk's first rows go on with the held input
            held_index.append(index.slice(0, bounds[0]))
            held_values.append(values[: bounds[0]])
        for a, z in zip(bounds[:-1], bounds[1:]):  # each begins an input: the held rows are complete
            if held_index:
                yield pa.concat_tables(held_index), np.concatenate(held_values)
                held_index, held_values = [], []
            held_index.append(index.slice(a, z - a))
            held_values.append(values[a:z])
    if held_index:
        yield pa.concat_tables(held_index), np.concatenate(held_values)


def _per_source(chunks: Chunks) -> Iterator[tuple[str, float, float, np.ndarray]]:
    """(source, first start_s, last end_s, values [n,...]) for each source."""
    for index, values in _by_source(chunks):
        yield index.column(0)[0].as_py(), float(index.column(2)[0].as_py() or 0.0), \
            float(index.column(3)[-1].as_py() or 0.0), values


def _count_sources(store: PartialStore, failed_sources: frozenset[str]) -> int:
    """The number of inputs, not in ``failed_sources``, whose rows the store holds (the pooled row count)."""
    count, previous = 0, None
    for index in store.read_index(CHUNK):
        if index.num_rows:
            starts = _input_starts(index, previous)
            sources = index.column(0).to_numpy(zero_copy_only=False)[starts]
            count += int(np.count_nonzero(~np.isin(sources, list(failed_sources)))) if failed_sources else int(starts.sum())
            previous = index.column(0)[-1].as_py()
    return count


def _pool(chunks: Chunks, failed_sources: frozenset[str]) -> Chunks:
    """Mean of each source's rows (float64 sums), one row a source: example 0, first start, last end, the
    first row's metadata; regrouped into chunks of up to CHUNK pooled rows."""
    out_values: list[np.ndarray] = []
    out_lines: list[list[str]] = []
    for index, values in _by_source(chunks):
        first, last = index.slice(0, 1).to_pylist()[0], index.column(3)[-1].as_py()
        fields = list(first.values())
        if fields[0] in failed_sources:
            continue
        out_values.append(values.astype(np.float64).mean(axis=0))
        out_lines.append([fields[0], "0", fields[2], last, *fields[4:]])
        if len(out_values) == CHUNK:
            yield np.asarray(out_values, np.float32), lines_table(out_lines, index.num_columns)
            out_values, out_lines = [], []
    if out_values:
        yield np.asarray(out_values, np.float32), lines_table(out_lines, len(out_lines[0]))


def lines_table(lines: list[list[str]], width: int) -> "pa.Table":
    """Index lines (lists of ``width`` strings, one list a row, as store.index_lines makes) as an Arrow table
    of strings, laid out as store.read_rows gives them."""
    import pyarrow as pa

    return pa.table({f"f{i}": pa.array([line[i] for line in lines], pa.string()) for i in range(width)})


def _csv_line(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def _index_as_written(chunks: Chunks, index: BinaryIO) -> Iterator[np.ndarray]:
    """The chunks' values, writing each chunk's index lines to ``index`` on the way (as the csv module writes
    them, like the store's own index lines)."""
    for values, table in chunks:
        index.write("".join(_csv_line(list(row.values())) for row in table.to_pylist()).encode())
        yield values


def _write_binary(values: Iterator[np.ndarray], path: Path, dtype: np.dtype, shape: tuple[int, ...] | None) -> None:
    """Raw rows in ``dtype``, after an .npy header of ``shape`` (none for .dat)."""
    with open(path, "wb") as f:
        if shape is not None:
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(f, header)
        for chunk in values:
            np.ascontiguousarray(chunk, dtype).tofile(f)


def _leading(index: "pa.Table", metadata_columns: list[str]) -> "pa.Table":
    """The CSV/Parquet leading columns: the metadata columns when given (the seed's layout), else the index's
    (source and example typed, start_s/end_s float64 or null for spectrograms)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    width = len(INDEX_COLUMNS)
    if metadata_columns:
        return pa.table(index.columns[width:], names=metadata_columns)
    columns = {"source": index.column(0), "example": pc.cast(index.column(1), pa.int64())}
    for i, name in ((2, "start_s"), (3, "end_s")):
        text = index.column(i)
        columns[name] = pc.cast(pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text), pa.float64())
    return pa.table(columns)


def parquet_table(values: np.ndarray, index: "pa.Table", metadata_columns: list[str]) -> "pa.Table":
    """The output table: the leading columns (see :func:`_leading`), then ``e0``..``e127`` of ``values``'s dtype."""
    import pyarrow as pa

    leading = _leading(index, metadata_columns)
    columns = np.ascontiguousarray(values.T)
    return pa.table([*leading.columns, *(pa.array(column) for column in columns)],
                    names=[*leading.column_names, *EMBEDDING_COLUMNS])


def _write_csv(chunks: Chunks, path: Path, metadata_columns: list[str]) -> None:
    """The leading columns then e0..e127, written column-wise by Arrow: floats in their shortest round-trip text
    (float32 stays float32-exact), strings quoted. Chunks are formatted by a pool of threads (Arrow releases the
    GIL; the seed's 105,835 rows took 3 s on one) and written in order, at most two per thread held."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False)

    def text(values: np.ndarray, index: "pa.Table") -> "pa.Buffer":
        table = parquet_table(values, index, metadata_columns)
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table.rename_columns([f"c{i}" for i in range(table.num_columns)]), sink, options)
        return sink.getvalue()

    threads = min(8, os.cpu_count() or 1)
    with open(path, "wb") as f, ThreadPoolExecutor(threads, thread_name_prefix="vggish-csv") as pool:
        f.write(_csv_line([*(metadata_columns or INDEX_COLUMNS), *EMBEDDING_COLUMNS]).encode())
        pending: deque[Future] = deque()
        for values, index in chunks:
            pending.append(pool.submit(text, values, index))
            if len(pending) >= 2 * threads:
                f.write(pending.popleft().result())
        while pending:
            f.write(pending.popleft().result())


def _write_parquet(chunks: Chunks, path: Path, metadata_columns: list[str], empty_shape: tuple[int, ...],
                   dtype: np.dtype) -> None:
    """One row group per chunk; no rows still make a table with the right columns."""
    import pyarrow.parquet as pq

    writer = None
    try:
        for values, index in chunks:
            table = parquet_table(values, index, metadata_columns)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        if writer is None:
            no_rows = lines_table([], len(INDEX_COLUMNS) + len(metadata_columns))
            pq.write_table(parquet_table(np.empty(empty_shape, dtype), no_rows, metadata_columns), path)
    finally:
        if writer is not None:
            writer.close()
