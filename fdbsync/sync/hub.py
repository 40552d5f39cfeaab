"""The watch hub: one storage watch per key, shared reads, and batched re-reads.

One hub serves every live session of one engine on one event loop. It holds one storage watch
per watched key however many sessions watch it (reference-counted through the shared reads
on that key), and one `SharedRead` per distinct read. When a watch fires, the hub re-reads
every read on that key once, in one transaction per tenant that also re-arms the watch, and
hands the result to every session that shows it.

Re-reads are batched in ticks, one at a time: fires that arrive while a tick runs wait for the
next one, so a burst costs one more re-read, not one per fire. A tick also checks, at its own
read version, the other reads of every session it touches (one `get_many` of their watched
keys) and re-reads those that moved, so a session is never shown half of another
transaction's writes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..data.repo import Repo
from ..engine.base import Engine, Watch
from ..engine.errors import ErrorCode, FDBError
from .errors import WatchLimitError
from .reads import SharedRead, fetch_all

if TYPE_CHECKING:
    from .session import LiveSession

__all__ = ["HubStats", "WatchHub", "hub_for"]

logger = logging.getLogger("fdbsync.sync")


@dataclass(frozen=True)
class HubStats:
    """What a hub holds and has done, for tests and metrics."""

    storage_watches: int  # armed storage watches (one per watched key)
    keys: int  # watched keys, armed or about to be re-armed
    reads: int  # distinct shared reads
    sessions: int  # live sessions holding at least one label
    subscriptions: int  # (session, shared read) pairs
    rereads: int  # shared reads re-read after a fire, since the hub started
    fires: int  # storage watches that fired, since the hub started


class _KeyWatch:
    """The storage watch on one key, and the shared reads it keeps current."""

    __slots__ = ("key", "reads", "watch")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.reads: set[SharedRead] = set()
        self.watch: Watch | None = None  # None: to be armed by the next transaction on it


class WatchHub:
    """Shared storage watches and reads for the sessions of one engine on one event loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads: dict[Hashable, SharedRead] = {}
        self._keys: dict[bytes, _KeyWatch] = {}
        self._held: dict[LiveSession, int] = {}  # session -> shared reads it uses
        self._dirty: set[SharedRead] = set()
        self._resync: set[LiveSession] = set()  # sessions owed every result of their next tick
        self._ticking: asyncio.Task[None] | None = None
        self._rereads = 0
        self._fires = 0
        #: Test hook: awaited inside each re-read transaction, after its reads.
        self.after_reread: Callable[[list[SharedRead]], Awaitable[None]] | None = None

    def stats(self) -> HubStats:
        return HubStats(
            storage_watches=sum(1 for kw in self._keys.values() if kw.watch is not None),
            keys=len(self._keys),
            reads=len(self._reads),
            sessions=len(self._held),
            subscriptions=sum(len(read.sessions) for read in self._reads.values()),
            rereads=self._rereads,
            fires=self._fires,
        )

    # -- subscriptions ---------------------------------------------------------------------

    def reserve(self, reads: Iterable[SharedRead]) -> None:
        """WatchLimitError, before anything else happens, if watching `reads` needs more
        storage watches than the engine allows."""
        new = {read.key for read in reads if read.key not in self._keys}
        limit = self.engine.limits.max_watches
        if new and len(self._keys) + len(new) > limit:
            raise WatchLimitError(
                f"this page needs {len(new)} more storage watches; {len(self._keys)} of the "
                f"engine's {limit} (max_watches) are in use"
            )

    def acquire(self, session: LiveSession, read: SharedRead) -> SharedRead:
        """The shared read equal to `read` (`read` itself if it is new), now used by `session`."""
        shared = self._reads.get(read.identity)
        if shared is None:
            shared = self._reads[read.identity] = read
            self._keys.setdefault(read.key, _KeyWatch(read.key)).reads.add(read)
        shared.sessions[session] = shared.sessions.get(session, 0) + 1
        self._held[session] = self._held.get(session, 0) + 1
        return shared

    def release(self, session: LiveSession, read: SharedRead) -> None:
        """`session` no longer uses `read`; the last user out drops it, and its watch."""
        held = self._held.get(session, 0) - 1
        if held > 0:
            self._held[session] = held
        else:
            self._held.pop(session, None)
            self._resync.discard(session)
        count = read.sessions.get(session, 0) - 1
        if count > 0:
            read.sessions[session] = count
            return
        read.sessions.pop(session, None)
        if read.sessions or self._reads.get(read.identity) is not read:
            return
        del self._reads[read.identity]
        self._dirty.discard(read)
        key_watch = self._keys[read.key]
        key_watch.reads.discard(read)
        if not key_watch.reads:
            del self._keys[read.key]
            if key_watch.watch is not None:
                key_watch.watch.cancel()

    # -- reading ---------------------------------------------------------------------------

    async def load(
        self, repo: Repo, reads: list[SharedRead], check: Sequence[SharedRead] = ()
    ) -> tuple[dict[SharedRead, Any], int, set[SharedRead]]:
        """Read `reads` in one transaction that also arms the watches their keys lack; their
        results, the read version, and those of `check` (reads not read again) whose watched
        key moved past their latest result. New shared reads take these results."""
        every = [*reads, *check]

        async def once(tx: Repo) -> tuple[dict[SharedRead, Any], list[bytes | None], Any, int]:
            handle = tx.transaction_handle
            results, tokens = await asyncio.gather(
                fetch_all(tx, reads), handle.get_many([read.key for read in every])
            )
            for outcome in results.values():
                if isinstance(outcome, BaseException):
                    raise outcome
            arming = self._arm(handle, reads)
            return results, tokens, arming, await handle.get_read_version()

        results, tokens, arming, version = await repo.transaction(once)
        if self._armed(arming):
            raise WatchLimitError("the engine refused more watches (FDB error 1032)")
        for read, token in zip(reads, tokens[: len(reads)], strict=True):
            if read.version < 0:
                read.settle(results[read], token, version)
            elif token == read.token and results[read] == read.value:
                # Unchanged since the shared result: hand out that object, so sessions hold
                # the same objects (and share renders keyed by identity).
                results[read] = read.value
        moved = {r for r, t in zip(check, tokens[len(reads) :], strict=True) if t != r.token}
        return results, version, moved

    @staticmethod
    def _others(
        sessions: Iterable[LiveSession], known: set[SharedRead], tenant: str | None
    ) -> list[SharedRead]:
        """The reads of `sessions` in `tenant` not in `known`."""
        found = {r for s in sessions for r in s.shared_reads() if r.tenant == tenant}
        return list(found - known)

    def _arm(self, handle: Any, reads: Iterable[SharedRead]) -> list[tuple[_KeyWatch, Watch]]:
        """New storage watches (armed when the transaction commits) for keys that lack one."""
        keys = {self._keys[read.key] for read in reads if read.key in self._keys}
        return [(kw, handle.watch(kw.key)) for kw in keys if kw.watch is None]

    def _armed(self, arming: list[tuple[_KeyWatch, Watch]]) -> list[_KeyWatch]:
        """Keep the watches a committed transaction armed; the keys the engine refused."""
        refused = []
        for key_watch, watch in arming:
            error = watch.error() if watch.done() else None
            if isinstance(error, FDBError) and error.code == ErrorCode.TOO_MANY_WATCHES:
                refused.append(key_watch)
            elif self._keys.get(key_watch.key) is not key_watch or key_watch.watch is not None:
                watch.cancel()  # the key was dropped, or armed meanwhile by another transaction
            else:
                key_watch.watch = watch
                watch.add_done_callback(self._fired)
        return refused

    def refresh(self, reads: Iterable[SharedRead], session: LiveSession) -> None:
        """Read `reads` again in the next tick, as if their watches had fired, and give
        `session` all of their results then, changed or not (it holds older ones)."""
        self._dirty.update(read for read in reads if self._reads.get(read.identity) is read)
        self._resync.add(session)
        self._schedule()

    def _schedule(self) -> None:
        if self._dirty and (self._ticking is None or self._ticking.done()):
            self._ticking = asyncio.get_running_loop().create_task(self._tick())

    def _fired(self, watch: Watch) -> None:
        key_watch = self._keys.get(watch.key)
        if key_watch is None or key_watch.watch is not watch:
            return  # cancelled by release(), or already replaced
        key_watch.watch = None
        self._fires += 1
        now = asyncio.get_running_loop().time()
        for read in key_watch.reads:
            if read.fired_at is None:
                read.fired_at = now
        self._dirty.update(key_watch.reads)
        self._schedule()

    async def _tick(self) -> None:
        while self._dirty:
            batch, self._dirty = self._dirty, set()
            by_tenant: dict[str | None, list[SharedRead]] = {}
            for read in batch:
                by_tenant.setdefault(read.tenant, []).append(read)
            outcomes = await asyncio.gather(
                *(self._refresh(reads) for reads in by_tenant.values()), return_exceptions=True
            )
            for outcome in outcomes:  # a bug here must not stop the hub for everyone
                if isinstance(outcome, Exception):
                    logger.error("re-read tick failed", exc_info=outcome)

    async def _refresh(self, batch: list[SharedRead]) -> None:
        """Re-read `batch` (one tenant), re-arm their watches, and tell their sessions."""
        repo = batch[0].repo
        affected = {session for read in batch for session in read.sessions}

        async def once(tx: Repo) -> tuple[list[SharedRead], dict[SharedRead, Any], Any, Any]:
            handle = tx.transaction_handle
            checked = self._others(affected, set(batch), repo.tenant)
            results, tokens = await asyncio.gather(
                fetch_all(tx, batch), handle.get_many([r.key for r in [*batch, *checked]])
            )
            token_of = dict(zip([*batch, *checked], tokens, strict=True))
            # Reads changed by the same writes whose own watch has not fired yet: re-read them
            # too, and check the other reads of their sessions in turn.
            moved = [read for read in checked if token_of[read] != read.token]
            frontier, seen = moved, set(affected)
            while frontier:
                sessions = {s for read in frontier for s in read.sessions} - seen
                seen |= sessions
                more = self._others(sessions, set(token_of), repo.tenant)
                token_of.update(
                    zip(more, await handle.get_many([r.key for r in more]), strict=True)
                )
                frontier = [read for read in more if token_of[read] != read.token]
                moved += frontier
            if moved:
                results.update(await fetch_all(tx, moved))
            for outcome in results.values():
                if isinstance(outcome, FDBError):
                    raise outcome  # the transaction's own trouble: retry it
            if self.after_reread is not None:
                await self.after_reread([*batch, *moved])
            arming = self._arm(handle, [*batch, *moved])
            version = await handle.get_read_version()
            return [*batch, *moved], results, (token_of, arming), version

        try:
            reread, results, (token_of, arming), version = await repo.transaction(once)
        except Exception as error:  # the engine failed: every session here hears of it
            logger.warning("re-read failed for %d reads: %r", len(batch), error)
            for session in affected:
                session.deliver(set(), -1, {read: error for read in batch})
            return
        self._rereads += len(reread)
        since = min((r.fired_at for r in reread if r.fired_at is not None), default=None)
        for read in reread:
            read.fired_at = None
        changed: set[SharedRead] = set()
        failed: dict[SharedRead, BaseException] = {}
        for key_watch in self._armed(arming):  # nothing would tell these reads of changes
            refused = WatchLimitError("the engine refused to re-arm a watch (FDB error 1032)")
            failed.update(dict.fromkeys(key_watch.reads, refused))
        for read in reread:
            if read in failed:
                continue
            outcome = results[read]
            if isinstance(outcome, BaseException):
                failed[read] = outcome
            elif read.settle(outcome, token_of[read], version):
                changed.add(read)
        for read in failed:
            logger.warning("re-read of %r failed: %r", read, failed[read])
        # Only sessions with news: a read re-read to the same result tells no one, except a
        # session that asked for everything again (see LiveSession.sync): it gets every result
        # once a tick has re-read all of its reads, and nothing before (a part would tear it).
        everything = set(reread)
        forced = {s for s in self._resync if set(s.shared_reads()) <= everything}
        waiting = self._resync - forced
        self._resync -= forced
        told = {s for read in [*changed, *failed] for s in read.sessions} - waiting
        for session in told | forced:
            news = everything if session in forced else changed
            session.deliver(news, version, failed, since=since)


def hub_for(engine: Engine) -> WatchHub:
    """The hub of `engine` on the running event loop (made on first use).

    Kept on the engine, by loop, weakly: a closed loop, or an engine no one holds (with its
    hubs), can be collected."""
    loop = asyncio.get_running_loop()
    hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WatchHub] = (
        engine.__dict__.setdefault("_fdbsync_hubs", weakref.WeakKeyDictionary())
    )
    hub = hubs.get(loop)
    if hub is None:
        hub = hubs[loop] = WatchHub(engine)
    return hub
