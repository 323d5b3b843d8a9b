"""``vggish-rt embed``, ``features``, ``postprocess`` and ``fit-pca``."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import numpy as np
import typer

from vggish_rt.cli import options
from vggish_rt.cli.app import ModelOption, _say, app
from vggish_rt.engine.progress import progress_bar

if TYPE_CHECKING:
    from vggish_rt.engine.job import JobReport
    from vggish_rt.engine.modeldir import ModelDirectory
    from vggish_rt.engine.postprocess import Postprocessor
    from vggish_rt.engine.sources import ReadOptions

InputsArgument = Annotated[list[str], typer.Argument(
    help="Audio or video files (what libsndfile or FFmpeg reads), directories (every file, recursively, but hidden ones), @list.txt files, glob patterns (quoted too; ** at any depth), or spectrograms (.npy [N,96,64], raw .dat).",
    show_default=False)]
HopOption = Annotated[float, typer.Option(callback=options.seconds(), help="Seconds between examples, rounded to whole 10 ms frames (reference: 0.96).")]
PadShortOption = Annotated[bool, typer.Option(help="Zero-pad clips shorter than 0.975 s to one example (reference: none).")]
PadTailOption = Annotated[bool, typer.Option(help="Also keep the last partial window, zero-padded.")]
ResamplerOption = Annotated[str, typer.Option(help="soxr (fast, default); resampy (the reference's, if installed); onnx: the reference's resampy filter run inside the end-to-end graph, on the GPU when there is one (a deviation from the default; rates that are multiples of 25 Hz; embed only, not with --frontend numpy or --ray).")]
DatDtypeOption = Annotated[str, typer.Option(help="Values of raw .dat inputs: float64 (the seed's) or float32.")]


def _hop(seconds: float):
    from vggish_rt.engine.windows import Hop

    hop = Hop.from_seconds(seconds)
    if hop.rounded:
        print(f"note: --hop {seconds} rounded to {hop.seconds:.2f} s (whole 10 ms frames)", file=sys.stderr)
    return hop


@app.command()
def embed(
    inputs: InputsArgument,
    out: Annotated[Path, typer.Option("--out", "-o", callback=options.output_path, help="Output file; its suffix picks the format: .npy (+ .index.csv), .csv, .parquet, .dat, .tfrecord (AudioSet layout, with --postprocess).")],
    model: ModelOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, or cuda:0,1 (one session per GPU).")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8 (the model directory must hold that file).")] = "fp32",
    batch_size: Annotated[Optional[int], typer.Option(callback=options.count(1, options.MAX_BATCH_SIZE), help="Examples per batch (default: 64 on CPU, 1024 on GPU).")] = None,
    hop: HopOption = 0.96,
    pad_short: PadShortOption = False,
    pad_tail: PadTailOption = False,
    resampler: ResamplerOption = "soxr",
    dat_dtype: DatDtypeOption = "float64",
    postprocess: Annotated[bool, typer.Option(help="Apply the model's PCA, whitening and 8-bit quantization (uint8 output).")] = False,
    relu: Annotated[bool, typer.Option(help="Apply ReLU to the embeddings (the pre-2020 reference; a deviation).")] = False,
    frontend: Annotated[str, typer.Option(help="Audio frontend: onnx (inside the e2e graph, on the GPU if any) or numpy (CPU).")] = "onnx",
    pool: Annotated[str, typer.Option(help="none: one row per 0.96 s example; mean: one row per input file.")] = "none",
    on_error: Annotated[Optional[str], typer.Option(help="fail (default): stop at the first bad input (every input's header is checked before work); skip: embed the others, list failures, exit 1. --ray always skips.")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="CSV table, one row per output row; its columns lead the CSV/Parquet output (the seed's wavfile_df.csv).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a killed run of the same job from its last committed chunk.")] = False,
    workers: Annotated[Optional[int], typer.Option(callback=options.count(0, options.MAX_PROCESSES), help="Audio decoding processes (default: one per core but one, at least 1; 0: decode in-process). They write decoded audio into shared memory.")] = None,
    processes: Annotated[Optional[int], typer.Option(callback=options.count(1, options.MAX_PROCESSES), help="Device processes, each with its own share of the inputs, its own sessions and decoding; this process merges and writes (default: one per GPU when several are used; with one device, none: the job runs in this process). On the CPU, N splits the cores among N processes.")] = None,
    commit_every: Annotated[Optional[float], typer.Option(callback=options.seconds(zero_allowed=True), help="Seconds between commits of finished rows (what --resume keeps; 0: after every batch). Default: 2.")] = None,
    provider: Annotated[str, typer.Option(help="On GPUs: cuda (default) or tensorrt (needs TensorRT's own libraries; engine cache in ~/.cache/vggish-rt/tensorrt).")] = "cuda",
    ray: Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster (needs the vggish-rt\\[ray] extra): the one in $RAY_ADDRESS or --ray-address, else a local one. The output is the one a single machine writes (--out in any format); --metadata and --resume are single-machine options.")] = False,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address (HOST:PORT or ray://HOST:PORT); implies --ray.")] = None,
    ray_actors: Annotated[Optional[int], typer.Option(callback=options.count(1, options.MAX_PROCESSES), help="With --ray: embedding actors (default: one per GPU in the cluster, else 2).")] = None,
) -> None:
    """Embed audio or spectrograms into one output file (on this machine, or with --ray on a Ray cluster).

    Writes to OUT.partial/ as it goes and renames the finished file into place;
    after a crash, the same command with --resume continues where it stopped.
    """
    from vggish_rt.engine.embedder import Embedder
    from vggish_rt.engine.inputs import expand_inputs
    from vggish_rt.engine.job import JobOptions, run_job
    from vggish_rt.engine.sources import ReadOptions

    sources = expand_inputs(inputs, _say)
    read = ReadOptions(_hop(hop), pad_short, pad_tail, resampler, dat_dtype)
    if ray or ray_address:
        _embed_on_ray(sources, out, model, precision, batch_size, relu, frontend, postprocess, pool, read,
                      ray_address, ray_actors,
                      unsupported={"--metadata": metadata is not None, "--resume": resume,
                                   "--device": device != "auto", "--provider": provider != "cuda",
                                   "--on-error fail": on_error == "fail", "--workers": workers is not None,
                                   "--processes": processes is not None, "--commit-every": commit_every is not None})
        return
    embedder = Embedder(model, device=device, precision=precision, batch_size=batch_size, relu=relu, frontend=frontend,
                        provider=provider)
    embedder.warn_if_demo()
    options = JobOptions(read, _postprocessor(embedder.model, postprocess, out), pool, on_error or "fail", metadata,
                         workers, processes, commit_seconds=2.0 if commit_every is None else commit_every)
    with progress_bar("embedding") as bar:
        result = run_job(sources, out, embedder, options, bar, resume=resume, say=_say, expect=bar.expect)
    _summary(result, len(sources), out, f"{embedder.placement}, {precision}")


def _summary(result: "JobReport", inputs: int, out: Path, where: str) -> None:
    """A job's end on the terminal: short and failed inputs on stderr, then the one line of what was written;
    exit 1 when inputs failed."""
    for path in result.short_inputs:
        print(f"note: {path}: shorter than 0.975 s, no example (use --pad-short to keep it)", file=sys.stderr)
    for _, reason in result.failures:
        print(f"failed: {reason}", file=sys.stderr)
    if result.failures:
        from vggish_rt.engine.job import failures_path

        print(f"{len(result.failures)} input(s) failed; listed in {failures_path(out)}", file=sys.stderr)
    print(f"wrote {result.rows} embeddings from {result.inputs_done} of {inputs} inputs to {out} ({where})"
          f"{_accounted(result)}")
    if result.failures:
        raise typer.Exit(1)


def _postprocessor(model: ModelDirectory, postprocess: bool, out: Path) -> Postprocessor | None:
    """The model's PCA post-processor with --postprocess, or for a .tfrecord (which holds quantized embeddings)."""
    return model.postprocessor() if postprocess or out.suffix.lower() == ".tfrecord" else None


def _accounted(result: JobReport) -> str:
    """The summary line's account of inputs that gave no row: every input is embedded, failed or too short."""
    parts = [f"{len(result.failures)} failed"] if result.failures else []
    parts += [f"{len(result.short_inputs)} too short"] if result.short_inputs else []
    return f"; {', '.join(parts)}" if parts else ""


def _embed_on_ray(sources: list[Path], out: Path, model: Optional[Path], precision: str, batch_size: Optional[int],
                  relu: bool, frontend: str, postprocess: bool, pool: str, windows: ReadOptions,
                  address: Optional[str], actors: Optional[int], unsupported: dict[str, bool]) -> None:
    """``embed --ray``: the same job through engine.ray_stage; failed inputs are listed, never fatal
    (as --on-error skip: one bad file must not stop a cluster's job)."""
    from vggish_rt.engine.errors import VggishError
    from vggish_rt.engine.modeldir import ModelDirectory
    from vggish_rt.engine.probe import probe_inputs

    refused = [name for name, given in unsupported.items() if given]
    if refused:
        raise VggishError(f"--ray does not support {', '.join(refused)} (Ray actors pick their own devices and "
                          "decode in their own tasks, failed inputs are listed as with --on-error skip, and the rows "
                          "are committed once, at the end; run without --ray for these)")
    try:
        from vggish_rt.engine.ray_stage import RayOptions, run_ray_job
    except ImportError as exc:
        raise VggishError(f"--ray needs Ray: pip install 'vggish-rt[ray]' ({exc})") from None
    directory = ModelDirectory(model)
    if not directory.pretrained:
        print(f"note: {directory.describe()}", file=sys.stderr)
    postprocessor = _postprocessor(directory, postprocess, out)
    options = {"model_dir": str(directory.path), "precision": precision, "batch_size": batch_size, "relu": relu,
               "frontend": frontend}
    with progress_bar("embedding on Ray") as bar:
        bar.expect(probe_inputs(sources, windows).examples)
        result = run_ray_job(sources, out, options, windows, RayOptions(address, actors), postprocessor, bar, pool=pool)
    _summary(result, len(sources), out, f"Ray, {precision}")


@app.command()
def features(
    inputs: InputsArgument,
    out: Annotated[Path, typer.Option("--out", "-o", callback=options.output_path, help="Output .npy: float32 [N,96,64] log-mel examples, with .index.csv beside it.")],
    hop: HopOption = 0.96,
    pad_short: PadShortOption = False,
    pad_tail: PadTailOption = False,
    resampler: ResamplerOption = "soxr",
) -> None:
    """Compute log-mel examples from audio with the reference frontend (NumPy)."""
    from vggish_rt.engine.features import write_features
    from vggish_rt.engine.inputs import expand_inputs

    from vggish_rt.engine.sources import ReadOptions

    count = write_features(expand_inputs(inputs, _say), out, ReadOptions(_hop(hop), pad_short, pad_tail, resampler))
    print(f"wrote {count} log-mel examples to {out}")


@app.command(name="postprocess")
def postprocess_command(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings .npy, float [N,128].", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", callback=options.output_path, help="Output .npy: uint8 [N,128].")],
    pca_params: Annotated[Optional[Path], typer.Option(help="PCA params .npz (default: the model directory's).")] = None,
    model: ModelOption = None,
) -> None:
    """PCA, whitening and 8-bit quantization exactly as the reference's Postprocessor."""
    from vggish_rt.engine.arrays import load_embeddings, save_npy_atomic
    from vggish_rt.engine.formats import refuse_overwriting_inputs
    from vggish_rt.engine.postprocess import Postprocessor

    refuse_overwriting_inputs([out], [embeddings, *([pca_params] if pca_params is not None else [])])

    if pca_params is not None:
        postprocessor = Postprocessor.from_file(pca_params)
    else:
        from vggish_rt.engine.modeldir import ModelDirectory

        directory = ModelDirectory(model)
        postprocessor = directory.postprocessor()
        if not directory.pretrained:
            print(f"note: PCA params from {directory.describe()}", file=sys.stderr)
    quantized = postprocessor.postprocess(load_embeddings(embeddings))
    save_npy_atomic(out, quantized)
    print(f"wrote {len(quantized)} quantized embeddings to {out}")


@app.command(name="fit-pca")
def fit_pca(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings .npy, float [N,128] (memory-mapped; any size).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", callback=options.output_path, help="Output PCA params .npz in the released layout.")],
) -> None:
    """Fit PCA with whitening on embeddings, in the layout of vggish_pca_params.npz."""
    from vggish_rt.engine.arrays import load_embeddings, write_bytes_atomic
    from vggish_rt.engine.formats import refuse_overwriting_inputs
    from vggish_rt.engine.postprocess import PcaFitter, pca_params_bytes

    refuse_overwriting_inputs([out], [embeddings])

    array = load_embeddings(embeddings)
    fitter = PcaFitter()
    for start in range(0, len(array), 65536):
        fitter.add(np.asarray(array[start : start + 65536]))
    write_bytes_atomic(out, pca_params_bytes(*fitter.params()))
    print(f"wrote PCA params fitted on {fitter.count} embeddings to {out}")


@app.command()
def bench(
    model: ModelOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, or cuda:0,1.")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8.")] = "fp32",
    batch_size: Annotated[Optional[int], typer.Option(callback=options.count(1, options.MAX_BATCH_SIZE), help="Examples per batch (default: 64 on CPU, 1024 on GPU).")] = None,
    seconds: Annotated[float, typer.Option(callback=options.seconds(), help="Keep repeating for at least this long (after at least 3 repeats).")] = 10.0,
    examples: Annotated[Optional[int], typer.Option(callback=options.count(1, 100 * options.MAX_BATCH_SIZE), help="Examples per repeat (default: 8 batches per device).")] = None,
    input_kind: Annotated[str, typer.Option("--input", help="examples (log-mel [N,96,64]) or windows (audio [N,15600] through the frontend).")] = "examples",
    frontend: Annotated[str, typer.Option(help="For --input windows: onnx (in the graph) or numpy.")] = "onnx",
    threads: Annotated[Optional[int], typer.Option(callback=options.count(1, options.MAX_PROCESSES), help="CPU threads (default: every core).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="End with one JSON line holding the results.")] = False,
) -> None:
    """Measure examples/s, host arrays in and embeddings back in host memory (medians of repeats)."""
    import json

    from vggish_rt.engine.bench import benchmark
    from vggish_rt.engine.embedder import Embedder
    from vggish_rt.engine.rowkind import WINDOWS

    if input_kind not in ("examples", "windows"):
        raise typer.BadParameter("--input must be examples or windows")
    embedder = Embedder(model, device=device, precision=precision, batch_size=batch_size, frontend=frontend,
                        threads=threads)
    embedder.warn_if_demo()
    if input_kind == "windows":
        embedder._require(WINDOWS)
    result = benchmark(embedder, seconds, input_kind, examples)
    print(f"{result['examples_per_s']:,.0f} examples/s  ({result['device']}, {result['precision']}, batch "
          f"{result['batch_size']}, {result['input']}; median of {result['repeats']} repeats of "
          f"{result['examples_per_repeat']} examples)")
    if json_output:
        print(json.dumps(result))
