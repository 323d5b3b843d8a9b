"""``vggish-rt features``: audio -> log-mel examples on disk, with the reference frontend."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.formats import check_output, finish, index_path, refuse_overwriting_inputs
from vggish_rt.engine.errors import Interrupted
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.inputs import printable
from vggish_rt.engine.resampling import refuse_in_graph
from vggish_rt.engine.sources import ReadOptions, audio_blocks
from vggish_rt.engine.store import PartialStore, Rows, store_files


def write_features(sources: list[Path], out: Path, options: ReadOptions = ReadOptions()) -> int:
    """Write float32 [N,96,64] examples to ``out`` (.npy) and ``out.index.csv``; returns N."""
    refuse_in_graph(options.resampler, "the NumPy frontend of `features`")
    check_output(Path(out), formats=(".npy",))
    refuse_overwriting_inputs([Path(out), index_path(Path(out)), *store_files(Path(out))], sources)
    store = PartialStore(Path(out), {"features": True}, (params.NUM_FRAMES, params.NUM_BANDS), np.float32)
    store.create()
    try:
        for source in sources:
            for block in audio_blocks(source, options):
                store.append(Rows([printable(str(source))] * len(block), block.index, block.start_s, block.end_s,
                                  log_mel_examples(block.windows)))
        store.commit({})
        finish(store)
    except KeyboardInterrupt as interrupt:
        raise Interrupted.from_signal(interrupt, "nothing was kept (features are not resumable)") from None
    finally:
        store.discard()
    return store.rows
