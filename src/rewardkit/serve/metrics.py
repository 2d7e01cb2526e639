"""The server's Prometheus metrics (one registry per app)."""

from __future__ import annotations


class Metrics:
    """Prometheus metrics of one app (its own registry)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = CollectorRegistry()
        self.registry = r
        self.requests = Counter("rewardkit_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.sequences = Counter("rewardkit_sequences", "sequences scored", registry=r)
        self.tokens = Counter("rewardkit_tokens", "real tokens scored", registry=r)
        self.padded = Counter("rewardkit_padded_tokens", "tokens computed, padding included", registry=r)
        self.dropped = Counter("rewardkit_dropped_jobs", "jobs dropped: their client went away", registry=r)
        self.faults = Counter("rewardkit_engine_faults", "engine calls failed by the model", registry=r)
        buckets = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
        self.batch = Histogram(
            "rewardkit_batch_sequences", "sequences per engine batch", buckets=buckets, registry=r
        )
        self.pool = Histogram(
            "rewardkit_pool_requests", "requests pooled into one engine call", buckets=buckets, registry=r
        )
        self.queue = Gauge("rewardkit_queue_sequences", "sequences waiting to be scored", registry=r)
        self.latency = Histogram(
            "rewardkit_request_latency_seconds",
            "request latency",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )

    def observe_batch(self, sequences: int, tokens: int, padded: int) -> None:
        self.batch.observe(sequences)
        self.tokens.inc(tokens)
        self.padded.inc(padded)
