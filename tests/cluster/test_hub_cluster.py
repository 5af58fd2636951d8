"""The hub run rules on the loopback cluster (issue 14): the `mad.engine.run_models` role runs a card the
way a local run does: a ``.slurm`` script with bash, ``"data": "huggingface"`` without a provider, the
card's ``env_vars``, and the controller's ``MAD_SECRETS_HFTOKEN`` in the container env (masked in the
fetched log, in no file of the run)."""

from __future__ import annotations

import hashlib
import json
import secrets

import pytest
from test_run_inventory import ClusterMad, cli_env, mad  # noqa: F401 - the fixture of those tests

pytestmark = pytest.mark.docker

SCRIPT = """#!/bin/bash
#SBATCH --nodes=1
echo "CARD_VAR=$CARD_VAR JSON_VAR=$JSON_VAR MAD_DATANAME=$MAD_DATANAME"
export HF_TOKEN=$MAD_SECRETS_HFTOKEN
echo "HF_TOKEN=$HF_TOKEN"
echo "HF_TOKEN sha256: $(printf %s "$HF_TOKEN" | sha256sum | cut -c1-16)"
echo "performance: 4.5 tokens_per_second"
"""


def test_role_runs_a_hub_card_with_env_vars_and_mad_secrets(mad: ClusterMad) -> None:  # noqa: F811
    mad.write("data.json", json.dumps({"huggingface": {}}))
    name = mad.name("hub")
    mad.write("scripts/hub/run_xPyD.slurm", SCRIPT)
    mad.models.append({"name": name, "tags": [mad.uid], "dockerfile": "docker/base",
                       "scripts": "scripts/hub/run_xPyD.slurm", "data": "huggingface", "n_gpus": "-1",
                       "env_vars": {"CARD_VAR": "from-card", "JSON_VAR": '{"isl": [1024]}'}})
    mad.save()
    mad.build()
    token = "hf_" + secrets.token_hex(12)
    res = mad.run("--inventory", mad.inventory, "--limit", "node2", env=cli_env(MAD_SECRETS_HFTOKEN=token))
    assert res.code == 0, res.text
    [row] = mad.rows()
    assert (row["host"], row["status"], row["performance"], row["reason"]) == ("node2", "SUCCESS", "4.5", ""), row
    [run_dir] = mad.run_dirs()
    [log] = list((run_dir / "results" / "node2").rglob("*.run.live.log"))
    text = log.read_text()
    assert 'CARD_VAR=from-card JSON_VAR={"isl": [1024]} MAD_DATANAME=huggingface' in text
    assert f"HF_TOKEN sha256: {hashlib.sha256(token.encode()).hexdigest()[:16]}" in text
    assert "HF_TOKEN=******" in text and "Setting timeout to 7200 seconds." in text
    leaks = [str(p) for p in mad.root.rglob("*") if p.is_file() and not p.is_symlink()
             and token.encode() in p.read_bytes()]
    assert leaks == [] and token not in res.text
