"""``vggish-rt features``: audio -> log-mel examples on disk, with the reference frontend."""
from __future__ import annotations

from pathlib import Path

from vggish_rt.engine import params
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.sources import WindowOptions, audio_blocks
from vggish_rt.engine.writers import EmbeddingWriter, Rows


def write_features(sources: list[Path], out: Path, options: WindowOptions = WindowOptions()) -> int:
    """Write float32 [N,96,64] examples to ``out`` (.npy) and ``out.index.csv``; returns N."""
    writer = EmbeddingWriter(out, row_shape=(params.NUM_FRAMES, params.NUM_BANDS), formats=(".npy",))
    try:
        for source in sources:
            for block in audio_blocks(source, options):
                writer.write(Rows([str(source)] * len(block), block.index, block.start_s, block.end_s,
                                  log_mel_examples(block.windows)))
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return writer.count
