"""/metrics in Prometheus's text format: live streams and sessions, storage watches, pushes,
re-reads, and how long a change takes from its watch firing to the browser's socket. Each
uvicorn worker reports its own figures (scrape each worker, or sum them)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fdbsync.sync import hub_for

from .store import engine, live

router = APIRouter()
registry = CollectorRegistry()

push_latency = Histogram(
    "fdbsync_push_latency_seconds",
    "From a storage watch firing to the fragments being written to the page's stream.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=registry,
)
live.push_observers.append(push_latency.observe)


class LiveCollector(Collector):
    """Reads the live set-up's and the watch hub's figures at each scrape."""

    def collect(self) -> Iterator[Metric]:
        stats = live.stats()
        hub = hub_for(engine).stats()
        gauges = {
            "fdbsync_live_streams": ("Open live streams.", stats.streams),
            "fdbsync_live_sessions": ("Live sessions holding watches.", hub.sessions),
            "fdbsync_storage_watches": (
                "Armed storage watches (one per key).",
                hub.storage_watches,
            ),
            "fdbsync_shared_reads": ("Distinct reads the sessions share.", hub.reads),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=value)
        counters = {
            "fdbsync_pushes": ("Messages pushed because data changed.", stats.pushes),
            "fdbsync_messages": ("Messages sent, on connect or on change.", stats.messages),
            "fdbsync_fragments": ("Fragments sent.", stats.fragments),
            "fdbsync_fragment_renders": ("Fragments rendered.", stats.renders),
            "fdbsync_fragment_shared_renders": (
                "Fragments taken from an equal render for another page.",
                stats.shared_renders,
            ),
            "fdbsync_rereads": ("Shared reads re-read after a watch fired.", hub.rereads),
            "fdbsync_watch_fires": ("Storage watches that fired.", hub.fires),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(name, doc, value=value)


registry.register(LiveCollector())


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
