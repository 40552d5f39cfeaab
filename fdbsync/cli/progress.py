"""Progress of long jobs (index builds, data migrations, dump, load): a rich bar with records
done, rate and ETA on a terminal, and a plain log line at most every second otherwise (CI
logs, pipes), so both are readable."""

from __future__ import annotations

import abc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

__all__ = ["BarProgress", "LogProgress", "MigrationProgress", "Progress", "make_progress"]


class Progress(abc.ABC):
    """Tasks, each counting things done (toward a total, when one is known)."""

    @abc.abstractmethod
    def start(self, label: str, *, total: int | None = None, unit: str = "records") -> None: ...

    @abc.abstractmethod
    def update(self, label: str, done: int) -> None:
        """`done` is the count so far (not an increment)."""

    @abc.abstractmethod
    def finish(self, label: str) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Finish what is still open and stop drawing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        speed = task.finished_speed or task.speed
        if speed is None and task.finished and task.elapsed:
            speed = task.completed / task.elapsed
        shown = "?" if speed is None else f"{speed:,.0f}"
        return Text(f"{shown} {unit}/s", style="progress.data.speed")


class BarProgress(Progress):
    """A rich progress display (for a terminal). It draws while a task is open and stops when
    none is, so lines printed between tasks do not cut through it."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._display: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}

    def _new_display(self) -> RichProgress:
        return RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self._console,
        )

    def start(self, label: str, *, total: int | None = None, unit: str = "records") -> None:
        if self._display is None:
            self._display = self._new_display()
            self._display.start()
        self._tasks[label] = self._display.add_task(label, total=total, unit=unit)

    def update(self, label: str, done: int) -> None:
        assert self._display is not None
        task_id = self._tasks[label]
        total = self._display.tasks[task_id].total
        if total is not None and done > total:  # the estimate was low: the total is unknown
            self._display.update(task_id, total=None)
        self._display.update(task_id, completed=done)

    def finish(self, label: str) -> None:
        task_id = self._tasks.pop(label, None)
        if task_id is None or self._display is None:
            return
        done = self._display.tasks[task_id].completed
        self._display.update(task_id, total=done, completed=done)
        self._display.stop_task(task_id)
        if not self._tasks:
            self._display.stop()  # the last frame stays on the screen
            self._display = None

    def close(self) -> None:
        for label in list(self._tasks):
            self.finish(label)


@dataclass
class _Logged:
    total: int | None
    unit: str
    started: float
    done: int = 0
    last_line: float = 0.0

    def __post_init__(self) -> None:
        self.last_line = self.started  # the first line after one interval: short jobs say "done"


class LogProgress(Progress):
    """Plain lines such as `load: 3,000/10,000 keys, 2,950 keys/s, ETA 2 s`, at most one per
    task every `interval` seconds (the first after one interval), and one when it finishes."""

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream, self._interval, self._clock = stream, interval, clock
        self._tasks: dict[str, _Logged] = {}

    def _print(self, line: str) -> None:
        print(line, file=self._stream, flush=True)

    def start(self, label: str, *, total: int | None = None, unit: str = "records") -> None:
        self._tasks[label] = _Logged(total, unit, self._clock())

    def update(self, label: str, done: int) -> None:
        task = self._tasks[label]
        task.done = done
        if task.total is not None and done > task.total:
            task.total = None
        now = self._clock()
        if now - task.last_line < self._interval:
            return
        task.last_line = now
        elapsed = now - task.started
        rate = done / elapsed if elapsed > 0 else None
        count = f"{done:,}" if task.total is None else f"{done:,}/{task.total:,}"
        line = f"{label}: {count} {task.unit}"
        if rate:
            line += f", {rate:,.0f} {task.unit}/s"
            if task.total is not None:
                line += f", ETA {(task.total - done) / rate:,.0f} s"
        self._print(line)

    def finish(self, label: str) -> None:
        task = self._tasks.pop(label, None)
        if task is not None:
            elapsed = self._clock() - task.started
            self._print(f"{label}: done, {task.done:,} {task.unit} in {elapsed:.1f} s")

    def close(self) -> None:
        for label in list(self._tasks):
            self.finish(label)


def make_progress(stream: TextIO | None = None, *, terminal: bool | None = None) -> Progress:
    """A bar when `stream` (default stderr) is a terminal, log lines otherwise."""
    stream = sys.stderr if stream is None else stream
    if terminal is None:
        terminal = stream.isatty()
    if terminal:
        return BarProgress(Console(file=stream, force_terminal=True))
    return LogProgress(stream)


class MigrationProgress:
    """Migrator's `progress(name, done)` callback, shown as one task per index build or data
    migration (`totals` gives the expected record count of those it knows)."""

    def __init__(self, progress: Progress, prefix: str = "") -> None:
        self.progress, self.prefix = progress, prefix
        #: The expected record count and the shown name of a progress name, where known.
        self.totals: dict[str, int | None] = {}
        self.names: dict[str, str] = {}
        self._current: str | None = None
        self._done = 0

    def __call__(self, name: str, done: int) -> None:
        label = f"{self.prefix}{self.names.get(name, name)}"
        if label != self._current or done < self._done:  # a new build (maybe of another model)
            self.close()
            self.progress.start(label, total=self.totals.get(name))
            self._current = label
        self._done = done
        self.progress.update(label, done)

    def close(self) -> None:
        """The current task is over."""
        if self._current is not None:
            self.progress.finish(self._current)
            self._current, self._done = None, 0
