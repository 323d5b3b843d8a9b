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
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.postprocess import Postprocessor
from vggish_rt.engine.store import INDEX_COLUMNS, PartialStore

FORMATS = (".npy", ".csv", ".parquet", ".dat", ".tfrecord")
EMBEDDING_COLUMNS = [f"e{i}" for i in range(params.EMBEDDING_SIZE)]
CHUNK = 8192


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

    def chunks() -> Chunks:
        stream = _pool(store.read_rows(CHUNK)) if pooled else store.read_rows(CHUNK)
        for values, lines in stream:
            yield (postprocessor.postprocess(values) if postprocessor is not None else values), lines

    temporary = out.with_name(f".{out.name}.tmp")
    index_temporary = out.with_name(f".{out.name}.index.tmp")
    try:
        if suffix == ".npy":
            _write_npy(chunks(), temporary, index_temporary, (count, *store.row_shape), dtype, columns)
        elif suffix == ".dat":
            _write_dat(chunks(), temporary, index_temporary, columns)
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


def _per_source(chunks: Chunks) -> Iterator[tuple[str, float, float, np.ndarray]]:
    """(source, first start_s, last end_s, values [n,...]) for each run of rows of one source."""
    source, start, end, parts = None, 0.0, 0.0, []
    for values, lines in chunks:
        for row, line in zip(values, lines):
            if line[0] != source and parts:
                yield source, start, end, np.stack(parts)
                parts = []
            if not parts:
                source, start = line[0], float(line[2] or 0.0)
            end = float(line[3] or 0.0)
            parts.append(row)
    if parts:
        yield source, start, end, np.stack(parts)


def _count_sources(store: PartialStore) -> int:
    with open(store.path / "index.csv", encoding="utf-8", newline="") as f:
        count, previous = 0, None
        for line in csv.reader(f):
            count += line[0] != previous
            previous = line[0]
    return count


def _pool(chunks: Chunks) -> Chunks:
    """Mean of each source's rows (float64 sums), one row a source: example 0, first start, last end."""
    total, count, first, last = None, 0, None, None
    for values, lines in chunks:
        out_values, out_lines = [], []
        for row, line in zip(values, lines):
            if first is not None and line[0] != first[0]:
                out_values.append(total / count)
                out_lines.append([first[0], "0", first[2], last[3], *first[4:]])
                total, count, first = None, 0, None
            total = row.astype(np.float64) if total is None else total + row
            count, first, last = count + 1, first or line, line
        if out_values:
            yield np.asarray(out_values, np.float32), out_lines
    if first is not None:
        yield np.asarray([total / count], np.float32), [[first[0], "0", first[2], last[3], *first[4:]]]


def _write_index(lines_chunks: Iterator[list[list[str]]], path: Path, metadata_columns: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*INDEX_COLUMNS, *metadata_columns])
        for lines in lines_chunks:
            writer.writerows(lines)


def _write_npy(chunks: Chunks, path: Path, index: Path, shape: tuple[int, ...], dtype: np.dtype,
               metadata_columns: list[str]) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)

        def lines() -> Iterator[list[list[str]]]:
            for values, chunk_lines in chunks:
                f.write(np.ascontiguousarray(values, dtype).tobytes())
                yield chunk_lines
        _write_index(lines(), index, metadata_columns)


def _write_dat(chunks: Chunks, path: Path, index: Path, metadata_columns: list[str]) -> None:
    with open(path, "wb") as f:
        def lines() -> Iterator[list[list[str]]]:
            for values, chunk_lines in chunks:
                f.write(values.astype("<f8").tobytes())
                yield chunk_lines
        _write_index(lines(), index, metadata_columns)


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


def _write_parquet(chunks: Chunks, path: Path, metadata_columns: list[str], empty_shape: tuple[int, ...],
                   dtype: np.dtype) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for values, lines in itertools.chain(chunks, [(np.empty(empty_shape, dtype), [])]):
            if writer is not None and not lines:
                break
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
            table = pa.table(columns)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
