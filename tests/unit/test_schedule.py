"""Distribution plans for cluster runs: replicate and longest-first sharding."""

from __future__ import annotations

import itertools

from madengine.execute import schedule


def test_replicate_gives_every_host_every_model_in_order():
    plan = schedule.replicate(["a", "b", "c"], ["n1", "n2"])
    assert plan == {"n1": ["a", "b", "c"], "n2": ["a", "b", "c"]}


def test_shard_assigns_each_model_exactly_once():
    keys = [f"m{i}" for i in range(12)]
    estimates = {key: float(i % 5 + 1) for i, key in enumerate(keys)}
    plan = schedule.shard(keys, ["n1", "n2", "n3"], estimates)
    assigned = sorted(k for ks in plan.values() for k in ks)
    assert assigned == sorted(keys)


def test_shard_longest_first_is_near_optimal_on_mixed_durations():
    durations = [9, 8, 7, 6, 5, 4, 3, 3, 2, 2, 1, 1]
    keys = [f"m{i}" for i in range(len(durations))]
    estimates = dict(zip(keys, map(float, durations), strict=True))
    plan = schedule.shard(keys, ["n1", "n2", "n3"], estimates)
    lower_bound = max(sum(durations) / 3, max(durations))  # no schedule can beat this
    assert schedule.makespan(plan, estimates) <= lower_bound * 1.15


def test_shard_matches_brute_force_optimum_on_small_input():
    durations = [5.0, 4.0, 3.0, 3.0, 2.0, 2.0, 1.0]
    keys = [f"m{i}" for i in range(len(durations))]
    estimates = dict(zip(keys, durations, strict=True))
    optimum = min(max(sum(d for d, h in zip(durations, hosts, strict=True) if h == n) for n in range(2))
                  for hosts in itertools.product(range(2), repeat=len(durations)))
    plan = schedule.shard(keys, ["a", "b"], estimates)
    assert schedule.makespan(plan, estimates) <= optimum * 4 / 3
    assert schedule.makespan(plan, estimates) == optimum  # LPT is exact on this input


def test_shard_is_deterministic_and_handles_more_hosts_than_models():
    plan1 = schedule.shard(["x", "y"], ["n1", "n2", "n3"], {"x": 1.0, "y": 1.0})
    plan2 = schedule.shard(["x", "y"], ["n1", "n2", "n3"], {"x": 1.0, "y": 1.0})
    assert plan1 == plan2 == {"n1": ["x"], "n2": ["y"], "n3": []}


def test_estimates_prefer_last_success_duration_then_timeout():
    rows = [
        {"model": "a", "status": "SUCCESS", "test_duration": "10.0"},
        {"model": "a", "status": "SUCCESS", "test_duration": "12.5"},
        {"model": "b", "status": "FAILURE", "test_duration": "99"},
    ]
    est = schedule.estimates_from(rows, {"ka": ("a", 600), "kb": ("b", 300), "kc": ("c", None)})
    assert est == {"ka": 12.5, "kb": 300.0, "kc": schedule.DEFAULT_ESTIMATE_S}
