"""Prometheus metrics: requests and latency per route, generated tokens, and the scheduler's batching figures
(batch size per tick, waiting queue, time in queue, tokens/s). One registry per app instance, so several apps
in one process (tests) do not share counters.

Several uvicorn workers: each process has its own scheduler and its own counters, and a scrape reaches one
worker at a time. Set PROMETHEUS_MULTIPROC_DIR to an empty directory shared by the workers (before they
start) and prometheus-client's multiprocess mode aggregates all of them in every /metrics answer: counters
and histograms are summed, the live gauges (queue length, running sequences, tokens/s) summed over the
workers that are alive.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Generation of 100 tokens takes tens of milliseconds to seconds; the buckets cover both ends.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._http()
        self._batching()
        self._drain()

    def _http(self) -> None:
        """Requests, latency and tokens per route (app/http/metrics.py and the engine count them)."""
        self.requests = Counter(
            "novel_lstm_http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "novel_lstm_http_request_duration_seconds",
            "Time from request to the last byte of the response (whole stream for SSE)",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "novel_lstm_http_requests_in_progress", "Requests being served", registry=self.registry
        )
        self.tokens = Counter(
            "novel_lstm_generated_tokens", "Tokens generated, by route", ["route"], registry=self.registry
        )

    def _batching(self) -> None:
        """Continuous batching (app/engine/scheduler.py)."""
        self.batch_size = Histogram(
            "novel_lstm_batch_size",
            "Sequences advanced together, observed once per scheduler tick",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_current = Gauge(
            "novel_lstm_batch_current_size",
            "Sequences in the batch now",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.queue_length = Gauge(
            "novel_lstm_queue_size",
            "Requests waiting for a slot in the batch",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.queue_seconds = Histogram(
            "novel_lstm_queue_duration_seconds",
            "Time from submission to joining the batch",
            buckets=_QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.scheduler_tokens = Counter(
            "novel_lstm_scheduler_tokens", "Tokens decoded by the scheduler", registry=self.registry
        )
        self.tokens_per_second = Gauge(
            "novel_lstm_tokens_per_second",
            "Tokens decoded per second over the last few seconds",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.overloaded = Counter(
            "novel_lstm_overloaded_requests",
            "Requests refused with 429 because the batch and the queue were full",
            registry=self.registry,
        )
        self.cancelled = Counter(
            "novel_lstm_cancelled_generations",
            "Generations dropped before their end because the client went away",
            registry=self.registry,
        )

    def _drain(self) -> None:
        """Graceful drain on SIGTERM (app/http/drain.py): the state, and what it refused and what it cut."""
        self.draining = Gauge(
            "novel_lstm_draining",
            "1 while this worker drains (SIGTERM received: /health answers 503, no new generations)",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.drain_refused = Counter(
            "novel_lstm_drain_refused_requests",
            "Generations refused with 503 because the worker was draining",
            registry=self.registry,
        )
        self.drain_cut = Counter(
            "novel_lstm_drain_cut_generations",
            "Generations still running at the drain timeout, ended with an error",
            registry=self.registry,
        )

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Every worker writes its values to that directory; aggregate all of them in each answer.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
