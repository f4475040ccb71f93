"""Prometheus metrics, read from the actors' and supervisors' `statistics()` at scrape time."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from kefu.server.gc_pauses import BUCKETS, gc_pauses

if TYPE_CHECKING:
    from kefu.server.node import Node

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeCollector(Collector):
    """Turns each `statistics()` record of the node into metric families at scrape time."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily(
            "kefu_actor_mailbox_messages", "Messages waiting in the actor's mailbox.", labels=["actor"]
        )
        peak = GaugeMetricFamily(
            "kefu_actor_mailbox_peak_messages", "Most messages ever waiting in the mailbox.", labels=["actor"]
        )
        capacity = GaugeMetricFamily("kefu_actor_mailbox_capacity_messages", "The mailbox bound.", labels=["actor"])
        handled = CounterMetricFamily("kefu_actor_messages_handled", "Messages the actor handled.", labels=["actor"])
        refused = CounterMetricFamily(
            "kefu_actor_messages_refused", "Messages refused because the mailbox was full.", labels=["actor"]
        )
        crashes = CounterMetricFamily(
            "kefu_actor_crashes", "Actor incarnations that ended with an exception.", labels=["actor"]
        )
        restarts = CounterMetricFamily("kefu_actor_restarts", "Times the actor was restarted.", labels=["actor"])
        for stats in self.node.registry.statistics():
            size.add_metric([stats.name], stats.mailbox_size)
            peak.add_metric([stats.name], stats.mailbox_peak)
            capacity.add_metric([stats.name], stats.mailbox_capacity)
            handled.add_metric([stats.name], stats.messages_handled)
            refused.add_metric([stats.name], stats.messages_refused)
            crashes.add_metric([stats.name], stats.crashes)
            restarts.add_metric([stats.name], stats.restarts)
        yield from (size, peak, capacity, handled, refused, crashes, restarts)

        children = GaugeMetricFamily(
            "kefu_supervisor_children", "Children running under the supervisor.", labels=["supervisor"]
        )
        child_restarts = CounterMetricFamily(
            "kefu_supervisor_restarts", "Child restarts made by the supervisor.", labels=["supervisor"]
        )
        for sup in self.node.supervisor_statistics():
            children.add_metric([sup.name], sup.children)
            child_restarts.add_metric([sup.name], sup.restarts)
        yield from (children, child_restarts)

        store = self.node.store_statistics()
        if store is not None:
            yield CounterMetricFamily(
                "kefu_store_transactions", "Transactions the store committed for appends.", value=store.transactions
            )
            yield CounterMetricFamily(
                "kefu_store_appends_committed", "Appends acknowledged as durable.", value=store.appends_committed
            )
            yield CounterMetricFamily(
                "kefu_store_appends_failed", "Appends answered with an error.", value=store.appends_failed
            )
            yield GaugeMetricFamily(
                "kefu_store_largest_batch_appends", "Most appends in one transaction.", value=store.largest_batch
            )
            yield GaugeMetricFamily(
                "kefu_store_last_commit_seconds",
                "Duration of the latest append transaction.",
                value=store.last_commit_seconds,
            )

        yield from _gc_metrics()


def _gc_metrics() -> Iterator[Metric]:
    pauses = gc_pauses()
    histogram = HistogramMetricFamily(
        "kefu_gc_pause_seconds",
        "Pauses of Python's garbage collector (the whole process waits), by generation.",
        labels=["generation"],
    )
    longest = GaugeMetricFamily(
        "kefu_gc_longest_pause_seconds", "The longest collector pause so far, by generation.", labels=["generation"]
    )
    for generation in range(3):
        cumulative, buckets = 0, []
        for bound, count in zip((*BUCKETS, float("inf")), pauses.bucket_counts[generation], strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        histogram.add_metric([str(generation)], buckets, pauses.seconds[generation])
        longest.add_metric([str(generation)], pauses.longest[generation])
    yield histogram
    yield longest
    yield GaugeMetricFamily(
        "kefu_gc_frozen_objects", "Objects moved out of the collector's reach at start.", value=gc.get_freeze_count()
    )


def metrics_registry(node: Node) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
