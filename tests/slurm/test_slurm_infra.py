"""tests/infra/slurm.sh on the real test cluster: status shows every node and SLURM_CONF; up is idempotent."""

from __future__ import annotations

from pathlib import Path

from _slurmlib import slurm_sh


def test_status_shows_conf_and_sinfo(slurm_conf: str) -> None:
    status = slurm_sh("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"SLURM_CONF={slurm_conf}" in status.stdout
    assert "NODELIST" in status.stdout and "debug*" in status.stdout  # sinfo -N, debug the default partition


def test_up_leaves_a_running_slurmctld_alone(slurm_conf: str) -> None:
    pidfile = Path(slurm_conf).parent / "slurmctld.pid"
    before = pidfile.read_text().strip()
    up = slurm_sh("up")
    assert up.returncode == 0, up.stderr
    assert "left alone" in up.stderr
    assert pidfile.read_text().strip() == before
    conf = Path(slurm_conf).read_text()
    for line in ("JobRequeue=0", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
                 "SchedulerParameters=sched_min_interval=0,batch_sched_delay=0", "JobCompType=jobcomp/filetxt"):
        assert line in conf
