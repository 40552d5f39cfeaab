"""Progress: plain log lines off a terminal, a rich bar on one."""

from __future__ import annotations

import io

from fdbsync.cli.progress import BarProgress, LogProgress, MigrationProgress, make_progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_are_throttled_with_rate_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    with LogProgress(out, interval=1.0, clock=clock) as progress:
        progress.start("load", total=1000, unit="keys")
        progress.update("load", 100)  # within the first second: no line
        clock.now += 1.0
        progress.update("load", 250)
        clock.now += 0.5
        progress.update("load", 300)  # throttled
        clock.now += 0.5
        progress.update("load", 500)
        progress.start("dump", unit="keys")  # no total: no ETA
        clock.now += 2.0
        progress.update("dump", 40)
    assert out.getvalue().splitlines() == [
        "load: 250/1,000 keys, 250 keys/s, ETA 3 s",
        "load: 500/1,000 keys, 250 keys/s, ETA 2 s",
        "dump: 40 keys, 20 keys/s",
        "load: done, 500 keys in 4.0 s",
        "dump: done, 40 keys in 2.0 s",
    ]


def test_a_bar_on_a_terminal() -> None:
    out = io.StringIO()
    progress = make_progress(out, terminal=True)
    assert isinstance(progress, BarProgress)
    with progress:
        progress.start("load", total=10, unit="keys")
        progress.update("load", 4)
        progress.update("load", 10)
    shown = out.getvalue()
    assert "load" in shown and "10/10" in shown and "keys/s" in shown and "ETA" in shown
    assert isinstance(make_progress(io.StringIO()), LogProgress)  # not a terminal


def test_migration_progress_makes_one_task_per_build() -> None:
    out, clock = io.StringIO(), Clock()
    log = LogProgress(out, clock=clock)
    callback = MigrationProgress(log, "acme: ")
    callback.names = {"email": "build people.email"}
    callback.totals = {"email": 3}
    callback("email", 2)
    callback("email", 3)
    callback("email", 1)  # counting from the start again: another model's index "email"
    callback("Person data", 5)
    callback.close()
    assert out.getvalue().splitlines() == [
        "acme: build people.email: done, 3 records in 0.0 s",
        "acme: build people.email: done, 1 records in 0.0 s",
        "acme: Person data: done, 5 records in 0.0 s",
    ]
