"""Pure logic of madengine.execute.slurm: settings precedence, batch scripts, time limits, the zipapp."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from madengine.errors import InvalidInputError
from madengine.execute import slurm


def test_settings_flags_win_over_context_and_card_wins_over_flags() -> None:
    context = {"slurm": {"partition": "ctx", "time": "01:00:00", "account": "acct", "bogus": 1}}
    flags = slurm.SlurmOptions(partition="flag", time="00:05:00")
    assert slurm.settings_for({}, context, flags) == {"partition": "flag", "time": "00:05:00", "account": "acct",
                                                      "nodes": 1}
    card = {"slurm": {"partition": "card"}, "distributed": {"nnodes": 3}}
    assert slurm.settings_for(card, context, flags)["partition"] == "card"
    assert slurm.settings_for(card, context, flags)["nodes"] == 3  # distributed.nnodes when slurm.nodes is absent
    assert slurm.settings_for({"slurm": {"nodes": 2}, "distributed": {"nnodes": 4}}, {}, flags)["nodes"] == 2


def test_batch_script_quotes_and_never_requeues() -> None:
    text = slurm.batch_script(name="mad-r-x", run_id="r", key="k; rm -rf /", settings={"partition": "a b", "nodes": 1},
                              time_limit="10", out_path="/o/%j.out", executor="/s/executor.pyz", request="/s/r.json")
    assert "#SBATCH --no-requeue" in text
    assert "#SBATCH --comment='madengine:r:k; rm -rf /'" in text
    assert "#SBATCH --partition='a b'" in text and "#SBATCH --time=10" in text
    assert text.rstrip().endswith("exec python3 /s/executor.pyz /s/r.json")
    multi = slurm.batch_script(name="n", run_id="r", key="k", settings={"nodes": 3}, time_limit="", out_path="/o",
                               executor="/e.pyz", request="/r.json")
    assert "exec srun --ntasks-per-node=1" in multi and "export MASTER_ADDR" in multi and "--time" not in multi
    self_managed = slurm.batch_script(name="n", run_id="r", key="k", settings={"nodes": 3}, time_limit="",
                                      out_path="/o", executor="/e.pyz", request="/r.json", self_managed=True)
    assert "srun" not in self_managed and "#SBATCH --nodes=3" in self_managed


def test_time_limit_is_card_timeout_plus_margin_in_minutes() -> None:
    assert slurm.time_limit_for({"timeout": 60}, {}, {}, -1) == "3"  # (60 + 120) s -> 3 min
    assert slurm.time_limit_for({}, {}, {}, 0) == ""  # no timeout: no --time
    assert slurm.time_limit_for({}, {}, {"time": "00:10:00"}, -1) == "00:10:00"
    with pytest.raises(InvalidInputError):
        slurm.time_limit_for({}, {}, {"time": "ten minutes"}, -1)


def test_executor_zipapp_holds_module_utils_and_runs(tmp_path: Path) -> None:
    target = slurm.build_executor(tmp_path / "executor.pyz")
    names = zipfile.ZipFile(target).namelist()
    assert "__main__.py" in names
    assert "ansible_collections/mad/engine/plugins/module_utils/_execute.py" in names
    # It runs with the standard library alone (-I: no PYTHONPATH, no site-packages of ours).
    request = tmp_path / "r.json"
    out = tmp_path / "out"
    request.write_text(json.dumps({"model": {"name": "m"}, "error": "planned failure", "output_dir": str(out),
                                   "mad_dir": str(tmp_path), "run_id": "r"}))
    done = subprocess.run([sys.executable, "-I", str(target), str(request)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "m.rows.json").read_text())
    assert rows[0]["status"] == "FAILURE" and rows[0]["reason"] == "planned failure"
    assert rows[0]["deployment_type"] == "slurm"


def test_rank_rows_prefers_the_rank_with_the_performance_line(tmp_path: Path) -> None:
    job = slurm.Job(key="k", name="m", script=tmp_path / "s", rows_path=str(tmp_path / "m.rows.json"), nnodes=2,
                    gpus_per_node="", per_rank=True)
    for rank, rows in ((0, [{"status": "FAILURE", "reason": "no performance line"}]),
                       (1, [{"status": "SUCCESS", "performance": "7"}])):
        (tmp_path / f"rank{rank}").mkdir()
        (tmp_path / f"rank{rank}" / "m.rows.json").write_text(json.dumps(rows))
    assert slurm.rank_rows(job) == [{"status": "SUCCESS", "performance": "7"}]


def test_secret_named_env_leaves_the_request_for_the_job_environment() -> None:
    from madengine.execute.slurm import _without_secret_values

    request = {"context": {"docker_env_vars": {"HF_TOKEN": "hf_x", "MAX_NUM_BATCHED_TOKENS": "8192"}, "a": 1}}
    written, secrets = _without_secret_values(request)
    assert secrets == {"HF_TOKEN": "hf_x"}
    assert written["context"] == {"docker_env_vars": {"MAX_NUM_BATCHED_TOKENS": "8192"}, "a": 1}
    assert written["secret_env_names"] == ["HF_TOKEN"] and "hf_x" not in str(written)
    assert request["context"]["docker_env_vars"]["HF_TOKEN"] == "hf_x"  # the caller's request is untouched
