# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""The run-context rules a real MAD hub needs (issue 14), each implemented once in module_utils:
data without a provider, .slurm/.sbatch scripts, card env_vars and their precedence, the timeout line,
the perf-line and `models`-column messages, the card url clone."""

from __future__ import annotations

import subprocess

import pytest
from ansible_collections.mad.engine.plugins.module_utils._data import (
    DataError,
    data_problems,
    plan_data,
    resolve_data,
)
from ansible_collections.mad.engine.plugins.module_utils._execute import (
    clone_url,
    preflight_model,
    run_notes,
    timeout_line,
    with_reason,
)
from ansible_collections.mad.engine.plugins.module_utils._perf import (
    FAILURE,
    parse_multiple_results,
    rows_for_run,
)
from ansible_collections.mad.engine.plugins.module_utils._runspec import (
    card_env,
    container_body,
    container_env,
    display_command,
    script_command,
    script_location,
    script_runner,
)
from ansible_collections.mad.engine.plugins.module_utils._secrets import secret_values


# ------------------------------------------------------------------------------------------------ data
def test_a_source_without_provider_runs_with_only_its_name():
    plan, problem = resolve_data("huggingface", {"huggingface": {}}, "/mad")
    assert problem == ""
    assert (plan.provider, plan.binds, plan.commands, plan.env) == ("", [], [], {"MAD_DATANAME": "huggingface"})
    with pytest.raises(DataError, match="names no provider"):  # plan_data itself is unchanged
        plan_data("huggingface", {"huggingface": {}}, "/mad")


def test_a_missing_or_failing_source_is_not_mounted_but_does_not_raise(tmp_path):
    plan, problem = resolve_data("gone", {"huggingface": {}}, "/mad")
    assert plan.env == {"MAD_DATANAME": "gone"} and plan.binds == []
    assert problem == ("data gone is NOT mounted: data source gone is not defined in the data config "
                       "(known: huggingface)")
    plan, problem = resolve_data("tiny", {"tiny": {"local": str(tmp_path / "absent")}}, "/mad")
    assert plan.binds == [] and problem.startswith("data tiny is NOT mounted: data source tiny not found: ")
    present = tmp_path / "present"
    present.mkdir()
    plan, problem = resolve_data("tiny", {"tiny": {"local": str(present)}}, "/mad")
    assert problem == "" and plan.binds == [f"{present}:/data/tiny:ro"]


def test_data_problems_are_one_per_source():
    models = [{"name": "a", "data": "hf"}, {"name": "b", "data": "gone"}, {"name": "c", "data": "gone"},
              {"name": "d"}]
    problems = data_problems(models, {"hf": {}}, "/mad")
    assert list(problems) == ["gone"] and "NOT mounted" in problems["gone"]


# ------------------------------------------------------------------------------------------- scripts
@pytest.mark.parametrize("scripts, location, runner", [
    ("scripts/sglang_disagg/run_xPyD_models.slurm", ("scripts/sglang_disagg", "run_xPyD_models.slurm"), "bash"),
    ("scripts/kv/scripts/run.slurm", ("scripts/kv/scripts", "run.slurm"), "bash"),
    ("scripts/large-ep/run.sbatch", ("scripts/large-ep", "run.sbatch"), "bash"),
    ("scripts/x/run.sh", ("scripts/x", "run.sh"), "bash"),
    ("scripts/x/main.py", ("scripts/x", "main.py"), "python3"),
    ("scripts/x", ("scripts/x", "run.sh"), "bash"),
])
def test_script_kinds(scripts, location, runner):
    model = {"name": "m", "scripts": scripts}
    assert script_location(model) == location
    assert script_runner(location[1]) == runner
    assert f"{runner} {location[1]}" in script_command(model)


def test_a_missing_script_is_a_model_problem(tmp_path):
    (tmp_path / "scripts/ok").mkdir(parents=True)
    (tmp_path / "scripts/ok/run.slurm").write_text("echo hi\n")
    assert preflight_model({"name": "ok", "scripts": "scripts/ok/run.slurm"}, str(tmp_path)) == []
    [problem] = preflight_model({"name": "bad", "scripts": "scripts/ok/gone.sh"}, str(tmp_path))
    assert "scripts/ok/gone.sh not found" in problem


# ------------------------------------------------------------------------------------------- env
def test_card_env_vars_become_strings():
    model = {"name": "m", "env_vars": {"A": "1", "N": 2, "B": True, "J": '[{"isl": 1024}]', "E": None}}
    assert card_env(model) == {"A": "1", "N": "2", "B": "true", "J": '[{"isl": 1024}]', "E": ""}
    with pytest.raises(ValueError, match="give JSON as a string"):
        card_env({"name": "m", "env_vars": {"J": {"x": [1]}}})
    assert card_env({"name": "m"}) == {}
    with pytest.raises(ValueError, match="env_vars must be an object"):
        card_env({"name": "m", "env_vars": ["A=1"]})
    with pytest.raises(ValueError, match="not an environment name"):
        card_env({"name": "m", "env_vars": {"A=B": "1"}})


def test_env_precedence_is_the_documented_one():
    """madengine's < data < card env_vars < credentials/MAD_SECRETS < tools < run options -e < docker_env_vars."""
    keys = ["MAD_DATANAME", "CARD", "CRED", "TOOL", "OPT", "CTX"]
    model = {"name": "m", "env_vars": {k: "card" for k in keys}}
    plan = {"env": {k: "data" for k in keys}}
    cred = {k: "cred" for k in keys[2:]}
    ctx = {"tools": [{"env_vars": {k: "tool" for k in keys[3:]}}], "docker_env_vars": {"CTX": "ctx"}}
    env = container_env(model, ctx, {}, [], "CPU", plan, cred, {"OPT": "opt", "CTX": "opt"})
    assert [env[k] for k in keys] == ["card", "card", "cred", "tool", "opt", "ctx"]
    model = {"name": "m", "env_vars": {"MAD_DATANAME": "card"}}
    assert container_env(model, {}, {}, [], "CPU", {"env": {"MAD_DATANAME": "data"}})["MAD_DATANAME"] == "card"


def test_env_vars_reach_the_body_and_mad_secrets_are_masked():
    model = {"name": "m", "scripts": "scripts/m/run.sh", "env_vars": {"MODEL_NAME": "Llama", "RUN_MORI": "1"}}
    body = container_body(model, "img", {"gpu_vendor": "CPU"}, {}, {}, "/mad", "/run",
                          {"MAD_SECRETS_HFTOKEN": "hf_secretvalue1"})
    assert {"MODEL_NAME=Llama", "RUN_MORI=1", "MAD_SECRETS_HFTOKEN=hf_secretvalue1"} <= set(body["Env"])
    shown = display_command(body)
    assert "hf_secretvalue1" not in shown and "MAD_SECRETS_HFTOKEN=******" in shown
    assert secret_values(body) == ["hf_secretvalue1"]  # the log pump masks it too


# ------------------------------------------------------------------------------------------- log and rows
def test_timeout_line_and_data_notes():
    assert timeout_line(7200) == "Setting timeout to 7200 seconds."
    assert timeout_line(None) == "Setting timeout to 0 seconds. (no limit)"
    plan = resolve_data("huggingface", {"huggingface": {}}, "/mad")[0]
    assert run_notes({}, 60, plan, "")[1].startswith("data huggingface names no provider")
    notes = run_notes({}, 60, plan, "data x is NOT mounted: y")
    assert notes == ["Setting timeout to 60 seconds.", "data x is NOT mounted: y"]
    assert with_reason({"reason": ""}, "n")["reason"] == "n"
    assert with_reason({"reason": "non-zero exit 1"}, "n")["reason"] == "non-zero exit 1; n"


def test_no_performance_value_on_the_performance_line():
    [row] = rows_for_run({"name": "m"}, "performance: N/A tokens_per_second\n", 0, False, 60, None)
    assert (row["status"], row["reason"]) == (FAILURE, "no performance value on the performance line")
    [row] = rows_for_run({"name": "m"}, "nothing\n", 0, False, 60, None)
    assert row["reason"] == "no performance line"


def test_multiple_results_models_column_is_model():
    rows = parse_multiple_results("models,performance,metric\na,1,x\n")
    assert rows == [{"model": "a", "performance": "1", "metric": "x"}]
    with pytest.raises(ValueError, match="lacks required column"):
        parse_multiple_results("name,performance,metric\na,1,x\n")


# ------------------------------------------------------------------------------------------- url
def test_clone_url_from_a_local_repository(tmp_path):
    repo = tmp_path / "tiny-model.git"
    repo.mkdir()
    (repo / "VERSION").write_text("v1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "VERSION"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "v1"], check=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    target = clone_url(f"file://{repo}", str(run_dir))
    assert target == str(run_dir / "tiny-model") and (run_dir / "tiny-model" / "VERSION").read_text() == "v1\n"


def test_clone_url_failure_hides_credentials(tmp_path):
    # Loopback port 1: refused at once, no network.
    with pytest.raises(OSError, match=r"cannot clone url http://\*\*\*\*\*\*@127.0.0.1:1/") as info:
        clone_url("http://user:s3cr3tpass@127.0.0.1:1/none.git", str(tmp_path), timeout=30)
    assert "s3cr3tpass" not in str(info.value)
