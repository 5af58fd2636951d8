"""Hostile cards on the loopback cluster (issue 16 items 5 and 10): nothing outside the MAD package is sent.

An absolute ``scripts`` path (as ``/etc/ssh/run.sh``) used to copy the controller's folder, private keys
included, into every node's ``<workdir>/mad/``; a ``..`` path was packed and sent, and every node then
refused the whole tarball, failing every model of the run. Now the planner checks each card before
anything is sent: those cards are FAILURE rows on every node, naming the card and the field, and the
good model runs everywhere.
"""

from __future__ import annotations

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
