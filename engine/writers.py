"""Embedding outputs, written incrementally and finished atomically.

The suffix of ``--out`` picks the format:

- ``.npy``: float32 [N,128] (uint8 when post-processed) with ``<out>.index.csv``
  beside it (columns ``source,example,start_s,end_s``);
- ``.csv``: the seed's layout, the index columns (or the metadata table's
  columns) then ``e0``..``e127``;
- ``.parquet``: the same columns as the CSV;
- ``.dat``: the seed's raw layout, float64 little-endian N x 128, no header,
  with ``<out>.index.csv`` beside it.

Rows go to ``.partial`` files as they come; :meth:`EmbeddingWriter.finish`
renames complete files into place, so a crash never leaves a truncated output
under the final name.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError

FORMATS = (".npy", ".csv", ".parquet", ".dat")
INDEX_COLUMNS = ["source", "example", "start_s", "end_s"]
EMBEDDING_COLUMNS = [f"e{i}" for i in range(params.EMBEDDING_SIZE)]


@dataclass
class Rows:
    """A block of output rows: where each came from, and its embedding.

    ``start_s``/``end_s`` are NaN for spectrogram inputs, which carry no times.
    """

    source: list[str]
    example: np.ndarray                 # int64 [n], index of the example within its source
    start_s: np.ndarray                 # float64 [n]
    end_s: np.ndarray                   # float64 [n]
    embeddings: np.ndarray              # float32 or uint8 [n, 128] (features: float32 [n, 96, 64])
    metadata: list[list[str]] = field(default_factory=list)  # [n][k] when a metadata table is given

    def __len__(self) -> int:
        return len(self.embeddings)


def index_path(out: Path) -> Path:
    return out.with_name(out.name + ".index.csv")


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _format_index(rows: Rows, i: int) -> list[str]:
    start, end = rows.start_s[i], rows.end_s[i]
    times = ["", ""] if np.isnan(start) else [f"{start:.6f}", f"{end:.6f}"]
    return [rows.source[i], str(int(rows.example[i])), *times]


class EmbeddingWriter:
    """Writes Rows to ``out`` in the format its suffix names (see module doc)."""

    def __init__(self, out: Path, metadata_columns: list[str] | None = None,
                 row_shape: tuple[int, ...] = (params.EMBEDDING_SIZE,), formats: tuple[str, ...] = FORMATS) -> None:
        self.out = Path(out)
        self.row_shape = row_shape
        self.suffix = self.out.suffix.lower()
        if self.suffix not in formats:
            raise VggishError(f"--out {out}: unknown output format {self.out.suffix!r} (use {', '.join(formats)})")
        if not self.out.parent.is_dir():
            raise VggishError(f"--out {out}: directory {self.out.parent} does not exist")
        self.metadata_columns = metadata_columns
        self.count = 0
        self.dtype: np.dtype | None = None
        self._files: dict[Path, io.IOBase] = {}
        self._parquet = None
        try:
            if self.suffix in (".npy", ".dat"):
                self._open(self.out, "wb")
                self._index = csv.writer(self._open(index_path(self.out), "w"), lineterminator="\n")
                self._index.writerow(INDEX_COLUMNS)
            elif self.suffix == ".csv":
                self._csv = csv.writer(self._open(self.out, "w"), lineterminator="\n")
                self._csv.writerow([*(metadata_columns or INDEX_COLUMNS), *EMBEDDING_COLUMNS])
        except OSError as exc:
            self.abort()
            raise VggishError(f"--out {out}: cannot write ({exc.strerror})") from None

    def _open(self, final: Path, mode: str) -> io.IOBase:
        handle = open(partial_path(final), mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))
        self._files[final] = handle
        return handle

    def write(self, rows: Rows) -> None:
        """Append a block of rows."""
        if len(rows) == 0:
            return
        if self.dtype is None:
            self.dtype = rows.embeddings.dtype
        if self.suffix == ".npy":
            self._files[self.out].write(np.ascontiguousarray(rows.embeddings).tobytes())
        elif self.suffix == ".dat":
            self._files[self.out].write(np.ascontiguousarray(rows.embeddings, "<f8").tobytes())
        if self.suffix in (".npy", ".dat"):
            self._index.writerows(_format_index(rows, i) for i in range(len(rows)))
        elif self.suffix == ".csv":
            values = rows.embeddings.astype(np.float64) if rows.embeddings.dtype != np.uint8 else rows.embeddings
            text = [[repr(float(v)) if values.dtype.kind == "f" else str(int(v)) for v in row] for row in values]
            leading = rows.metadata if self.metadata_columns else [_format_index(rows, i) for i in range(len(rows))]
            self._csv.writerows(lead + row for lead, row in zip(leading, text))
        else:
            self._write_parquet(rows)
        self.count += len(rows)

    def finish(self) -> None:
        """Complete every file and rename it into place."""
        try:
            if self.suffix == ".npy":
                self._finish_npy()
            elif self.suffix == ".parquet":
                self._close_parquet()
            for final, handle in self._files.items():
                handle.close()
                os.replace(partial_path(final), final)
        except OSError as exc:
            self.abort()
            raise VggishError(f"--out {self.out}: writing failed ({exc.strerror}); any previous output is intact") from None

    def abort(self) -> None:
        """Remove partial files; finished outputs from earlier runs stay untouched."""
        if self._parquet is not None:
            self._parquet.close()
            partial_path(self.out).unlink(missing_ok=True)
        for final, handle in self._files.items():
            handle.close()
            partial_path(final).unlink(missing_ok=True)

    def _finish_npy(self) -> None:
        """Prepend the .npy header, now that the row count is known."""
        data = self._files[self.out]
        data.close()
        raw = partial_path(self.out)
        framed = raw.with_name(raw.name + ".npy")
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(self.dtype or np.float32)),
                  "fortran_order": False, "shape": (self.count, *self.row_shape)}
        with open(framed, "wb") as dst, open(raw, "rb") as src:
            np.lib.format.write_array_header_1_0(dst, header)
            shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(framed, raw)
        self._files[self.out] = open(raw, "rb")

    def _write_parquet(self, rows: Rows) -> None:
        """One row group per block, through a ParquetWriter opened on the first block."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, pa.Array] = {}
        if self.metadata_columns:
            for j, name in enumerate(self.metadata_columns):
                columns[name] = pa.array([row[j] for row in rows.metadata], pa.string())
        else:
            columns["source"] = pa.array(rows.source, pa.string())
            columns["example"] = pa.array(rows.example, pa.int64())
            for name in ("start_s", "end_s"):
                values = getattr(rows, name)
                columns[name] = pa.array(values, pa.float64(), mask=np.isnan(values))
        for i, name in enumerate(EMBEDDING_COLUMNS):
            columns[name] = pa.array(rows.embeddings[:, i])
        table = pa.table(columns)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(partial_path(self.out), table.schema)
        self._parquet.write_table(table)

    def _close_parquet(self) -> None:
        if self._parquet is None:  # no rows: still a valid, empty table
            self._write_parquet(Rows([], np.empty(0, np.int64), np.empty(0), np.empty(0),
                                     np.empty((0, params.EMBEDDING_SIZE), self.dtype or np.float32)))
        self._parquet.close()
        self._files[self.out] = open(partial_path(self.out), "rb")
