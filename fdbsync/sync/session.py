"""`LiveSession`: one live page's assigns, kept current by the watch hub.

A session reads what its labels name, assigns the results, and (unless it only renders once)
subscribes to the hub's shared reads. When they change, the hub hands the session a `Ready`
notification; applying it updates the assigns and runs the `handle_assigns` callbacks.
`updates()` does that in a loop and yields the labels that changed each time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from ..data.errors import TenancyError
from ..data.model import Model
from ..data.query import Query
from ..data.repo import Repo
from .errors import SyncError
from .hub import WatchHub, hub_for
from .reads import QueryRead, RecordRead, SharedRead, fetch_all
from .specs import All, Label, Many, One, WatchAction

__all__ = ["Callback", "LiveSession", "Ready"]

logger = logging.getLogger("fdbsync.sync")

#: A `handle_assigns` callback: `fn(session, old)` with the old values of the labels that
#: changed; sync or async. Returning False stops the callbacks after it.
Callback = Callable[["LiveSession", dict[str, Any]], "bool | Awaitable[bool | None] | None"]
#: Replaces default assignment: `fn(session, new_assigns)`.
AssignFunction = Callable[["LiveSession", dict[str, Any]], None]


@dataclass(frozen=True)
class Ready:
    """The hub's news for one session: these shared reads have new results."""

    session: LiveSession
    reads: frozenset[SharedRead]


@dataclass
class _Synced:
    """One label: its kind, its shared reads, and the result of each that the page shows."""

    kind: Literal["one", "many", "all"]
    reads: list[SharedRead]
    held: list[Any]
    versions: list[int]
    adopted: list[bool] = field(default_factory=list)  # held is the read's own object

    def assigned(self) -> Any:
        if self.kind == "many":
            return [value for value in self.held if value is not None]
        return self.held[0]

    def empty(self) -> Any:
        return None if self.kind == "one" else []


class LiveSession:
    """A live page's state: `assigns` (what templates render), `private` (the tenant, under
    "tenant", and fdbsync's bookkeeping, under "fdbsync") and the Sync API.

    With `watch=False` a session only renders once: it reads and assigns, arms no watch and
    holds nothing. Use `async with`, or `close()`, to let go of its watches.
    """

    def __init__(
        self,
        repo: Repo,
        *,
        private: Mapping[str, Any] | None = None,
        assigns: Mapping[str, Any] | None = None,
        watch: bool = True,
        assign: AssignFunction | None = None,
        hub: WatchHub | None = None,
    ) -> None:
        self.repo = repo
        self.assigns: dict[str, Any] = dict(assigns or {})
        self.private: dict[str, Any] = dict(private or {})
        self.watch = watch
        self._assign = assign
        self._hub = hub
        self._labels: dict[str, _Synced] = {}
        self._synced_once: dict[str, None] = {}  # every label synced, in order
        self.private["fdbsync"] = self._labels
        self._callbacks: dict[str, Callback] = {}
        self._pending: set[SharedRead] = set()
        self._failure: SyncError | None = None
        self._news = asyncio.Event()
        self._news_since: float | None = None
        self._touched: set[str] | None = None  # labels assigned while callbacks run
        #: When the news `next_ready` last returned began: the loop time the first storage
        #: watch behind it fired (None if unknown). The web layer measures push latency by it.
        self.news_since: float | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LiveSession {id(self):#x} tenant={self.private.get('tenant')!r}>"

    @property
    def closed(self) -> bool:
        """Whether the session was closed (it holds nothing and syncs no more)."""
        return self._closed

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label this session has synced, in order (cancelled ones too: their assigns
        still render)."""
        return tuple(self._synced_once)

    @property
    def hub(self) -> WatchHub:
        if self._hub is None:
            self._hub = hub_for(self.repo.engine)
        return self._hub

    # -- the Sync API ------------------------------------------------------------------------

    async def sync_one(self, label: str, model: type[Model], id: Any) -> None:
        """Assign the record with primary key `id` (or None) to `label`, and follow it."""
        await self.sync([One(label, model, id)])

    async def sync_many(self, label: str, model: type[Model], ids: Sequence[Any] | None) -> None:
        """Assign the records with these ids, in order, to `label`, and follow each one."""
        await self.sync([Many(label, model, ids)])

    async def sync_all(
        self,
        label: str,
        source: type[Model] | Query[Any],
        watch_action: WatchAction = "changes",
    ) -> None:
        """Assign a model's records (or a query's results) to `label`; read them again when
        the model's SchemaMetadata counter `watch_action` moves."""
        await self.sync([All(label, source, None, watch_action)])

    async def sync_all_by(
        self,
        label: str,
        source: type[Model] | Query[Any],
        by: Mapping[str, Any],
        watch_action: WatchAction = "changes",
    ) -> None:
        """Like sync_all for the records matching `by`, watched through the SchemaMetadata
        counters kept for those values (`SchemaMetadata(by=...)`)."""
        await self.sync([All(label, source, by, watch_action)])

    async def sync(self, labels: Sequence[Label]) -> None:
        """Read several labels in one transaction (one consistent snapshot), assign them, and
        follow them, with their watches armed in that same transaction."""
        self._check_open()
        repo = self._tenant_repo()
        plans: dict[str, tuple[Label, list[SharedRead]]] = {}
        emptied: dict[str, Any] = {}  # Many labels with no ids: nothing to read, [] to show
        for spec in labels:
            if isinstance(spec, Many) and not spec.ids:
                self._drop(spec.label, assign=False)
                emptied[spec.label] = []
            else:
                plans[spec.label] = (spec, self._reads_of(repo, spec))
        if not plans or not self.watch:
            if plans:
                await self._render_once(repo, plans)
            self._set_assigns(emptied, None)
            self._synced_once.update(dict.fromkeys(spec.label for spec in labels))
            return
        hub = self.hub
        kept = self._kept(plans)
        fresh = [r for _, reads in plans.values() for r in reads if r.identity not in kept]
        hub.reserve(fresh)
        plan_reads = [r for _, reads in plans.values() for r in reads]
        acquired = {id(r): hub.acquire(self, r) for r in plan_reads}
        # Equal reads in two labels (or already shared with other sessions) are read once.
        to_load = list({id(acquired[id(r)]): acquired[id(r)] for r in fresh}.values())
        # Results kept for a Many label's ids that stay are checked at the load's read version;
        # if one is out of date, every label is read again, so the page is one snapshot.
        unique = list({id(read): read for read in acquired.values()}.values())
        check = [read for read in unique if read.identity in kept]
        try:
            results, version, moved = await hub.load(repo, to_load, check)
            if moved or any(read.version > kept[read.identity][1] for read in check):
                kept = {}
                results, version, _ = await hub.load(repo, unique)
            if self._closed:  # closed while this read ran: hold nothing
                raise SyncError("this session was closed during sync")
        except BaseException:
            for read in acquired.values():
                hub.release(self, read)
            raise
        new_values: dict[str, Any] = {}
        newer: list[SharedRead] = []
        for label, (spec, reads) in plans.items():
            synced = _Synced(_kind(spec), [acquired[id(r)] for r in reads], [], [], [])
            for read in synced.reads:
                if read.identity in kept:
                    value, at = kept[read.identity]
                else:
                    value, at = results[read], version
                if read.version > at:
                    newer.append(read)
                synced.held.append(value)
                synced.versions.append(at)
                synced.adopted.append(value is read.value)
            self._replace(label, synced)
            new_values[label] = synced.assigned()
        self._set_assigns({**emptied, **new_values}, None)
        self._synced_once.update(dict.fromkeys(spec.label for spec in labels))
        if newer:
            # A re-read finished while this sync read: some shared results are newer than the
            # snapshot just assigned. Taking only those would show half of a transaction, so
            # the page keeps its snapshot and the hub reads all of its labels again, together.
            mine = set(self.shared_reads())
            self._pending.difference_update(mine)
            hub.refresh(mine, self)

    async def cancel(self, label: str, assign: bool = True) -> None:
        """Stop following `label`; with `assign`, set it to None (or [] for lists)."""
        self._drop(label, assign)

    async def cancel_all(self) -> None:
        """Stop following every label (their assigns stay as they are)."""
        self._drop_all()

    def _drop(self, label: str, assign: bool) -> None:
        synced = self._labels.pop(label, None)
        if synced is None:
            return
        for read in synced.reads:
            self.hub.release(self, read)
        if assign:
            self.assigns[label] = synced.empty()
            if self._touched is not None:
                self._touched.add(label)

    def _drop_all(self) -> None:
        for label in list(self._labels):
            self._drop(label, assign=False)

    def watching(self, label: str) -> bool:
        """Whether `label` is followed."""
        return label in self._labels

    def attach_callback(
        self,
        name: str,
        event: Literal["handle_assigns"],
        fn: Callback,
        replace: bool = False,
    ) -> None:
        """Run `fn(session, old)` after every change of assigns, after earlier callbacks."""
        _check_event(event)
        if name in self._callbacks and not replace:
            raise ValueError(f"a callback named {name!r} is attached; pass replace=True")
        self._callbacks[name] = fn

    def detach_callback(self, name: str, event: Literal["handle_assigns"]) -> None:
        _check_event(event)
        self._callbacks.pop(name, None)

    async def handle_ready(self, ready: object, *, assign: AssignFunction | None = None) -> bool:
        """Apply a `Ready` notification (or a list of them) for this session: the hub has
        re-read what it covers and re-armed the watches; assign the new results and run the
        callbacks. False, touching nothing, when none of it is this session's."""
        batch = ready if isinstance(ready, list | tuple) else [ready]
        own = [item for item in batch if isinstance(item, Ready) and item.session is self]
        if not own:
            return False
        await self._apply(frozenset().union(*(item.reads for item in own)), assign)
        return True

    # -- driving -----------------------------------------------------------------------------

    async def next_ready(self) -> Ready:
        """Wait for the hub's next news for this session (news that piles up comes as one)."""
        while not self._pending and self._failure is None:
            self._check_open()
            self._news.clear()
            await self._news.wait()
        if self._failure is not None:
            raise self._failure
        pending, self._pending = self._pending, set()
        self.news_since, self._news_since = self._news_since, None
        return Ready(self, frozenset(pending))

    async def updates(self) -> AsyncGenerator[set[str], None]:
        """After each change, the labels whose assigns changed. Leaving the loop (or the task
        running it being cancelled) closes the session; a failed re-read or callback is
        logged and raised as SyncError."""
        try:
            while not self._closed:
                try:
                    ready = await self.next_ready()
                except SyncError:
                    if self._closed:
                        return  # closed elsewhere: the updates end
                    raise
                changed = await self._apply(ready.reads, None)
                if changed:
                    yield changed
        finally:
            self.close()

    def close(self) -> None:
        """Let go of every watch and subscription at once."""
        if self._closed:
            return
        self._closed = True
        self._news.set()  # a task waiting for news hears that there will be none
        if self._hub is not None:
            self._drop_all()

    # -- for the hub -------------------------------------------------------------------------

    def shared_reads(self) -> Iterable[SharedRead]:
        for synced in self._labels.values():
            yield from synced.reads

    def deliver(
        self,
        changed: set[SharedRead],
        version: int,
        failed: Mapping[SharedRead, BaseException],
        *,
        since: float | None = None,
    ) -> None:
        """The hub's results: `changed` reads have new values; `failed` ones could not be
        re-read (that ends the session). `since`: when the watch behind them fired."""
        if since is not None and (self._news_since is None or since < self._news_since):
            self._news_since = since
        # Changes to reads of a label still being synced count too: the label takes them when
        # it is applied next.
        self._pending.update(read for read in changed if self in read.sessions)
        for read, error in failed.items():
            label = next((n for n, s in self._labels.items() if read in s.reads), None)
            if label is not None and self._failure is None:
                logger.error("session %r: label %r could not be re-read: %r", self, label, error)
                self._failure = SyncError(f"label {label!r} could not be re-read", label)
                self._failure.__cause__ = error
        if self._pending or self._failure is not None:
            self._news.set()

    # -- inside ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SyncError("this session is closed")

    def _tenant_repo(self) -> Repo:
        """The repo for this session's tenant; TenancyError (before any read) if the tenant in
        `private` is missing for a multi-tenant repo, or does not match the repo's."""
        tenant = self.private.get("tenant")
        repo = self.repo
        if not repo.multi_tenant:
            if tenant not in (None, ""):
                raise TenancyError(f"a single-tenant repo takes no tenant, got {tenant!r}")
            return repo
        if tenant is None:
            raise TenancyError("a multi-tenant repo needs the tenant in private['tenant']")
        if repo.tenant is None:
            return repo.tenants.bind(tenant)
        if repo.tenant != tenant:
            raise TenancyError(
                f"private['tenant'] is {tenant!r} but the repo is bound to {repo.tenant!r}"
            )
        return repo

    def _reads_of(self, repo: Repo, spec: Label) -> list[SharedRead]:
        match spec:
            case One(_, model, id):
                return [RecordRead(repo, model, id)]
            case Many(_, model, ids):
                return [RecordRead(repo, model, id) for id in dict.fromkeys(ids or ())]
            case All(_, source, by, watch_action):
                query = source if isinstance(source, Query) else Query(source)
                if by:
                    query = query.where(**by)
                counter_key = repo.counter_key(query.model, watch_action, by)
                return [QueryRead(repo, query, counter_key)]
        raise TypeError(f"sync takes One, Many or All, not {spec!r}")

    def _kept(self, plans: Mapping[str, tuple[Label, list[SharedRead]]]) -> dict[Any, Any]:
        """For labels synced again as Many: the results the page already shows for ids that
        stay, so only new ids are read."""
        kept: dict[Any, tuple[Any, int]] = {}
        for label, (spec, _) in plans.items():
            old = self._labels.get(label)
            if isinstance(spec, Many) and old is not None and old.kind == "many":
                for read, value, at in zip(old.reads, old.held, old.versions, strict=True):
                    kept[read.identity] = (value, at)
        return kept

    def _replace(self, label: str, synced: _Synced) -> None:
        old = self._labels.get(label)
        self._labels[label] = synced
        if old is not None:  # after the new reads are held: shared keys stay watched
            for read in old.reads:
                self.hub.release(self, read)

    async def _render_once(
        self, repo: Repo, plans: Mapping[str, tuple[Label, list[SharedRead]]]
    ) -> None:
        reads = [read for _, found in plans.values() for read in found]

        async def once(tx: Repo) -> dict[SharedRead, Any]:
            results = await fetch_all(tx, reads)
            for outcome in results.values():
                if isinstance(outcome, BaseException):
                    raise outcome
            return results

        results = await repo.transaction(once)
        values = {}
        for label, (spec, found) in plans.items():
            held = [results[read] for read in found]
            values[label] = _Synced(_kind(spec), found, held, []).assigned()
        self._set_assigns(values, None)

    async def _apply(self, reads: frozenset[SharedRead], assign: AssignFunction | None) -> set[str]:
        """Take the newest results of `reads`; run the callbacks; the labels that changed."""
        old: dict[str, Any] = {}
        new: dict[str, Any] = {}
        for label, synced in self._labels.items():
            updated = False
            for index, read in enumerate(synced.reads):
                value = read.value
                if read not in reads or read.version <= synced.versions[index]:
                    continue
                if value is not synced.held[index]:
                    # A result first read by this session is compared once; after that the
                    # shared read's object is held, and a new object means a change.
                    updated = updated or synced.adopted[index] or value != synced.held[index]
                    synced.held[index] = value
                    synced.adopted[index] = True
                synced.versions[index] = read.version
            if updated:
                old[label] = self.assigns.get(label)
                new[label] = synced.assigned()
        if not new:
            return set()
        self._set_assigns(new, assign)
        if not self._callbacks:
            return set(new)
        # Labels a callback syncs (say, the ids a list names) changed too.
        self._touched = set()
        try:
            await self._run_callbacks(old)
            return set(new) | self._touched
        finally:
            self._touched = None

    def _set_assigns(self, values: dict[str, Any], assign: AssignFunction | None) -> None:
        if self._touched is not None:
            self._touched.update(values)
        custom = assign or self._assign
        if custom is None:
            self.assigns.update(values)
        else:
            custom(self, values)

    async def _run_callbacks(self, old: dict[str, Any]) -> None:
        for name, fn in list(self._callbacks.items()):
            try:
                result = fn(self, old)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as error:
                labels = ", ".join(old)
                logger.error("session %r: callback %r failed (labels %s)", self, name, labels)
                raise SyncError(f"callback {name!r} failed", next(iter(old), None)) from error
            if result is False:
                return


def _kind(spec: Label) -> Literal["one", "many", "all"]:
    return "one" if isinstance(spec, One) else "many" if isinstance(spec, Many) else "all"


def _check_event(event: str) -> None:
    if event != "handle_assigns":
        raise ValueError(f"the only callback event is 'handle_assigns', not {event!r}")
