"""The ``vggish-rt`` command line: parses, calls ``engine``/``export``, reports.

Exit codes: 0 all done; 1 finished but some inputs failed (listed in the
report); 2 bad usage or unusable input. Errors are one line on stderr starting
with ``error:``; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors

from vggish_rt.engine.errors import DemoModelWarning, Interrupted, Terminated, VggishError, name_options_as_flags

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fast, faithful VGGish audio embeddings: export the TF checkpoint to ONNX, "
                       "embed audio or spectrograms on GPUs or CPUs, post-process like the reference.")
_state = {"debug": False}

ModelOption = Annotated[Optional[Path], typer.Option("--model", help="Model directory (default: $VGGISH_RT_MODEL, else models/vggish).")]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"vggish-rt {version('vggish-rt')}")
        except PackageNotFoundError:  # run from a source tree that is not installed
            print("vggish-rt (not installed: version unknown)")
        raise typer.Exit(0)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
          version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    _state["debug"] = debug


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@app.command()
def export(
    checkpoint: Annotated[Optional[Path], typer.Option(help="VGGish checkpoint: the released V1 vggish_model.ckpt, or a V2 prefix.")] = None,
    pca_params: Annotated[Optional[Path], typer.Option(help="PCA params .npz to copy into the model (vggish_pca_params.npz).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write (replaced atomically).")] = Path("models/vggish"),
    demo: Annotated[bool, typer.Option(help="Export the seeded demo model instead (random weights, NOT pretrained).")] = False,
    relu_output: Annotated[bool, typer.Option(help="Apply ReLU to the output, as the pre-2020 reference did.")] = False,
) -> None:
    """Export a checkpoint to an ONNX model directory, checked against TensorFlow (needs the \\[export] extra).

    Reproducible: the same checkpoint gives byte-identical files.
    """
    if demo == (checkpoint is not None):
        raise VggishError("give exactly one of --checkpoint CKPT and --demo")
    if demo and pca_params is not None:
        raise VggishError("--pca-params goes with --checkpoint; --demo fits its own demo PCA params")
    try:
        from vggish_rt.export.exporter import export_demo, export_model
    except ImportError as exc:
        raise VggishError(f"export needs TensorFlow, tf_slim and tf2onnx: pip install 'vggish-rt[export]' ({exc})") from None
    if demo:
        manifest = export_demo(out, relu_output=relu_output, report=_say)
    else:
        manifest = export_model(checkpoint, out, pca_params=pca_params, relu_output=relu_output, report=_say)
    parity = manifest["parity"]
    worst = max(case["relative"] for case in parity["fp32_vs_tensorflow"].values())
    kind = "pretrained" if manifest["pretrained"] else "DEMO model, NOT pretrained"
    print(f"wrote {out} ({kind}): fp32 vs TensorFlow relative error {worst:.2e}, "
          f"fp16 vs fp32 relative error {parity['fp16_vs_fp32']['relative']:.2e}")


@app.command()
def doctor(model: ModelOption = None) -> None:
    """Versions, execution providers, GPUs, and the model directory's state (checksums verified)."""
    from vggish_rt.cli.doctor import report

    ok = report(model)
    raise typer.Exit(0 if ok else 1)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every error into one ``error:`` line."""
    command = typer.main.get_command(app)
    name_options_as_flags()  # the engine's messages name its options as this command line does
    signal.signal(signal.SIGTERM, _terminate)
    warnings.simplefilter("ignore", DemoModelWarning)  # the commands print their own note on the demo model
    try:
        code = command.main(args=argv, prog_name="vggish-rt", standalone_mode=False)
    except Interrupted as exc:  # a job's own word on what it kept
        _fail(str(exc), exc.exit_code)
    except VggishError as exc:
        _fail(str(exc), 2)
    except click_errors.NoArgsIsHelpError as exc:  # bare `vggish-rt`: help, not an error
        print(exc.ctx.get_help() if exc.ctx else "", file=sys.stderr)
        sys.exit(2)
    except click_errors.UsageError as exc:
        _fail(f"{exc.format_message()} (see `{exc.ctx.command_path if exc.ctx else 'vggish-rt'} --help`)", 2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("interrupted", 130)
    except KeyboardInterrupt as exc:
        _fail("terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted", 143 if isinstance(exc, Terminated) else 130)
    except MemoryError:
        _fail("out of memory (try a smaller --batch-size)", 2)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, traceback with --debug
        _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 2)
    sys.exit(code if isinstance(code, int) else 0)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _fail(message: str, code: int) -> None:
    if _state["debug"]:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


# Commands that live in their own modules register themselves on `app`.
from vggish_rt.cli import embed as _embed  # noqa: E402,F401
