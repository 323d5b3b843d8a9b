"""The one exception type users see: its message is the whole story, one line.

Messages name arguments as the caller names them (:func:`option`): Python's
keyword arguments (``on_error='skip'``) by default, the command line's options
(``--on-error skip``) once the CLI has said so (:func:`name_options_as_flags`,
which its worker processes inherit through the environment).
"""
from __future__ import annotations

import os

_STYLE = "VGGISH_RT_ARGUMENT_NAMES"  # "flags" in the CLI's process and its children
_UNSET = object()


def name_options_as_flags() -> None:
    """From now on, in this process and the processes it starts, messages name arguments as CLI options."""
    os.environ[_STYLE] = "flags"


def option(name: str, value: object = _UNSET, flag: str | None = None) -> str:
    """Argument ``name`` (with ``value`` when given) as the caller names it: ``name='value'`` from Python,
    ``--name value`` on the command line (``flag``: the option's name where it differs from the argument's;
    ``True`` for a switch: ``resume=True`` / ``--resume``)."""
    if os.environ.get(_STYLE) == "flags":
        text = f"--{(flag or name).replace('_', '-')}"
        return text if value is _UNSET or value is True else f"{text} {value}"
    if value is _UNSET:
        return name
    return f"{name}={str(value)!r}" if isinstance(value, os.PathLike) else f"{name}={value!r}"


class VggishError(Exception):
    """A problem with the user's input, model or environment (exit code 2).

    The message names the file or value at fault and the cause; the CLI prints
    it as ``error: <message>`` with no traceback.
    """


class ArgumentError(VggishError):
    """A bad argument value, named as the caller named it (:func:`option`): ``precision='int4': expected one
    of ...`` from Python, ``--precision int4: expected one of ...`` on the command line."""

    def __init__(self, name: str, value: object, why: str, flag: str | None = None) -> None:
        self.name, self.value, self.why = name, value, why
        super().__init__(f"{option(name, value, flag)}: {why}")


class DeviceFailure(VggishError):
    """onnxruntime failed running a batch on a device (a CUDA or cuDNN error, not an exhausted allocator):
    the message names the device, the input and example the batch starts at, and onnxruntime's words. A
    job's store stays resumable: the job adds what it kept and how to go on. ``number`` and ``example``:
    where the failed batch starts (its first row's number in the run: a job's input, or a device process's
    unit; and its example index), None where unknown."""

    def __init__(self, message: str, number: int | None = None, example: int | None = None) -> None:
        super().__init__(message)
        self.number, self.example = number, example


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM (the CLI installs the handler), so a
    terminated job unwinds as an interrupted one does: its store closed, its
    workers gone, one line said."""


class Interrupted(VggishError):
    """A job stopped by Ctrl-C (exit code 130) or SIGTERM (143); the message says
    what was kept and how to go on."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @classmethod
    def from_signal(cls, interrupt: KeyboardInterrupt, what_was_kept: str) -> "Interrupted":
        if isinstance(interrupt, Terminated):
            return cls(f"terminated (SIGTERM); {what_was_kept}", 143)
        return cls(f"interrupted; {what_was_kept}", 130)


class DemoModelWarning(UserWarning):
    """An Embedder was made on the seeded demo model: its embeddings carry no meaning. The CLI says so in its
    own note and ignores this warning."""
