"""Prometheus text exposition, written by hand (no client library needed for a few series).

Why per-endpoint latency histograms: the number that matters to annotators is the /predict round
trip; buckets around 50-250 ms show whether clicking still feels instant. The numbers are per
process: with several gunicorn workers each scrape sees the worker that answered it (the `pid`
label tells them apart).

Why every label value comes from a fixed set: a label per value a client sent (a webhook's
action, an HTTP method) would add a series per request, and /metrics would grow without bound.
Callers map input to their own fixed sets (backend.routes: webhook actions); here the methods
are mapped to the standard ones, and a counter holds at most MAX_SERIES label sets whatever a
caller passes (the rest count under "other").
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_SERIES = 64  # label sets per counter name; further ones are counted under "other"
OTHER = "other"


def _labels(pairs: dict[str, str]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(str(v))}"' for k, v in pairs.items()) + "}"


class Metrics:
    """Request counters, latency histograms per endpoint and free-form counters, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.hist: dict[str, list[int]] = {}
        self.hist_sum: dict[str, float] = defaultdict(float)
        self.hist_count: dict[str, int] = defaultdict(int)
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], int] = defaultdict(int)
        # value histograms (observe_value): name -> (buckets, help), and per label set
        # [counts per bucket..., count] and the sum
        self.value_hists: dict[str, tuple[tuple[float, ...], str]] = {}
        self.value_counts: dict[tuple[str, tuple[tuple[str, str], ...]], list[int]] = {}
        self.value_sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else OTHER  # any token is a valid method
        with self._lock:
            self.requests[(endpoint, method, str(status))] += 1
            counts = self.hist.setdefault(endpoint, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.hist_sum[endpoint] += seconds
            self.hist_count[endpoint] += 1

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            if key not in self.counters and labels and sum(
                    1 for n, _ in self.counters if n == name) >= MAX_SERIES:
                key = (name, tuple((k, OTHER) for k, _ in key[1]))
            self.counters[key] += amount

    def observe_value(self, name: str, value: float, buckets: tuple[float, ...], help: str,
                      **labels: str) -> None:
        """One observation of histogram `name` (clicksmith_<name>): at most MAX_SERIES label
        sets, further ones under "other", as for counters."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self.value_hists.setdefault(name, (tuple(buckets), help))
            bounds = self.value_hists[name][0]
            if key not in self.value_counts and labels and sum(
                    1 for n, _ in self.value_counts if n == name) >= MAX_SERIES:
                key = (name, tuple((k, OTHER) for k, _ in key[1]))
            counts = self.value_counts.setdefault(key, [0] * (len(bounds) + 1))
            for i, bound in enumerate(bounds):
                if value <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self.value_sums[key] += value

    def render(self, model_version: str, model_state: str, extra: dict[str, float]) -> str:
        pid = str(os.getpid())
        lines = [
            "# HELP clicksmith_requests_total HTTP requests answered, by endpoint and status.",
            "# TYPE clicksmith_requests_total counter",
        ]
        with self._lock:
            for (endpoint, method, status), n in sorted(self.requests.items()):
                labels = _labels(
                    {"endpoint": endpoint, "method": method, "status": status, "pid": pid}
                )
                lines.append(f"clicksmith_requests_total{labels} {n}")
            lines += [
                "# HELP clicksmith_request_duration_seconds Time to answer, by endpoint.",
                "# TYPE clicksmith_request_duration_seconds histogram",
            ]
            for endpoint, counts in sorted(self.hist.items()):
                for bound, n in zip(BUCKETS, counts, strict=True):
                    labels = _labels({"endpoint": endpoint, "le": repr(bound), "pid": pid})
                    lines.append(f"clicksmith_request_duration_seconds_bucket{labels} {n}")
                total = self.hist_count[endpoint]
                labels = _labels({"endpoint": endpoint, "le": "+Inf", "pid": pid})
                lines.append(f"clicksmith_request_duration_seconds_bucket{labels} {total}")
                base = _labels({"endpoint": endpoint, "pid": pid})
                lines.append(
                    f"clicksmith_request_duration_seconds_sum{base} {self.hist_sum[endpoint]:.6f}"
                )
                lines.append(f"clicksmith_request_duration_seconds_count{base} {total}")
            names = sorted({name for name, _ in self.counters})
            for name in names:
                lines.append(f"# TYPE clicksmith_{name}_total counter")
                for (n, labels), value in sorted(self.counters.items()):
                    if n == name:
                        pairs = dict(labels) | {"pid": pid}
                        lines.append(f"clicksmith_{name}_total{_labels(pairs)} {value}")
            for name, (bounds, help_text) in sorted(self.value_hists.items()):
                lines += [f"# HELP clicksmith_{name} {help_text}",
                          f"# TYPE clicksmith_{name} histogram"]
                for (n, labels), counts in sorted(self.value_counts.items()):
                    if n != name:
                        continue
                    pairs = dict(labels) | {"pid": pid}
                    for bound, c in zip(bounds, counts, strict=False):
                        le = _labels(pairs | {"le": repr(float(bound))})
                        lines.append(f"clicksmith_{name}_bucket{le} {c}")
                    lines.append(f"clicksmith_{name}_bucket{_labels(pairs | {'le': '+Inf'})} "
                                 f"{counts[-1]}")
                    lines.append(f"clicksmith_{name}_sum{_labels(pairs)} "
                                 f"{self.value_sums[(n, labels)]:.6f}")
                    lines.append(f"clicksmith_{name}_count{_labels(pairs)} {counts[-1]}")
        lines += [
            "# HELP clicksmith_model_info The loaded model version and its loading state.",
            "# TYPE clicksmith_model_info gauge",
            f"clicksmith_model_info{_labels({'model_version': model_version, 'state': model_state, 'pid': pid})} 1",  # noqa: E501
        ]
        for name, value in sorted(extra.items()):
            lines.append(f"# TYPE clicksmith_{name} gauge")
            lines.append(f"clicksmith_{name}{_labels({'pid': pid})} {value}")
        return "\n".join(lines) + "\n"
