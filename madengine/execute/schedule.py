"""Who runs what in a cluster run: replicate (every host, every model) or shard (longest-first greedy).

Pure functions: manifest keys + hosts + duration estimates in, a host → keys assignment out.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from ansible_collections.mad.engine.plugins.module_utils._runspec import DEFAULT_TIMEOUT

from madengine.results import read_rows

DEFAULT_ESTIMATE_S = float(DEFAULT_TIMEOUT)


def replicate(keys: Sequence[str], hosts: Sequence[str]) -> dict[str, list[str]]:
    return {host: list(keys) for host in hosts}


def shard(keys: Sequence[str], hosts: Sequence[str], estimates: Mapping[str, float]) -> dict[str, list[str]]:
    """Longest-processing-time-first: each model, longest first, goes to the least-loaded host.

    Ties break on host order, so the plan is deterministic. Each host keeps the longest-first order,
    which also bounds the makespan at 4/3 of the optimum.
    """
    plan: dict[str, list[str]] = {host: [] for host in hosts}
    if not hosts:
        return plan
    heap = [(0.0, index, host) for index, host in enumerate(hosts)]
    ordered = sorted(keys, key=lambda key: (-float(estimates.get(key, DEFAULT_ESTIMATE_S)), keys.index(key)))
    for key in ordered:
        load, index, host = heapq.heappop(heap)
        plan[host].append(key)
        heapq.heappush(heap, (load + float(estimates.get(key, DEFAULT_ESTIMATE_S)), index, host))
    return plan


def makespan(plan: Mapping[str, Sequence[str]], estimates: Mapping[str, float]) -> float:
    return max((sum(float(estimates.get(k, DEFAULT_ESTIMATE_S)) for k in keys) for keys in plan.values()),
               default=0.0)


def estimates_from(perf_csv_rows: list[dict[str, str]], models: Mapping[str, tuple[str, int | None]],
                   ) -> dict[str, float]:
    """Per manifest key: the last known SUCCESS duration of that model in perf.csv, else its timeout.

    `models` maps key → (model name, timeout seconds or None).
    """
    last: dict[str, float] = {}
    for row in perf_csv_rows:
        if row.get("status") == "SUCCESS" and row.get("test_duration"):
            try:
                last[row.get("model", "")] = float(row["test_duration"])
            except ValueError:
                continue
    return {key: last.get(name, float(timeout) if timeout else DEFAULT_ESTIMATE_S)
            for key, (name, timeout) in models.items()}


def estimates_for(perf_csv: str, models: Mapping[str, tuple[str, int | None]]) -> dict[str, float]:
    return estimates_from(read_rows(perf_csv), models)
