"""Pure logic of madengine.execute.slurm: settings precedence, batch scripts, time limits, the zipapp."""

from __future__ import annotations

import importlib.util
import json
import os
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
    assert text.rstrip().endswith("exec python3 -S /s/executor.pyz /s/r.json")
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


def _run_planned_failure(executor: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    request = tmp_path / "r.json"
    request.write_text(json.dumps({"model": {"name": "m"}, "error": "planned failure",
                                   "output_dir": str(tmp_path / "out"), "mad_dir": str(tmp_path), "run_id": "r"}))
    # -vv: zipimport says each file it tries, and stops at the one it takes.
    return subprocess.run([sys.executable, "-I", "-S", "-vv", str(executor), str(request)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_executor_zipapp_ships_bytecode_that_this_python_uses(tmp_path: Path) -> None:
    target = slurm.build_executor(tmp_path / "executor.pyz")
    archive = zipfile.ZipFile(target)
    sources = [n for n in archive.namelist() if n.endswith(".py")]
    assert sources and all(archive.read(n[:-3] + ".pyc")[:4] == importlib.util.MAGIC_NUMBER for n in sources)
    done = _run_planned_failure(target, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "# trying " in done.stderr and "module_utils/_execute.pyc\n" in done.stderr
    assert "module_utils/_execute.py\n" not in done.stderr  # the bytecode was taken: no compile


def test_executor_is_built_once_per_source_and_copied_into_each_run(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = slurm.build_executor(tmp_path / "run1" / "executor.pyz")
    [cached] = slurm.executor_cache_dir().glob("executor-*.pyz")
    built_at = cached.stat().st_mtime_ns
    old = slurm.executor_cache_dir() / "executor-0123456789abcdef01234567.pyz"  # an older madengine's
    old.write_bytes(b"old")
    os.utime(old, (0, 0))
    calls: list[Path] = []
    monkeypatch.setattr(slurm, "_write_executor", lambda target, files: calls.append(target))
    second = slurm.build_executor(tmp_path / "run2" / "executor.pyz")
    assert not calls and second.read_bytes() == first.read_bytes() and os.access(second, os.X_OK)
    assert cached.stat().st_mtime_ns >= built_at and old.exists()  # a hit neither rebuilds nor prunes
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(slurm, "_executor_files", lambda: [("__main__.py", b"print('changed')\n")])
    slurm.build_executor(tmp_path / "run3" / "executor.pyz")  # other sources: a new entry, stale ones pruned
    assert len(list(slurm.executor_cache_dir().glob("executor-*.pyz"))) == 2 and not old.exists()
    done = subprocess.run([sys.executable, "-I", "-S", str(tmp_path / "run3" / "executor.pyz")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout == "changed\n"


def test_executor_is_built_for_the_run_alone_when_the_cache_is_not_writable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # a file: no cache dir beneath it
    target = slurm.build_executor(tmp_path / "run" / "executor.pyz")
    assert "__main__.pyc" in zipfile.ZipFile(target).namelist()


def test_executor_zipapp_runs_from_source_on_a_python_with_another_magic(tmp_path: Path) -> None:
    """A node with another Python version: every .pyc has a foreign magic number, the sources run."""
    built = slurm.build_executor(tmp_path / "built.pyz")
    foreign = tmp_path / "foreign.pyz"
    with zipfile.ZipFile(built) as src, zipfile.ZipFile(foreign, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, b"\x00\x00\r\n" + data[4:] if name.endswith(".pyc") else data)
    done = _run_planned_failure(foreign, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "bad magic" in done.stderr and "module_utils/_execute.py\n" in done.stderr
    rows = json.loads((tmp_path / "out" / "m.rows.json").read_text())
    assert rows[0]["status"] == "FAILURE" and rows[0]["reason"] == "planned failure"


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
