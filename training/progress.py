"""Progress of long work, reported by training code and drawn by whoever listens (the CLI draws a bar).

Training stays free of UI: it opens `task(title, total)` and calls `step("what now")` as it goes. Without a
listener both are no-ops, so library use, tests and the service print nothing.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator

Listener = Callable[[str, str, int, int], None]  # (title, what is running now, steps done, total steps)

_listener: ContextVar[Listener | None] = ContextVar("progress_listener", default=None)
_current: ContextVar["_Task | None"] = ContextVar("progress_task", default=None)


@dataclass
class _Task:
    title: str
    total: int
    done: int = -1


@contextmanager
def task(title: str, total: int) -> Iterator[None]:
    """A unit of long work of `total` steps; each `step()` inside it starts the next one."""
    t = _Task(title, max(total, 1))
    token = _current.set(t)
    try:
        yield
        t.done = t.total
        _emit(t, "done")
    finally:
        _current.reset(token)


def step(what: str) -> None:
    """The previous step is finished; `what` runs now."""
    t = _current.get()
    if t is not None:
        t.done = min(t.done + 1, t.total)
        _emit(t, what)


def _emit(t: _Task, what: str) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(t.title, what, max(t.done, 0), t.total)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
