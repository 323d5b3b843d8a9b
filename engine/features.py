"""``vggish-rt features``: audio -> log-mel examples on disk, with the reference frontend."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.audio import load_audio
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.windows import Hop, cut_windows, window_times
from vggish_rt.engine.writers import EmbeddingWriter, Rows


def write_features(sources: list[Path], out: Path, hop: Hop, pad_short: bool = False, pad_tail: bool = False,
                   resampler: str = "soxr") -> int:
    """Write float32 [N,96,64] examples to ``out`` (.npy) and ``out.index.csv``; returns N."""
    writer = EmbeddingWriter(out, row_shape=(params.NUM_FRAMES, params.NUM_BANDS), formats=(".npy",))
    try:
        for source in sources:
            windows = cut_windows(load_audio(source, resampler), hop, pad_short, pad_tail)
            start_s, end_s = window_times(len(windows), hop)
            writer.write(Rows([str(source)] * len(windows), np.arange(len(windows)), start_s, end_s,
                              log_mel_examples(windows)))
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return writer.count
