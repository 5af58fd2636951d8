"""Infrastructure retries across the cluster: an unreachable host is retried, and recovers.

node2's sshd is down when the run starts; once the ledger records that first attempt as an
infrastructure failure, the test brings the node back, and the retry (`--retries 1`) runs its model.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

# The module's fixtures (`mad` and the cluster lock it takes) are reused, not copied; pytest's
# default import mode puts this folder on sys.path.
from test_run_inventory import NODES, cells, mad, nap, wait_for  # noqa: F401

pytestmark = pytest.mark.docker


def _attempts(cluster_mad) -> list[dict]:
    lines = []
    for run_dir in cluster_mad.run_dirs():
        ledger = run_dir / "ledger.jsonl"
        if ledger.exists():
            lines += [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    return [line for line in lines if line.get("type") == "attempt"]


def test_unreachable_host_is_retried_and_recovers(mad, cluster, restore_nodes) -> None:  # noqa: F811
    model = mad.add("retried", nap(3, "retried-started"))
    mad.build()
    node2 = cluster.node("node2")
    cluster.kill_sshd(node2)
    with mad.background("--inventory", mad.inventory, "--retries", "1") as proc:
        wait_for(lambda: any(a["host"] == "node2" and a["infra_error"] for a in _attempts(mad)), 120,
                 "node2's failed first attempt in the ledger")
        cluster.start_node(node2)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    rows = mad.rows()
    assert cells(rows) == Counter({(host, model): 1 for host in NODES})  # retried rows replace, never add
    assert {row["status"] for row in rows} == {"SUCCESS"}
    node2_attempts = [(a["attempt"], a["status"], a["infra_error"], a["reason"])
                      for a in _attempts(mad) if a["host"] == "node2"]
    assert node2_attempts == [(1, "FAILURE", True, "host unreachable"), (2, "SUCCESS", False, "")]
    assert sorted(a["host"] for a in _attempts(mad) if a["attempt"] == 1) == sorted(NODES)


def test_no_retry_leaves_the_unreachable_rows(mad, cluster, restore_nodes) -> None:  # noqa: F811
    model = mad.add("once", nap(1, "once-started"))
    mad.build()
    cluster.kill_sshd(cluster.node("node3"))
    result = mad.run("--inventory", mad.inventory, "--retries", "0")
    assert result.code == 3, result.text
    rows = {(row["host"], row["model"]): row for row in mad.rows()}
    assert (rows["node3", model]["status"], rows["node3", model]["reason"]) == ("FAILURE", "host unreachable")
    assert [a["attempt"] for a in _attempts(mad) if a["host"] == "node3"] == [1]
