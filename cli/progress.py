"""The CLI's progress bar: draws `training.progress` reports on stderr, from the first report of a long job on."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from omnidecide.cli.app import console
from omnidecide.training import progress


@contextmanager
def progress_bar() -> Iterator[None]:
    """Started lazily: commands that report nothing (serve, list, ...) never get a live display."""
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, transient=True)
    tasks: dict[str, int] = {}

    def show(title: str, what: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if title not in tasks:
            tasks[title] = bar.add_task(title, total=total)
        bar.update(tasks[title], description=f"{title}: {what}", completed=done, total=total)

    try:
        with progress.listening(show):
            yield
    finally:
        if tasks:
            bar.stop()
