"""Live displays of long work, on stderr: a spinner with a sentence, and a run's progress bar.

On a terminal they redraw in place (rich); in a log (not a terminal) the sentence is printed
once and the bar's last state once, so a CI log says what happened without hundreds of frames.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from articlegen.runs import RunProgress

__all__ = ["follow", "working"]

# How often the bar reads the run's progress; rich redraws at its own pace.
_POLL_SECONDS = 0.2


@contextmanager
def working(sentence: str, *, log: bool = False) -> Iterator[None]:
    """A spinner and `sentence` while the block runs; in a log, the sentence once if `log`
    (for a wait long enough to look like a hang there), else nothing."""
    console = Console(stderr=True)
    if not console.is_terminal:
        if log:
            click.echo(sentence, err=True)
        yield
        return
    with console.status(sentence):
        yield


def follow(progress: RunProgress, label: str, done: threading.Event) -> None:
    """Draw `progress` as `label ━━━━ 3/32 articles · 41 tokens/s · ETA 1:05` until `done`."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[line]}"),
    )
    with Progress(*columns, console=Console(stderr=True), auto_refresh=True) as bar:
        task = bar.add_task(label, total=None, line=f"{progress.phase}…")
        while True:
            stop = done.wait(_POLL_SECONDS)
            now = progress.snapshot()
            if now.phase.startswith("stopping"):  # Ctrl-C: what happens now, not the count
                bar.update(task, line=now.phase)
            elif now.total:
                completed = now.fraction * now.total
                bar.update(task, total=now.total, completed=completed, line=now.line())
            else:
                bar.update(task, line=f"{now.phase}…")
            if stop:
                return
