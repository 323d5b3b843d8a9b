"""What a batch's rows are: the value that picks a batch's row shape, its model file and its session."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vggish_rt.engine import params


@dataclass(frozen=True, order=True)
class RowKind:
    """Log-mel ``examples`` (float32 [96, 64] a row), or audio ``windows`` at ``rate`` Hz: 16 kHz windows
    (float32 [15600] a row), or at another rate native rows that the model's front resamples
    (engine.resampling). A batch never mixes kinds (engine.pipeline). ``str()``: 'examples', 'windows',
    'windows@RATE'."""

    name: Literal["examples", "windows"]
    rate: int = params.SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.name not in ("examples", "windows") or (self.name == "examples" and self.rate != params.SAMPLE_RATE):
            raise ValueError(f"not a row kind: {self.name!r} at {self.rate} Hz")

    @property
    def audio(self) -> bool:
        """Rows of audio samples (windows or native rows), not log-mel examples."""
        return self.name == "windows"

    @property
    def native(self) -> bool:
        """Native rows: audio at another rate than 16 kHz, resampled in the graph."""
        return self.rate != params.SAMPLE_RATE

    def __str__(self) -> str:
        return f"windows@{self.rate}" if self.native else self.name


EXAMPLES = RowKind("examples")
WINDOWS = RowKind("windows")


def audio_rows(rate: int) -> RowKind:
    """The kind of audio rows at ``rate``: 16 kHz windows, else native rows."""
    return RowKind("windows", rate)
