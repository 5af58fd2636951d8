"""madengine/execute/ansible.py, its pure logic: how `run --inventory` turns ansible-runner events into the
live display's states and rows, its fork count, what it keeps out of extra vars, how it words host
failures, and its inventory and distribution checks. tests/cluster/ runs the real thing (and
test_collector_reliability.py the collector under hostile events)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from madengine.execute.ansible import _Collector
from madengine.ledger import Ledger
from madengine.results import ResultsSink

PLAN = {"node2": ["ci-a", "ci-b"]}
NAMES = {"ci-a": "a", "ci-b": "b"}


class Rows(list):
    """The perf.csv side of a ResultsSink, in memory; the ledger side is the real one."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.sink = ResultsSink(Path("unused.csv"), ledger, "r1")
        self.sink.perf.append = self.extend  # type: ignore[method-assign]


def collector(tmp_path: Path) -> tuple[_Collector, list[tuple[str, str]], list[dict[str, str]]]:
    shown: list[tuple[str, str]] = []
    ledger = Ledger(tmp_path, "r1")
    ledger.start({"cells": []})
    rows = Rows(ledger)
    events = _Collector(PLAN, NAMES, rows.sink, lambda state, cell, data: shown.append((state, cell)), "r1",
                        ledger, final=True)
    return events, shown, rows


def event(kind: str, action: str, res: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": "node2", "task_action": action, "res": res or {}}}


def facts(asked: int, present: int) -> dict[str, Any]:
    images = [{"name": f"img{i}"} for i in range(asked)]
    return {"images_present": [i["name"] for i in images[:present]],
            "invocation": {"module_args": {"images": images}}}


def test_pulling_is_shown_only_when_the_host_lacks_an_image(tmp_path: Path) -> None:
    events, shown, _ = collector(tmp_path)
    events.on_event(event("runner_on_ok", "mad.engine.host_facts", facts(asked=2, present=2)))
    events.on_event(event("runner_on_start", "mad.engine.image"))  # queued even for an empty loop
    assert shown == []  # warm host: nothing to pull
    events.on_event(event("runner_on_ok", "mad.engine.host_facts", facts(asked=2, present=1)))
    assert shown == [("pull", "node2 · a"), ("pull", "node2 · b")]


def test_rows_arrive_per_model_and_the_next_one_runs(tmp_path: Path) -> None:
    events, shown, rows = collector(tmp_path)
    events.on_event(event("runner_on_start", "mad.engine.run_model"))
    row = {"model": "a", "status": "SUCCESS", "host": "node2", "run_id": "r1"}
    events.on_event(event("runner_item_on_ok", "mad.engine.run_model", {"model": "a", "rows": [row]}))
    assert rows == [row]
    assert shown == [("running", "node2 · a"), ("done", "node2 · a"), ("running", "node2 · b")]
    events.on_event(event("runner_on_unreachable", ""))
    assert [(r["model"], r["status"], r["reason"]) for r in rows[1:]] == [("b", "FAILURE", "host unreachable")]


# ------------------------------------------------------------------------------------------ the rest
def test_one_fork_per_host_unless_given(tmp_path: Path) -> None:
    from madengine.execute.ansible import MAX_FORKS, ClusterOptions, _forks

    inventory = tmp_path / "hosts.yml"
    assert _forks(ClusterOptions(inventory=inventory), {f"h{i}": [] for i in range(3)}) == 3
    assert _forks(ClusterOptions(inventory=inventory), {f"h{i}": [] for i in range(500)}) == MAX_FORKS
    assert _forks(ClusterOptions(inventory=inventory, forks=2), {f"h{i}": [] for i in range(8)}) == 2
    assert _forks(ClusterOptions(inventory=inventory), {}) == 1


def test_secret_env_leaves_the_context_and_other_secrets_are_masked() -> None:
    from madengine.execute.ansible import _split_secrets

    context = {"docker_env_vars": {"HF_TOKEN": "hf-secret", "MAX_NUM_BATCHED_TOKENS": "8192", "EMPTY_TOKEN": ""},
               "registry_password": "pw", "gpu_vendor": "AMD"}
    public, secret = _split_secrets(context)
    assert secret == {"HF_TOKEN": "hf-secret"}
    assert public["docker_env_vars"] == {"MAX_NUM_BATCHED_TOKENS": "8192", "EMPTY_TOKEN": ""}
    assert public["registry_password"] != "pw" and public["gpu_vendor"] == "AMD"
    assert "hf-secret" not in repr(public) and context["docker_env_vars"]["HF_TOKEN"] == "hf-secret"


def test_host_failures_are_worded_from_what_ansible_says() -> None:
    from madengine.execute.ansible import _failure_message, _host_key_refusal

    loop = {"msg": "One or more items failed", "results": [{"failed": False}, {"failed": True, "msg": "sync of x"}]}
    assert _failure_message(loop) == "sync of x"
    assert _failure_message({"msg": "plain"}) == "plain"
    changed = ("@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
               "Host key for 127.0.0.2 has changed and you have requested strict checking.\n"
               "Host key verification failed.")
    assert _host_key_refusal(changed) == "Host key for 127.0.0.2 has changed and you have requested strict checking."
    assert _host_key_refusal("ssh: connect to host 127.0.0.9 port 22: Connection refused") == ""


def test_inventory_and_distribution_errors_are_bad_input(tmp_path: Path) -> None:
    import pytest

    from madengine.errors import InvalidInputError
    from madengine.execute.ansible import ClusterOptions, inventory_hosts, plan_cluster
    from madengine.execute.local import RunOptions
    from madengine.manifest import Manifest

    with pytest.raises(InvalidInputError, match="Inventory not found"):
        inventory_hosts(tmp_path / "nope.yml", None)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    node1: {ansible_host: 127.0.0.2}\n    node2: {ansible_host: 127.0.0.3}\n")
    assert inventory_hosts(inventory, None) == ["node1", "node2"]
    assert inventory_hosts(inventory, "node2") == ["node2"]
    with pytest.raises(InvalidInputError, match="no hosts matching 'node9'"):
        inventory_hosts(inventory, "node9")
    with pytest.raises(InvalidInputError, match="--distribute 'spread'"):
        plan_cluster(Manifest(), RunOptions(output=tmp_path / "perf.csv"),
                     ClusterOptions(inventory=inventory, distribute="spread"))
