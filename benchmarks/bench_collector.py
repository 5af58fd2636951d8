"""The cluster event collector at internet scale, by simulation (no hosts, no Ansible).

Feeds ``madengine.execute.ansible._Collector`` the event stream ansible-runner hands the CLI for a run of
H hosts x M models (default 500 x 20), in the shape of a real run's ``artifacts/play-N/job_events``:
per host ``runner_on_start``/``runner_on_ok`` of the set_fact, host_facts, image, sync and fetch tasks,
``runner_on_start`` of the run task, one ``runner_item_on_ok`` per model (its perf row and log tail, about
7 KB) and the task's closing ``runner_on_ok`` with every item again (about M x 7 KB), plus the
``playbook_on_task_start`` events. As ansible-runner does in the CLI process, every event is first written
as ``job_events/<counter>-<uuid>.json`` (tmp file + rename), then handed to the collector, which appends
the rows to perf.csv and the attempts to the ledger (both real, in a temp dir).

Prints events/s, controller CPU per event (process time), perf.csv rows/s, ledger lines/s, peak memory
(the process's max RSS; with ``BENCH_TRACEMALLOC=1`` also the traced Python peak), and the projected CPU
share of one core for 1,000 hosts at 1 event/s each. Target: that share < 100 % (the controller keeps up on one core).

Run: ``python3 benchmarks/bench_collector.py`` (``BENCH_HOSTS``, default 500; ``BENCH_MODELS``, default 20;
``BENCH_NO_EVENT_FILES=1`` leaves out the job_events files, to see the collector's share alone).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collections"))

from madengine.execute.ansible import _Collector  # noqa: E402
from madengine.execute.local import RunOptions, row_sink  # noqa: E402
from madengine.ledger import Ledger  # noqa: E402

RUN_ID = "20261202-000000-bench0"
PLAYBOOK = "/x/collections/ansible_collections/mad/engine/playbooks/run_models.yml"
TAIL = ["$ docker run --network host -v /w/mad:/myworkspace:rw -e MAD_MODEL_NAME=m -w /myworkspace img "
        "bash -c 'cd /myworkspace/run_directory && bash run.sh; rc=$?; exit $rc'",
        "Setting timeout to 7200 seconds.", "ok: model on host", "performance: 42.5 items_per_second"] * 3


def _row(host: str, model: str) -> dict[str, str]:
    row = {k: "" for k in ("n_gpus", "nnodes", "gpus_per_node", "training_precision", "pipeline", "args",
                           "git_commit", "relative_change", "dataname", "data_provider_type", "data_size",
                           "data_download_duration", "build_number", "additional_docker_run_options",
                           "gpu_architecture", "reason")}
    row.update(model=model, tags=f"bench,{model}", docker_file="docker/base.Dockerfile",
               base_docker="madengine-base:bookworm", docker_sha="sha256:" + "f" * 64,
               docker_image="127.0.0.1:5000/ci-" + model + "@sha256:" + "e" * 64, machine_name=host,
               deployment_type="local", launcher="docker", performance="42.5", metric="items_per_second",
               status="SUCCESS", build_duration="0.275", test_duration="5.012", host=host, run_id=RUN_ID,
               image_digest="sha256:" + "e" * 64, started_at="2026-12-02T19:40:11+00:00")
    return row


class Stream:
    """Events in ansible-runner's shape, numbered as it numbers them."""

    def __init__(self) -> None:
        self.counter = 0

    def event(self, kind: str, host: str | None, action: str | None, res: dict[str, Any] | None = None,
              stdout: str = "") -> dict[str, Any]:
        self.counter += 1
        data: dict[str, Any] = {"playbook": PLAYBOOK, "playbook_uuid": "p", "play": "Run MAD models",
                                "play_uuid": "q", "play_pattern": "all", "task": action or "",
                                "task_uuid": "t", "task_action": action, "resolved_action": action,
                                "task_args": "", "task_path": "/x/roles/run_models/tasks/main.yml:68",
                                "resolved_role": "mad.engine.run_models", "role": "run_models"}
        if host:
            data.update(host=host, remote_addr=host)
        if res is not None:
            data["res"] = res
        return {"uuid": str(uuid.uuid4()), "counter": self.counter, "stdout": stdout, "start_line": 0,
                "end_line": 0, "runner_ident": "play-1", "event": kind, "pid": 4435,
                "created": "2026-12-02T19:40:15.041592+00:00", "parent_uuid": "t", "event_data": data}


def events(hosts: list[str], models: list[str]):
    """The whole run's events, task by task (a free-strategy run interleaves them the same way)."""
    s = Stream()
    simple = [("ansible.builtin.set_fact", {"ansible_facts": {"_run_models_plan": {"models": models}}}),
              ("mad.engine.host_facts", {"ansible_facts": {"mad_host": {"gpu_vendor": "CPU"}},
                                         "images_present": ["img"],
                                         "invocation": {"module_args": {"images": ["img"]}}}),
              ("mad.engine.sync", {"changed": True, "copied": 3})]
    for action, res in simple:
        yield s.event("playbook_on_task_start", None, action)
        for host in hosts:
            yield s.event("runner_on_start", host, action)
            yield s.event("runner_on_ok", host, action, res, f"ok: [{host}]")
    action = "mad.engine.run_model"
    yield s.event("playbook_on_task_start", None, action)
    for host in hosts:
        yield s.event("runner_on_start", host, action)
    for host in hosts:
        items = []
        for model in models:
            res = {"model": model, "key": model, "rows": [_row(host, model)], "log_path": f"/w/{model}.log",
                   "log_tail": TAIL, "rows_path": f"/w/{model}.rows.json", "container": f"madengine-{model}",
                   "kept": False, "exec_line": "", "infra_error": False, "msg": f"{model}: SUCCESS",
                   "changed": True, "item": {"name": model}}
            items.append(res)
            yield s.event("runner_item_on_ok", host, action, res, f"changed: [{host}] => (item={model})")
        yield s.event("runner_on_ok", host, action, {"results": items, "changed": True})
    yield s.event("playbook_on_task_start", None, "mad.engine.sync")
    for host in hosts:
        yield s.event("runner_on_start", host, "mad.engine.sync")
        yield s.event("runner_on_ok", host, "mad.engine.sync", {"changed": True})


def write_event(job_events: Path, event: dict[str, Any]) -> None:
    """What ansible-runner's Runner.event_callback does with each event before the handler sees it."""
    name = job_events / f"{event['counter']}-{event['uuid']}.json"
    tmp = str(name) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR)
        json.dump(event, handle)
    os.rename(tmp, name)


def main() -> None:
    n_hosts = int(os.environ.get("BENCH_HOSTS", "500"))
    n_models = int(os.environ.get("BENCH_MODELS", "20"))
    with_files = os.environ.get("BENCH_NO_EVENT_FILES") != "1"
    hosts = [f"host{i:04d}" for i in range(n_hosts)]
    models = [f"model{j:02d}" for j in range(n_models)]
    work = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    try:
        runs = work / "runs"
        job_events = runs / RUN_ID / "artifacts" / "play-1" / "job_events"
        job_events.mkdir(parents=True)
        options = RunOptions(output=work / "perf.csv")
        ledger = Ledger(runs, RUN_ID)
        plan = {host: list(models) for host in hosts}
        ledger.start({"args": {}, "cells": [[m, h] for h in hosts for m in models]})
        names = {m: m for m in models}
        collector = _Collector(plan, names, row_sink(options), lambda *_: None, RUN_ID, ledger, final=True)
        traced = os.environ.get("BENCH_TRACEMALLOC") == "1"  # exact peak, but Python runs 2-5x slower
        if traced:
            tracemalloc.start()
        count = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for event in events(hosts, models):
            if with_files:
                write_event(job_events, event)
            collector.on_event(event)
            count += 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
        tracemalloc.stop()
        rows = len(options.output.read_text(encoding="utf-8").splitlines()) - 1
        ledger_lines = len((runs / RUN_ID / "ledger.jsonl").read_text(encoding="utf-8").splitlines())
        assert rows == n_hosts * n_models, rows
        per_event = cpu / count
        print(f"hosts x models          {n_hosts} x {n_models} ({len(collector.done)} cells settled)")
        print(f"events                  {count} ({'with' if with_files else 'without'} job_events files)")
        print(f"wall / controller CPU   {wall:.2f} s / {cpu:.2f} s")
        print(f"events/s                {count / wall:,.0f} (wall), {count / cpu:,.0f} (per CPU second)")
        print(f"CPU per event           {per_event * 1e6:.0f} us")
        print(f"perf.csv rows/s         {rows / wall:,.0f} ({rows} rows)")
        print(f"ledger lines/s          {ledger_lines / wall:,.0f} ({ledger_lines} lines)")
        print(f"peak memory             {f'{peak / 2**20:.1f} MiB traced, ' if traced else ''}"
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB max RSS")
        share = 1000 * per_event
        print(f"1,000 hosts x 1 event/s {share * 100:.1f} % of one core "
              f"({'keeps up' if share < 1 else 'does NOT keep up'})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
