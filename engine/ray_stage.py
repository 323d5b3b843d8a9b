"""The embed job on a Ray cluster, with Ray Data. Needs the ``[ray]`` extra.

    input paths --(CPU tasks: decode_source)--> one row per example
                --(actor pool: EmbedStage, one Embedder per actor, one GPU each where there are GPUs)--> embeddings
                --(driver, in input order)--> the job's sink: OUT.partial/ (engine.store), then OUT in its format
                  (engine.formats), OUT.failures.csv when inputs failed

Rows between the stages (Ray Data columns):
``order`` int64 (input number), ``source`` str, ``example`` int64,
``start_s``/``end_s`` float64 (NaN for spectrograms), ``status`` str ("ok", or
"ended": the input's last row, ``reason`` the error that stopped it early, else empty; the job's
engine.ledger decides what it means), ``kind`` str (the row's engine.rowkind.RowKind:
"windows", 16 kHz audio, or "examples", log-mel), ``inputs`` float32 [15600]: the 16 kHz window,
or the example's 96 x 64 values followed by zeros (one fixed-shape column keeps
mixed inputs in one ordered stream). EmbedStage replaces ``inputs`` with
``embedding`` float32 [128] (NaN on rows that are not "ok").

Decoding and windowing run as CPU tasks, so the actors get windows, not files.
The dataset keeps its order (``preserve_order``), so the driver gets the rows
exactly as a single-machine run writes them, through the same store, formats
and failures file: the output and its ``.index.csv`` are those of that run
(values within float sums). A killed actor is restarted by Ray and its batch
retried (``max_restarts``/``max_task_retries``): no row is lost or doubled.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.formats import finish
from vggish_rt.engine.inputs import printable
from vggish_rt.engine.job import check_job_output, write_failures
from vggish_rt.engine.ledger import InputEnded, JobReport, Ledger
from vggish_rt.engine.postprocess import Postprocessor
from vggish_rt.engine.resampling import refuse_in_graph
from vggish_rt.engine.rowkind import EXAMPLES, WINDOWS
from vggish_rt.engine.sources import Block, ReadOptions, input_blocks
from vggish_rt.engine.store import PartialStore, Rows

_WINDOWS, _EXAMPLES = str(WINDOWS), str(EXAMPLES)  # the kind column's values
_EXAMPLE_VALUES = params.NUM_FRAMES * params.NUM_BANDS


def _block_rows(order: int, block: Block) -> dict[str, np.ndarray]:
    n = len(block)
    if block.windows is not None:
        inputs = np.asarray(block.windows, np.float32)
    else:
        inputs = np.zeros((n, params.EXAMPLE_SAMPLES), np.float32)
        inputs[:, :_EXAMPLE_VALUES] = block.examples.reshape(n, -1)
    return {"order": np.full(n, order), "source": np.array([printable(str(block.source))] * n), "example": block.index,
            "start_s": block.start_s, "end_s": block.end_s, "status": np.array(["ok"] * n),
            "reason": np.array([""] * n), "kind": np.array([str(block.kind)] * n), "inputs": inputs}


def _ended(order: int, source: str, error: str = "") -> dict[str, np.ndarray]:
    """One row standing for the end of an input, after its rows: ``error`` (empty: read whole) is why it
    stopped early. What the end means (failed, short, done) is the job's ledger's to say."""
    return {"order": np.array([order]), "source": np.array([source]), "example": np.array([-1]),
            "start_s": np.array([np.nan]), "end_s": np.array([np.nan]), "status": np.array(["ended"]),
            "reason": np.array([error]), "kind": np.array([_WINDOWS]),
            "inputs": np.zeros((1, params.EXAMPLE_SAMPLES), np.float32)}


def decode_source(batch: dict[str, np.ndarray], options: ReadOptions) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data generator stage (batch_size=1): one input path -> its examples' rows, block by block, then
    one 'ended' row (with the error that stopped it early, after any rows it gave before the damage)."""
    order, path = int(batch["order"][0]), Path(os.fsdecode(batch["path"][0]))  # the name's bytes, any bytes
    source = printable(str(path))
    try:
        for block in input_blocks(path, options):
            yield _block_rows(order, block)
    except VggishError as exc:
        yield _ended(order, source, printable(str(exc)))
        return
    yield _ended(order, source)


class EmbedStage:
    """Ray Data callable class: one Embedder per actor; rows with ``inputs`` -> rows with ``embedding``.

    Constructor arguments are Embedder's (model directory, device, precision,
    batch size, relu, frontend); on a GPU actor the device is the one Ray gave it.
    """

    def __init__(self, **embedder_options: Any) -> None:
        self.embedder = Embedder(**embedder_options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["status"] == "ok"
        embeddings = np.full((len(ok), params.EMBEDDING_SIZE), np.nan, np.float32)
        windows, examples = ok & (batch["kind"] == _WINDOWS), ok & (batch["kind"] == _EXAMPLES)
        if windows.any():
            embeddings[windows] = self.embedder.embed_windows(batch["inputs"][windows])
        if examples.any():
            rows = batch["inputs"][examples][:, :_EXAMPLE_VALUES]
            embeddings[examples] = self.embedder.embed_examples(rows.reshape(-1, params.NUM_FRAMES, params.NUM_BANDS))
        out = {key: value for key, value in batch.items() if key != "inputs"}
        out["embedding"] = embeddings
        return out


@dataclass
class RayOptions:
    """Where and how wide: ``address`` (None: a local cluster), ``actors`` (None: one per GPU, else 2)."""

    address: str | None = None
    actors: int | None = None


def run_ray_job(sources: list[Path], out: Path, embedder_options: dict[str, Any], windows: ReadOptions,
                ray_options: RayOptions, postprocessor: Postprocessor | None = None,
                progress: Callable[[int], None] = lambda _: None, stage: type = EmbedStage,
                pool: str = "none") -> JobReport:
    """Embed ``sources`` on a Ray cluster into ``out`` (any format the job writes); returns the report.

    The rows go through the single-machine job's sink: the partial store beside ``out``, then ``out`` in its
    format (``pool``, ``postprocessor`` as there), written only when complete, and ``<out>.failures.csv``.
    ``stage``: the actors' class (EmbedStage or a subclass of it). A local cluster gets at least one CPU more
    than the actors, for decoding.
    """
    import ray

    refuse_in_graph(windows.resampler, "the Ray stage")
    out = Path(out)
    check_job_output(out, sources, postprocessor, pool)
    if not ray.is_initialized():
        local = ray_options.address is None and not os.environ.get("RAY_ADDRESS")
        if any(printable(arg) != arg for arg in sys.argv):  # bytes that are not UTF-8 (Ray sends argv as UTF-8)
            raise VggishError("--ray: Ray cannot start from a command line that holds a file name that is not UTF-8; "
                              "name the inputs in an @list file instead (its names may be any bytes)")
        ray.init(address=ray_options.address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 num_cpus=max(os.cpu_count() or 1, (ray_options.actors or 2) + 1) if local else None)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = ray_options.actors or (gpus if gpus else 2)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    dataset = ray.data.from_items([{"order": i, "path": os.fsencode(p)} for i, p in enumerate(sources)],
                                  override_num_blocks=max(1, len(sources)))
    dataset = dataset.map_batches(decode_source, batch_size=1, batch_format="numpy", fn_kwargs={"options": windows},
                                  num_cpus=1)
    dataset = dataset.map_batches(
        stage, fn_constructor_kwargs={**embedder_options, "device": "cuda" if gpus else "cpu"},
        batch_size=embedder_options.get("batch_size") or (1024 if gpus else 64), batch_format="numpy",
        concurrency=actors, num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
        max_restarts=-1, max_task_retries=-1)
    store = PartialStore(out, {"ray": True, "inputs": len(sources)}, (params.EMBEDDING_SIZE,), np.float32)
    store.create()
    ledger = Ledger("skip")  # Ray skips bad inputs (the CLI refuses --on-error fail with --ray)
    try:  # no --resume on Ray: the store goes whatever happens
        _store_rows(dataset.iter_batches(batch_size=4096, batch_format="numpy"), store, ledger, progress)
        report = ledger.finish()
        store.commit({"source": len(sources), "example": 0})
        report.rows = finish(store, pooled=pool == "mean", postprocessor=postprocessor,
                             failed_sources=ledger.failed_sources())
    finally:
        store.discard()
    write_failures(out, report)
    return report


def _store_rows(batches: Iterator[dict[str, np.ndarray]], store: PartialStore, ledger: Ledger,
                progress: Callable[[int], None]) -> None:
    """Rows in input order -> the ledger -> ``store``: runs of 'ok' rows, and each input's 'ended' row."""
    for batch in batches:
        order, status = batch["order"], batch["status"]
        cuts = [0, *(np.flatnonzero((order[1:] != order[:-1]) | (status[1:] != status[:-1])) + 1).tolist(), len(order)]
        for a, z in zip(cuts[:-1], cuts[1:]):
            if status[a] != "ok":
                for i in range(a, z):
                    ledger.ended(InputEnded(int(order[i]), str(batch["source"][i]), str(batch["reason"][i]) or None))
                continue
            rows = ledger.rows(Rows([str(s) for s in batch["source"][a:z]], batch["example"][a:z],
                                    batch["start_s"][a:z], batch["end_s"][a:z], batch["embedding"][a:z]), order[a:z])
            if len(rows):
                store.append(rows)
                progress(len(rows))
