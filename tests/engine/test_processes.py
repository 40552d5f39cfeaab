"""Several OS processes on one engine file: visibility, conflicts, versionstamps, watches,
durability under SIGKILL and racing startup.

Each child runs tests/engine/_worker.py and is driven over stdin/stdout lines; every wait on a
child has a timeout, and every child is killed and reaped when its test ends.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from fdbsync.engine import Engine, Transaction, create_engine, pack, unpack

WORKER = Path(__file__).with_name("_worker.py")
#: Seconds to wait for any one reply line (a healthy reply takes milliseconds).
REPLY_TIMEOUT = 20.0
#: Seconds to wait for a watch that should fire.
WATCH_TIMEOUT = 10.0

pytestmark = pytest.mark.timeout(90)


class Child:
    """One worker process and its stdout lines."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, stderr: Path) -> None:
        self.proc = proc
        self.name = name
        self.stderr = stderr

    def send(self, *words: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join(str(w) for w in words) + "\n").encode())

    async def line(self, within: float = REPLY_TIMEOUT) -> str | None:
        """The next complete line, or None at end of output (a partial last line is dropped)."""
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), within)
        except TimeoutError:
            self.fail(f"no line within {within} s")
        if not raw.endswith(b"\n"):
            return None
        return raw.decode().rstrip("\n")

    async def expect(self, *prefix: object, within: float = REPLY_TIMEOUT) -> list[str]:
        """The next line, which must start with the words `prefix`; returns the rest."""
        text = await self.line(within)
        if text is None:
            self.fail(f"exited (code {self.proc.returncode}) while {prefix} was expected")
        words = text.split()
        want = [str(p) for p in prefix]
        if words[: len(want)] != want:
            self.fail(f"expected {' '.join(want)!r}, got {text!r}")
        return words[len(want) :]

    async def request(self, *command: object, reply: str) -> list[str]:
        self.send(*command)
        return await self.expect(reply)

    def fail(self, message: str) -> Any:
        try:
            errors = self.stderr.read_text()[-3000:]
        except OSError:
            errors = ""
        pytest.fail(f"child {self.name}: {message}\n--- its stderr ---\n{errors}")

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


@asynccontextmanager
async def children(count: int, tmp_path: Path, tag: str = "w") -> AsyncIterator[list[Child]]:
    """Start `count` workers, wait for each to be ready, and always kill and reap them."""
    started: list[Child] = []
    try:
        for index in range(count):
            name = f"{tag}{index}"
            stderr = tmp_path / f"{name}.stderr"
            with stderr.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-u",
                    str(WORKER),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
            started.append(Child(proc, name, stderr))
        for child in started:
            await child.expect("ready")
        yield started
    finally:
        for child in started:
            await child.kill()


async def create_file(url: str) -> None:
    """Create the engine's file before the children open it: only the racing-startup test
    races its creation."""
    async with create_engine(url):
        pass


async def open_all(kids: list[Child], url: str) -> None:
    for child in kids:
        child.send("open", url)
    for child in kids:
        await child.expect("opened")


async def read_all(engine: Engine, begin: bytes, end: bytes) -> list[tuple[bytes, bytes]]:
    async def read(tr: Transaction) -> list[tuple[bytes, bytes]]:
        return [(kv.key, kv.value) async for kv in tr.get_range(begin, end)]

    return await engine.transact(read, timeout=REPLY_TIMEOUT)


async def write(engine: Engine, key: bytes, value: bytes) -> None:
    async def put(tr: Transaction) -> None:
        tr.set(key, value)

    await engine.transact(put, timeout=REPLY_TIMEOUT)


# -- 1. visibility and conflicts ----------------------------------------------------------------


async def test_increments_from_two_processes_add_up_and_conflict(
    engine_url: str, tmp_path: Path
) -> None:
    n = 400
    key = pack(("counter",))
    async with children(2, tmp_path) as kids:
        async with create_engine(engine_url) as engine:
            await write(engine, key, b"0")
        await open_all(kids, engine_url)
        for child in kids:
            child.send("incr", key.hex(), n)
        retries = [int((await child.expect("incremented"))[0]) for child in kids]
        # Each child sees the other's increments: a lost update would leave less than 2n.
        for child in kids:
            assert await child.request("get", key.hex(), reply="value") == [
                str(2 * n).encode().hex()
            ]
    async with create_engine(engine_url) as engine:
        tr = engine.create_transaction()
        assert await tr.get(key) == str(2 * n).encode()
    # Each child increments one at a time, so every retry is a conflict with the other process.
    assert sum(retries) > 0, f"no conflicts between two processes racing on one key: {retries}"


# -- 2. versionstamps --------------------------------------------------------------------------


async def test_versionstamps_from_two_processes_are_unique_ordered_and_match_the_keys(
    engine_url: str, tmp_path: Path
) -> None:
    n, tasks = 120, 3
    reported: dict[tuple[str, int, int], bytes] = {}
    async with children(2, tmp_path) as kids:
        await create_file(engine_url)
        await open_all(kids, engine_url)
        for child in kids:
            child.send("stamps", child.name, n, tasks)
        for child in kids:
            per_task: dict[int, list[bytes]] = {t: [] for t in range(tasks)}
            while True:
                words = await child.expect()
                if words == ["stamped"]:
                    break
                assert words[0] == "stamp", words
                task, i, stamp, version = (
                    int(words[1]),
                    int(words[2]),
                    bytes.fromhex(words[3]),
                    int(words[4]),
                )
                assert len(stamp) == 10
                # The first 8 bytes are the commit version, as in FoundationDB.
                assert int.from_bytes(stamp[:8], "big") == version
                assert i == len(per_task[task])
                per_task[task].append(stamp)
                reported[(child.name, task, i)] = stamp
            for task, stamps in per_task.items():
                assert len(stamps) == n
                assert all(a < b for a, b in pairwise(stamps)), (child.name, task)
    total = 2 * tasks * n
    assert len(set(reported.values())) == total, "two commits got the same versionstamp"

    async with create_engine(engine_url) as engine:
        rows = await read_all(engine, pack(("vs",)), pack(("vs",)) + b"\xff")
    assert len(rows) == total
    stored: list[bytes] = []
    for key, value in rows:
        _, stamp = unpack(key)
        name, task, i = unpack(value)
        assert stamp.is_complete()
        assert stamp.tr_version == reported[(name, task, i)], (name, task, i)
        stored.append(stamp.tr_version)
    # Key order is versionstamp order: the sorted union of what the children were told.
    assert stored == sorted(reported.values())


# -- 3. watches --------------------------------------------------------------------------------


async def test_watch_fires_on_another_processes_write_and_not_on_unrelated_keys(
    engine_url: str, tmp_path: Path
) -> None:
    watched, sentinel, unrelated = pack(("watched",)), pack(("sentinel",)), pack(("unrelated",))
    async with create_engine(engine_url) as engine, children(1, tmp_path) as (child,):
        await write(engine, watched, b"before")
        await open_all([child], engine_url)
        tr = engine.create_transaction()
        assert await tr.get(watched) == b"before"
        watch_k = tr.watch(watched)
        watch_s = tr.watch(sentinel)
        await tr.commit()
        try:
            await child.request("set", unrelated.hex(), b"x".hex(), reply="ok")
            await child.request("set", sentinel.hex(), b"s".hex(), reply="ok")
            # The sentinel was written after the unrelated key, so once its watch fired the
            # unrelated write has been seen too, and must not have fired the other watch.
            await asyncio.wait_for(_awaited(watch_s), WATCH_TIMEOUT)
            assert not watch_k.done(), "a write to another key fired the watch"
            await child.request("set", watched.hex(), b"after".hex(), reply="ok")
            await asyncio.wait_for(_awaited(watch_k), WATCH_TIMEOUT)
        finally:
            watch_k.cancel()
            watch_s.cancel()


async def test_watch_in_a_child_fires_on_the_parents_write(engine_url: str, tmp_path: Path) -> None:
    watched, sentinel, unrelated = pack(("watched",)), pack(("sentinel",)), pack(("unrelated",))
    async with create_engine(engine_url) as engine, children(1, tmp_path) as (child,):
        await open_all([child], engine_url)
        await child.request("watch", "k", watched.hex(), reply="armed")
        await child.request("watch", "s", sentinel.hex(), reply="armed")
        await write(engine, unrelated, b"x")
        await write(engine, sentinel, b"s")
        await child.request("wait", "s", WATCH_TIMEOUT, reply="fired")
        assert await child.request("done", "k", reply="done") == ["k", "0"]
        await write(engine, watched, b"now")
        await child.request("wait", "k", WATCH_TIMEOUT, reply="fired")


async def _awaited(watch: Any) -> None:
    await watch


# -- 4. durability under SIGKILL ---------------------------------------------------------------

ACCOUNTS = 12
INITIAL_BALANCE = 1000
WRITERS = 3
ACKS_PER_ROUND = 200
ROUNDS = 3


async def _check_bank(url: str, acked: dict[int, int]) -> dict[int, int]:
    """Check the invariants after the writers died; return each writer's stored seq."""
    async with create_engine(url) as engine:

        async def read(tr: Transaction) -> dict[str, Any]:
            def rows(prefix: str) -> Any:
                begin = pack((prefix,))
                return tr.get_range(begin, begin + b"\xff").to_list()

            total = await tr.get(pack(("total_transfers",)))
            return {
                "acct": await rows("acct"),
                "log": await rows("log"),
                "seq": await rows("seq"),
                "total": 0 if total is None else int.from_bytes(total, "little"),
            }

        state = await engine.transact(read, timeout=REPLY_TIMEOUT)

    balances = {unpack(kv.key)[1]: unpack(kv.value)[0] for kv in state["acct"]}
    assert sorted(balances) == list(range(ACCOUNTS))
    assert sum(balances.values()) == ACCOUNTS * INITIAL_BALANCE, "money created or destroyed"

    seqs = {unpack(kv.key)[1]: unpack(kv.value)[0] for kv in state["seq"]}
    logs: dict[int, list[int]] = {w: [] for w in range(WRITERS)}
    replayed = dict.fromkeys(range(ACCOUNTS), INITIAL_BALANCE)
    for kv in state["log"]:
        _, writer, seq = unpack(kv.key)
        source, target, amount = unpack(kv.value)
        logs[writer].append(seq)
        replayed[source] -= amount
        replayed[target] += amount
    for writer in range(WRITERS):
        assert writer in seqs, f"writer {writer} has no seq key"
        assert seqs[writer] >= acked[writer], f"writer {writer}: an acknowledged commit is lost"
        # Contiguous: no partial transaction left a seq without its log entry or vice versa.
        assert logs[writer] == list(range(seqs[writer] + 1)), f"writer {writer}: torn log"
    # Every transfer in the logs, and only those, moved money.
    assert replayed == balances, "account balances disagree with the transfer log"
    assert state["total"] == sum(seq + 1 for seq in seqs.values()), "atomic add count is off"
    return seqs


async def _follow(child: Child, writer: int, acked: dict[int, int], stored: dict[int, int]) -> None:
    """Read a bank writer's acks until it has acknowledged ACKS_PER_ROUND in this round."""
    while acked[writer] - stored[writer] < ACKS_PER_ROUND:
        (seq,) = await child.expect("ack")
        assert int(seq) == acked[writer] + 1, "seq does not continue the stored one"
        acked[writer] = int(seq)


@pytest.mark.slow
async def test_sigkilled_writers_leave_every_acknowledged_commit_and_no_partial_one(
    engine_url: str, tmp_path: Path
) -> None:
    async with create_engine(engine_url) as engine:

        async def setup(tr: Transaction) -> None:
            for index in range(ACCOUNTS):
                tr.set(pack(("acct", index)), pack((INITIAL_BALANCE,)))

        await engine.transact(setup, timeout=REPLY_TIMEOUT)

    stored = {w: -1 for w in range(WRITERS)}
    for round_ in range(ROUNDS):
        acked = dict(stored)
        async with children(WRITERS, tmp_path, tag=f"r{round_}w") as kids:
            await open_all(kids, engine_url)
            for writer, child in enumerate(kids):
                child.send("bank", writer, ACCOUNTS)

            await asyncio.gather(
                *(_follow(child, writer, acked, stored) for writer, child in enumerate(kids))
            )
            for child in kids:
                child.proc.send_signal(signal.SIGKILL)
            for writer, child in enumerate(kids):
                assert await child.proc.wait() == -signal.SIGKILL
                # Acks printed before the kill are still in the pipe: they count too.
                while (text := await child.line()) is not None:
                    words = text.split()
                    assert words[0] == "ack", text
                    acked[writer] = int(words[1])
        stored = await _check_bank(engine_url, acked)


# -- 5. racing startup -------------------------------------------------------------------------


async def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Like uvicorn workers starting together: each opens a file nobody has created yet (the
    schema creation races) and serves a first request, a read-modify-write. (sqlite only.)"""
    rounds = 40
    counter = pack(("requests",))
    async with children(3, tmp_path) as kids:
        for round_ in range(rounds):
            url = f"sqlite:///{tmp_path / f'race{round_}' / 'engine.db'}"
            for child in kids:
                child.send("open", url)
            for child in kids:
                await child.expect("opened")
            for child in kids:
                child.send("incr", counter.hex(), 1)
            for child in kids:
                await child.expect("incremented")
            for child in kids:
                child.send("close")
            for child in kids:
                await child.expect("closed")
            async with create_engine(url) as engine:
                tr = engine.create_transaction()
                assert await tr.get(counter) == b"3", f"round {round_}"


# -- 6. an idle file ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_read_modify_write_after_the_file_sat_idle_commits(
    engine_url: str, tmp_path: Path
) -> None:
    """A transaction is too old 5 s after it began, not 5 s after someone last committed."""
    key = pack(("counter",))
    async with children(2, tmp_path) as kids:
        await create_file(engine_url)
        await open_all(kids, engine_url)
        await kids[0].request("set", key.hex(), b"1".hex(), reply="ok")
        await kids[0].request("incr", key.hex(), 1, reply="incremented")
        # What is under test is elapsed time: no commit for longer than FDB's 5 s window.
        await asyncio.sleep(5.5)
        await kids[1].request("incr", key.hex(), 1, reply="incremented")
        assert await kids[0].request("get", key.hex(), reply="value") == [b"3".hex()]
