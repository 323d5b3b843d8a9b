"""What users name on the command line, expanded into sources.

An INPUT is an audio file, a directory (every file in it, recursively, but
hidden ones), a ``@list.txt`` of paths (one a line; blank lines and ``#``
comments skipped), or a spectrogram array: ``.npy`` [N,96,64] of any float
dtype, or the seed notebook's raw ``.dat`` (little-endian float64, or float32
when asked, N x 96 x 64, no header). Spectrogram arrays are read a chunk at a
time, never whole.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import ArgumentError, VggishError, option

# Containers and codecs libsndfile does not read, decoded through FFmpeg's libraries (PyAV): AAC, ALAC,
# MP4/QuickTime, Matroska/WebM (Opus, Vorbis), Windows Media, AC-3, AMR, and the audio track of video files.
FFMPEG_SUFFIXES = frozenset({".m4a", ".m4b", ".mp4", ".aac", ".mov", ".3gp", ".webm", ".mkv", ".mka", ".wma",
                             ".wmv", ".avi", ".ac3", ".amr"})
# What libsndfile reads. A file with neither kind of suffix is tried with libsndfile, then with FFmpeg.
SNDFILE_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                              ".au", ".snd", ".caf", ".w64", ".rf64", ".voc", ".sf", ".htk", ".mat", ".pvf", ".xi", ".sd2"})
SPECTROGRAM_SUFFIXES = frozenset({".npy", ".dat"})
EXAMPLE_SHAPE = (params.NUM_FRAMES, params.NUM_BANDS)
DAT_DTYPES = ("float64", "float32")
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_npy_header(file: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an open ``.npy`` stream, reading its header only (no data, never
    unpickled); leaves the stream at the data. ValueError for a bad magic or an unsupported version."""
    version = np.lib.format.read_magic(file)
    if version not in _NPY_HEADER_READERS:
        raise ValueError(f".npy format version {version} is not supported")
    return _NPY_HEADER_READERS[version](file)


def peak_magnitude(values: np.ndarray) -> float:
    """max |value| of a float array in one pass: NaN if it holds a NaN, inf if an Inf, 0 when empty."""
    return float(np.abs(values).max(initial=0.0))


def printable(text: str) -> str:
    """``text`` (a path as Python decodes file names: bytes that are not UTF-8 as surrogates) as valid
    UTF-8 text. File names are bytes on POSIX: any name is embedded or reported, its bytes that are not
    UTF-8 written \\xNN in outputs (index, CSV, Parquet, failures) and messages."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_spectrogram(path: Path) -> bool:
    return path.suffix.lower() in SPECTROGRAM_SUFFIXES


def expand_inputs(items: list[str], say: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Expand INPUT arguments into files, in the order given (directories and glob patterns sorted; a pattern
    is expanded here when no file has its name, as when it was quoted; ``**`` matches any depth).

    A directory gives every file under it, whatever its name (a file no reader takes fails as an input,
    reported, never dropped), except hidden ones (a name starting with '.', or under such a directory:
    .DS_Store, .git/), which ``say`` counts. Raises VggishError for a missing path, an unreadable list, or a
    directory holding no file.
    """
    paths: list[Path] = []
    for item in items:
        if item.startswith("@"):
            listing = Path(item[1:])
            try:  # file names are bytes: a list may hold names that are not UTF-8
                lines = os.fsdecode(listing.read_bytes()).splitlines()
            except OSError as exc:
                raise VggishError(f"{listing}: cannot read the input list ({exc.strerror})") from None
            entries = [(number, line.strip()) for number, line in enumerate(lines, 1)
                       if line.strip() and not line.lstrip().startswith("#")]
            nested = next((number for number, entry in entries if entry.startswith("@")), None)
            if nested is not None:
                raise VggishError(f"{listing}: line {nested} names another list ({lines[nested - 1].strip()}); "
                                  "lists are not followed from lists: name its files here, or give both lists")
            paths.extend(expand_inputs([entry for _, entry in entries], say))
            continue
        path = Path(item)
        if not path.exists() and any(c in item for c in "*?["):  # a pattern the shell did not expand (quoted)
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise VggishError(f"{item}: no file matches this pattern")
            paths.extend(expand_inputs([os.path.join(".", m) if m.startswith("@") else m for m in matches], say))
            continue
        if path.is_dir():
            found, hidden = _files_under(path)
            if hidden:
                say(f"note: {printable(str(path))}: {hidden} hidden file(s) left out (names starting with '.', "
                    "such as .DS_Store; name them to embed them)")
            if not found:
                raise VggishError(f"{path}: directory holds no files")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        elif path.exists():
            raise VggishError(f"{path}: not a regular file")
        else:
            raise VggishError(f"{path}: no such file or directory")
    if not paths:
        raise VggishError("no inputs given")
    return paths


def _files_under(directory: Path) -> tuple[list[Path], int]:
    """The files under ``directory`` (symbolic links to files included; linked directories not entered, as
    ``Path.rglob`` does), sorted as Paths sort (by their parts), but hidden ones (any part of the name below
    ``directory`` starting with '.'), which are only counted.

    One ``scandir`` per directory, its entries' types from the directory itself: 10,000 files in 0.05 s
    here, where ``rglob`` and a ``stat`` per file took 0.25 s.
    """
    found: list[tuple[str, ...]] = []
    hidden = 0
    pending: list[tuple[str, ...]] = [()]
    while pending:
        parts = pending.pop()
        with os.scandir(os.path.join(directory, *parts)) as entries:
            for entry in entries:
                if entry.is_dir() and not entry.is_symlink():
                    pending.append((*parts, entry.name))
                elif entry.is_file():
                    if entry.name.startswith(".") or any(part.startswith(".") for part in parts):
                        hidden += 1
                    else:
                        found.append((*parts, entry.name))
    found.sort()
    return [directory.joinpath(*parts) for parts in found], hidden


def refuse_float32_dat(path: Path, first_rows: np.ndarray) -> None:
    """Refuse a ``.dat`` whose first rows (float64, as read) are float32 numbers read two at a time: then the
    low half of each float64 (the first float32 of a pair) is a float32 of a log-mel's magnitude, where a real
    float64's low half is random bits (12.8% of them fall in that range, measured on random float64
    log-mel-like values). Read as float64, such a file makes garbage rows."""
    if Path(path).suffix.lower() != ".dat" or first_rows.dtype != np.float64 or len(first_rows) == 0:
        return
    magnitude = np.abs(first_rows[:4].reshape(-1).view(np.float32)[0::2])
    if float(np.mean((magnitude > 1e-6) & (magnitude < 1e4))) > 0.9:
        raise VggishError(f"{path}: holds float32 values, not the float64 a .dat holds (read as float64 they "
                          f"make garbage rows): give {option('dat_dtype', 'float32')}, or save it as a .npy, which records its dtype")


class SpectrogramFile:
    """A spectrogram file's rows, read a chunk at a time.

    Reads use ``os.pread`` into fresh arrays rather than a memory map: pages of
    a memory map stay counted in the process's resident memory once touched, so
    streaming a 5 GB file through one would grow to 5 GB resident.
    """

    def __init__(self, path: Path, dtype: np.dtype, count: int, offset: int) -> None:
        self.path, self.dtype, self.count, self.offset = path, np.dtype(dtype), count, offset
        self.row_bytes = self.dtype.itemsize * params.NUM_FRAMES * params.NUM_BANDS

    def __len__(self) -> int:
        return self.count

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as an array [n, 96, 64] of the file's dtype."""
        stop = min(stop, self.count)
        n = max(0, stop - start)
        out = np.empty((n, *EXAMPLE_SHAPE), self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        with open(self.path, "rb") as f:
            got = os.preadv(f.fileno(), [view], self.offset + start * self.row_bytes) if n else 0
        if got != n * self.row_bytes:
            raise VggishError(f"{self.path}: file shorter than its header says (truncated at row {start + got // self.row_bytes})")
        return out


def open_spectrograms(path: Path, dat_dtype: str = "float64") -> SpectrogramFile:
    """Open a spectrogram file: ``.npy`` [N,96,64] of any float dtype (never
    unpickled), or a raw little-endian ``.dat`` of ``dat_dtype`` ('float64', the
    seed's, or 'float32') whose size is a multiple of 96 x 64 x its item size.
    Checks the layout; reads nothing else yet.
    """
    path = Path(path)
    if path.suffix.lower() == ".dat":
        if dat_dtype not in DAT_DTYPES:
            raise ArgumentError("dat_dtype", dat_dtype, f"expected one of {', '.join(DAT_DTYPES)}")
        dtype = np.dtype(dat_dtype).newbyteorder("<")
        example_bytes = params.NUM_FRAMES * params.NUM_BANDS * dtype.itemsize
        size = path.stat().st_size
        if size == 0 or size % example_bytes:
            raise VggishError(f"{path}: size {size} bytes is not a positive multiple of 96 x 64 x {dtype.itemsize} "
                              f"(a raw {dat_dtype} spectrogram .dat)")
        return SpectrogramFile(path, dtype, size // example_bytes, 0)
    try:
        with open(path, "rb") as f:
            shape, fortran_order, dtype = read_npy_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise VggishError(f"{path}: not a readable .npy file ({exc})") from None
    if dtype.hasobject:
        raise VggishError(f"{path}: refused, holds Python objects (pickled data)")
    if dtype.kind != "f":
        raise VggishError(f"{path}: dtype {dtype} is not floating point")
    if len(shape) != 3 or tuple(shape[1:]) != EXAMPLE_SHAPE or shape[0] < 0:
        raise VggishError(f"{path}: shape {list(shape)}, expected [N, 96, 64]")
    if fortran_order:
        raise VggishError(f"{path}: Fortran-ordered arrays are not supported; save it C-ordered")
    spectrograms = SpectrogramFile(path, dtype, shape[0], offset)
    if path.stat().st_size < offset + len(spectrograms) * spectrograms.row_bytes:
        raise VggishError(f"{path}: truncated: the header declares {shape[0]} rows, the file holds fewer")
    return spectrograms
