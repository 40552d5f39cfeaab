"""A child process for tests/engine/test_processes.py, driven by lines on stdin.

Run as `python -u tests/engine/_worker.py`. It prints `ready`, then answers one command per
line. Keys and values travel as hex. Replies are single lines; a failed command answers
`error <repr>` and the worker keeps going. Commands:

    open <url>                    -> opened
    close                         -> closed
    set <key> <value>             -> ok <committed version>
    get <key>                     -> value <hex> | value -
    watch <name> <key>            -> armed <name>      (a read-only transaction's watch)
    wait <name> <seconds>         -> fired <name> | pending <name> | failed <name> <repr>
    done <name>                   -> done <name> 0|1
    incr <key> <n>                -> incremented <retries>      (n read-modify-write commits)
    stamps <tag> <n> <tasks>      -> stamp <task> <i> <hex> <version> ..., then stamped
    bank <writer> <accounts>      -> ack <seq> ... forever (killed by the parent)
    exit                          -> (exits)
"""

from __future__ import annotations

import asyncio
import random
import sys
import traceback
from typing import Any

from fdbsync.engine import (
    Engine,
    Transaction,
    Versionstamp,
    Watch,
    create_engine,
    pack,
    pack_with_versionstamp,
    unpack,
)

#: Seconds a single transaction (retries included) may take before the worker gives up
#: and reports the error, so a stuck engine shows up as a failure instead of a hang.
TX_TIMEOUT = 10.0


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def describe(error: BaseException) -> str:
    text = repr(error)
    if error.__cause__ is not None:
        text += f" caused by {error.__cause__!r}"
    return text.replace("\n", " ")


def account_key(index: int) -> bytes:
    return pack(("acct", index))


def log_key(writer: int, seq: int) -> bytes:
    return pack(("log", writer, seq))


def seq_key(writer: int) -> bytes:
    return pack(("seq", writer))


TOTAL_KEY = pack(("total_transfers",))


class Worker:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.watches: dict[str, Watch] = {}
        self.waiters: dict[str, asyncio.Task[None]] = {}

    @property
    def db(self) -> Engine:
        assert self.engine is not None, "open first"
        return self.engine

    async def run(self) -> None:
        say("ready")
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            words = line.split()
            if not words:
                continue
            if words[0] == "exit":
                break
            try:
                await getattr(self, f"cmd_{words[0]}")(*words[1:])
            except Exception as error:  # report and keep serving
                traceback.print_exc()
                say("error", describe(error))
        if self.engine is not None:
            await self.engine.close()

    async def cmd_open(self, url: str) -> None:
        self.engine = create_engine(url)
        await self.engine.open()
        say("opened")

    async def cmd_close(self) -> None:
        await self.db.close()
        self.engine = None
        say("closed")

    async def cmd_set(self, key: str, value: str) -> None:
        tr = self.db.create_transaction()
        tr.set(bytes.fromhex(key), bytes.fromhex(value))
        await tr.commit()
        say("ok", tr.get_committed_version())

    async def cmd_get(self, key: str) -> None:
        tr = self.db.create_transaction()
        value = await tr.get(bytes.fromhex(key))
        tr.cancel()
        say("value", "-" if value is None else value.hex())

    async def cmd_watch(self, name: str, key: str) -> None:
        tr = self.db.create_transaction()
        watch = tr.watch(bytes.fromhex(key))
        await tr.commit()
        self.watches[name] = watch

        async def wait() -> None:
            await watch

        self.waiters[name] = asyncio.ensure_future(wait())
        say("armed", name)

    async def cmd_wait(self, name: str, seconds: str) -> None:
        task = self.waiters[name]
        await asyncio.wait({task}, timeout=float(seconds))
        if not task.done():
            say("pending", name)
        elif task.exception() is not None:
            say("failed", name, describe(task.exception()))  # type: ignore[arg-type]
        else:
            say("fired", name)

    async def cmd_done(self, name: str) -> None:
        say("done", name, int(self.watches[name].done()))

    async def cmd_incr(self, key_hex: str, n: str) -> None:
        key = bytes.fromhex(key_hex)
        attempts = 0

        async def increment(tr: Transaction) -> None:
            nonlocal attempts
            attempts += 1
            raw = await tr.get(key)
            current = 0 if raw is None else int(raw)
            tr.set(key, str(current + 1).encode())

        for _ in range(int(n)):
            await self.db.transact(increment, timeout=TX_TIMEOUT)
        say("incremented", attempts - int(n))

    async def cmd_stamps(self, tag: str, n: str, tasks: str) -> None:
        async def one_task(task: int) -> None:
            for i in range(int(n)):
                tr = self.db.create_transaction()
                key = pack_with_versionstamp(("vs", Versionstamp()))
                tr.set_versionstamped_key(key, pack((tag, task, i)))
                stamp = tr.get_versionstamp()
                await tr.commit()
                say("stamp", task, i, (await stamp).hex(), tr.get_committed_version())

        await asyncio.gather(*(one_task(t) for t in range(int(tasks))))
        say("stamped")

    async def cmd_bank(self, writer_s: str, accounts_s: str) -> None:
        writer, accounts = int(writer_s), int(accounts_s)

        async def transfer(tr: Transaction) -> int:
            raw = await tr.get(seq_key(writer))
            seq = 0 if raw is None else unpack(raw)[0] + 1
            rng = random.Random(f"{writer}:{seq}")
            source, target = rng.sample(range(accounts), 2)
            amount = rng.randint(1, 100)
            balances: list[Any] = []
            for index in (source, target):
                stored = await tr.get(account_key(index))
                assert stored is not None, f"account {index} missing"
                balances.append(unpack(stored)[0])
            tr.set(account_key(source), pack((balances[0] - amount,)))
            tr.set(account_key(target), pack((balances[1] + amount,)))
            tr.set(log_key(writer, seq), pack((source, target, amount)))
            tr.set(seq_key(writer), pack((seq,)))
            tr.add(TOTAL_KEY, (1).to_bytes(8, "little"))
            return seq

        while True:
            seq = await self.db.transact(transfer, timeout=TX_TIMEOUT)
            say("ack", seq)


if __name__ == "__main__":
    asyncio.run(Worker().run())
