"""Columnar writers: CSV and Parquet hold exactly the .npy output's values, whatever the chunking."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import write_tiny_model
from vggish_rt.engine import Embedder, formats
from vggish_rt.engine.job import JobOptions, run_job

SIZES = (7, 9, 7)  # rows per input: pooled runs and chunks of 5 rows cross each other's boundaries
AWKWARD = ['plain', 'with, comma', 'with "quotes"', 'two\nlines', '', ' spaced ', 'ünïcode']


@pytest.fixture()
def job(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "CHUNK", 5)
    model = write_tiny_model(tmp_path / "model")
    rng = np.random.default_rng(3)
    sources = []
    for i, rows in enumerate(SIZES):
        path = tmp_path / f"part {i}, take {i}.dat"
        rng.normal(-2.0, 1.5, (rows, 96, 64)).tofile(path)
        sources.append(path)
    embedder = Embedder(model, device="cpu", batch_size=4)

    def run(out: Path, **options) -> Path:
        run_job(sources, out, embedder, JobOptions(**options))
        return out
    return run, sources


def test_csv_and_parquet_parse_back_to_the_npy_values_bit_for_bit(job, tmp_path):
    run, sources = job
    reference = np.load(run(tmp_path / "ref.npy"))
    index = list(csv.reader(open(tmp_path / "ref.npy.index.csv", newline="")))[1:]
    rows = list(csv.reader(open(run(tmp_path / "e.csv"), newline="")))
    assert rows[0] == ["source", "example", "start_s", "end_s", *formats.EMBEDDING_COLUMNS]
    assert [r[:4] for r in rows[1:]] == index
    values = np.array([[np.float32(x) for x in r[4:]] for r in rows[1:]], np.float32)
    assert values.tobytes() == reference.tobytes()
    table = pq.read_table(run(tmp_path / "e.parquet"))
    assert table.column("source").to_pylist() == [line[0] for line in index]
    assert table.column("example").to_pylist() == [int(line[1]) for line in index]
    assert table.column("start_s").null_count == len(index)  # spectrograms carry no times
    parquet_values = np.stack([table.column(name).to_numpy() for name in formats.EMBEDDING_COLUMNS], axis=1)
    assert parquet_values.dtype == np.float32 and parquet_values.tobytes() == reference.tobytes()


def test_metadata_fields_survive_commas_quotes_and_newlines(job, tmp_path):
    run, _ = job
    table = tmp_path / "meta.csv"
    fields = [[AWKWARD[i % len(AWKWARD)], str(i)] for i in range(sum(SIZES))]
    with open(table, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["label", "n"], *fields])
    reference = np.load(run(tmp_path / "ref.npy"))
    rows = list(csv.reader(open(run(tmp_path / "m.csv", metadata=table), newline="", encoding="utf-8")))
    assert rows[0][:2] == ["label", "n"] and [r[:2] for r in rows[1:]] == fields
    assert np.array([[np.float32(x) for x in r[2:]] for r in rows[1:]], np.float32).tobytes() == reference.tobytes()
    parquet = pq.read_table(run(tmp_path / "m.parquet", metadata=table))
    assert parquet.column("label").to_pylist() == [f[0] for f in fields]


def test_pooled_rows_are_float64_means_across_chunk_boundaries(job, tmp_path):
    run, sources = job
    reference = np.load(run(tmp_path / "ref.npy"))
    bounds = np.cumsum([0, *SIZES])
    expected = np.stack([reference[a:z].astype(np.float64).mean(axis=0) for a, z in zip(bounds[:-1], bounds[1:])])
    pooled = np.load(run(tmp_path / "p.npy", pool="mean"))
    assert pooled.tobytes() == expected.astype(np.float32).tobytes()
    index = list(csv.reader(open(tmp_path / "p.npy.index.csv", newline="")))
    assert index == [["source", "example", "start_s", "end_s"], *[[str(s), "0", "", ""] for s in sources]]
    rows = list(csv.reader(open(run(tmp_path / "p.csv", pool="mean"), newline="")))
    assert [r[0] for r in rows[1:]] == [str(s) for s in sources]
    assert np.array([[np.float32(x) for x in r[4:]] for r in rows[1:]], np.float32).tobytes() == pooled.tobytes()
