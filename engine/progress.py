"""A progress bar (examples/s, ETA) on stderr: the CLI's on a terminal (silence in pipes and logs), and
``Embedder.embed(..., progress=True)``'s."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


class Bar:
    """``bar(n)``: n more examples done; ``bar.expect(total)``: the total, once known (for the ETA)."""

    def __init__(self, advance: Callable[[int], None] = lambda _: None,
                 expect: Callable[[int], None] = lambda _: None) -> None:
        self._advance, self.expect = advance, expect

    def __call__(self, n: int) -> None:
        self._advance(n)


@contextlib.contextmanager
def progress_bar(label: str, show: bool | None = None) -> Iterator[Bar]:
    """Yield a :class:`Bar`; draws a rich progress bar on stderr when ``show`` (None: when it is a terminal)."""
    if not (sys.stderr.isatty() if show is None else show):
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed:,.0f} examples/s" if task.speed else "")

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(label, total=None)
        yield Bar(lambda n: progress.advance(task, n), lambda total: progress.update(task, total=max(total, 0)))
