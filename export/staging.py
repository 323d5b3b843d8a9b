"""Writing a model directory atomically: all or nothing.

Files are written into a hidden staging directory beside the target and the
staging directory is renamed into place only when complete, so a crash, a
refused parity check or a full disk never leaves a half model directory.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.manifest import MANIFEST_NAME


def check_target(out: Path) -> None:
    """Refuse a target that exists and is not a model directory (never clobber user files)."""
    if out.exists() and not out.is_dir():
        raise VggishError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise VggishError(f"{out}: exists, is not empty and is not a model directory; refusing to replace it")
    ancestor = next(p for p in [out.parent, *out.parent.parents] if p.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise VggishError(f"{out}: cannot write the model directory here ({ancestor} is not a writable directory)")


@contextlib.contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``out`` atomically.

    Parent directories that had to be created are removed again on failure.
    """
    out = Path(os.path.abspath(out))
    check_target(out)
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        _remove_created(created)
        raise VggishError(f"{out}: cannot write the model directory here ({exc.strerror})") from None
    try:
        yield stage
        _publish(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_created(created)
        raise


def _publish(stage: Path, out: Path) -> None:
    stage.chmod(0o755)
    if not out.exists():
        os.rename(stage, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / "previous")
    try:
        os.rename(stage, out)
    except OSError:
        os.rename(old / "previous", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _remove_created(created: list[Path]) -> None:
    for path in created:  # deepest first
        with contextlib.suppress(OSError):
            path.rmdir()
