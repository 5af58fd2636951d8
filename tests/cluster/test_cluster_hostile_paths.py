"""Hostile cards on the loopback cluster (issue 16 items 5 and 10): nothing outside the MAD package is sent.

An absolute ``scripts`` path (as ``/etc/ssh/run.sh``) used to copy the controller's folder, private keys
included, into every node's ``<workdir>/mad/``; a ``..`` path was packed and sent, and every node then
refused the whole tarball, failing every model of the run. Now the planner checks each card before
anything is sent: those cards are FAILURE rows on every node, naming the card and the field, and the
good model runs everywhere.
"""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

# The module's fixtures (`mad` and the cluster lock it takes) are reused, not copied.
from test_run_inventory import NODES, OK, cells, mad  # noqa: F401

pytestmark = pytest.mark.docker

SECRET = "CONTROLLER-host-key-distinctive-5518"


def test_cards_leaving_the_package_send_nothing_and_fail_only_themselves(mad, cluster, tmp_path) -> None:  # noqa: F811
    outside = tmp_path / "outside"
    outside.mkdir()
    key_name = f"{mad.uid}_ssh_host_ed25519_key"
    (outside / key_name).write_text(f"{SECRET}\n")
    (outside / "run.sh").write_text(f"#!/bin/bash\n# {SECRET}\necho 'performance: 7 x'\n")
    good = mad.add("good", OK)
    hostile = {mad.name("abs"): str(outside / "run.sh"), mad.name("dotdot"): "../outside/run.sh"}
    for name, scripts in hostile.items():
        mad.models.append({"name": name, "tags": [mad.uid, name], "dockerfile": "docker/base", "scripts": scripts,
                           "n_gpus": "1", "args": ""})
    mad.save()
    mad.build()
    res = mad.run("--inventory", mad.inventory)
    assert res.code == 3, res.text
    rows = mad.rows()
    assert cells(rows) == Counter({(host, name): 1 for host in NODES for name in [good, *hostile]})
    for row in rows:
        if row["model"] == good:
            assert row["status"] == "SUCCESS", row
        else:
            assert row["status"] == "FAILURE", row
            assert f"model {row['model']}: scripts" in row["reason"] and "outside the MAD package" in row["reason"], row
            assert "refusing to extract" not in row["reason"], row
    assert SECRET not in res.text
    for node in cluster.nodes:
        assert not list((node.workdir / "mad").rglob(key_name)), node.name
        assert not (node.workdir / "mad" / str(outside).lstrip("/")).exists(), node.name
        assert not (node.workdir / "outside").exists(), node.name


def test_symlinks_a_model_plants_on_a_node_are_not_followed_by_the_next_run(mad, cluster, tmp_path) -> None:  # noqa: F811
    """A model on node2 plants links in the node's MAD copy (bind-mounted writable at /myworkspace): one to
    a host file beside the other model's script, and one in place of that script. The next run syncs the
    real script back and copies the run directory without following the link out."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "key").write_text(f"{SECRET}\n")
    victim = mad.add("victim", "cat leak 2>&1 | head -1\n" + OK)  # runs first on each run
    mad.add("planter", f"ln -sfn {outside / 'key'} /myworkspace/scripts/victim/leak\n"
                       f"ln -sf {outside / 'key'} /myworkspace/scripts/victim/run.sh\n" + OK)
    mad.build()
    node_copy = cluster.node("node2").workdir / "mad" / "scripts" / "victim"
    try:
        for attempt in (1, 2):
            res = mad.run("--inventory", mad.inventory, "--limit", "node2")
            assert res.code == 0, (attempt, res.text)
            assert (node_copy / "leak").is_symlink() and (node_copy / "run.sh").is_symlink()  # planted on the node
    finally:
        shutil.rmtree(node_copy, ignore_errors=True)  # the nodes' MAD copies outlive a test
    rows = [row for row in mad.rows() if row["model"] == victim]
    assert [(row["status"], row["host"]) for row in rows] == [("SUCCESS", "node2")] * 2, rows
    assert (outside / "key").read_text() == f"{SECRET}\n"
    for path in mad.root.rglob("*"):  # perf.csv, the ledgers and every fetched log
        if path.is_file() and not path.is_symlink():
            assert SECRET not in path.read_text(errors="replace"), path
