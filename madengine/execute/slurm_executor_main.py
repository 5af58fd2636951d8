"""``__main__`` of the SLURM job's executor zipapp (``python3 -S executor.pyz REQUEST.json``).

Runs on a SLURM node with only Python 3 and a Docker engine (``DOCKER_HOST``, else the default socket):
makes the image present (pull by digest, or ``docker load`` of a tarball in the shared directory), then
runs the request with the collection's ``run_request``, the code behind the ``mad.engine.run_model``
module, which writes the rows JSON beside the log. Standard library only. SIGTERM (``scancel``, the
job's time limit) becomes KeyboardInterrupt, on which the executor removes the running container.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from ansible_collections.mad.engine.plugins.module_utils._engine import EngineClient, EngineError
from ansible_collections.mad.engine.plugins.module_utils._execute import log_path
from ansible_collections.mad.engine.plugins.module_utils._image import ensure_image, load_image
from ansible_collections.mad.engine.plugins.module_utils._perf import PerfScanner, failure_row, rows_for_run
from ansible_collections.mad.engine.plugins.module_utils._request import (
    pull_failure_reason,
    rows_path,
    run_request,
    write_rows,
)
from ansible_collections.mad.engine.plugins.module_utils._runspec import run_timeout


def _terminate(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


#: ROCm madengine 2.x's launcher variables, set in every rank's container of a multi-node job.
def _runner(launcher, nnodes, nproc, rank, addr, port):
    if launcher == "deepspeed":
        return (f"deepspeed --num_nodes {nnodes} --num_gpus {nproc} --node_rank {rank} "
                f"--master_addr {addr} --master_port {port}")
    if launcher in ("torchrun", "torchtitan", "megatron", "primus"):
        return (f"torchrun --nnodes={nnodes} --nproc_per_node={nproc} --node_rank={rank} "
                f"--master_addr={addr} --master_port={port}")
    return ""  # vllm/sglang: the script reads NNODES/NODE_RANK/MASTER_ADDR itself


def _multi_node(request):
    """A rank of a multi-node job (SLURM_NNODES > 1): its own results dir and the launcher env."""
    nnodes = int(os.environ.get("SLURM_NNODES") or os.environ.get("SLURM_JOB_NUM_NODES") or 1)
    if nnodes <= 1:
        return
    rank = int(os.environ.get("SLURM_NODEID") or 0)
    dist = request["model"].get("distributed") or {}
    nproc = int(dist.get("nproc_per_node") or request["model"].get("n_gpus") or 1)
    addr = os.environ.get("MASTER_ADDR") or "127.0.0.1"
    port = os.environ.get("MASTER_PORT") or "29500"
    env = {"NNODES": str(nnodes), "NODE_RANK": str(rank), "RANK": str(rank), "MASTER_ADDR": addr,
           "MASTER_PORT": port, "NPROC_PER_NODE": str(nproc), "WORLD_SIZE": str(nnodes * nproc),
           "MAD_MULTI_NODE_RUNNER": _runner(str(dist.get("launcher") or ""), nnodes, nproc, rank, addr, port)}
    context = dict(request.get("context") or {})
    context["docker_env_vars"] = {**dict(context.get("docker_env_vars") or {}), **env}
    request["context"] = context
    request["output_dir"] = os.path.join(request["output_dir"], f"rank{rank}")


def card_env(model):
    """The card's own ``env_vars`` (string values only; the hub-run work owns their full semantics)."""
    env = model.get("env_vars")
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}


def self_managed(request):
    """``slurm_multi``: the card's .slurm script runs here (the allocation's first node) outside any
    container, with the card env and MAD_* exported; it starts its own containers with srun. Its
    multiple_results CSV (in the script's folder) becomes the rows. Returns the rows."""
    model = request["model"]
    scripts = str(model.get("scripts") or "").strip()
    while scripts.startswith("./"):
        scripts = scripts[2:]
    folder = os.path.join(request["mad_dir"], os.path.dirname(scripts))
    output_dir = request["output_dir"]
    os.makedirs(output_dir, exist_ok=True)
    docker_file = str((request.get("image_info") or {}).get("docker_file") or "")
    log = log_path(output_dir, model["name"], docker_file)
    env = dict(os.environ)
    docker_env = (request.get("context") or {}).get("docker_env_vars") or {}
    env.update({k: str(v) for k, v in docker_env.items() if k.startswith("MAD_")})
    env.update(card_env(model))
    env.update(MAD_MODEL_NAME=model["name"], MAD_DOCKER_IMAGE=str(request.get("image") or ""),
               MAD_RUN_ID=str(request.get("run_id") or ""), MAD_RESULTS_DIR=output_dir,
               MAD_MODEL_ARGS=str(model.get("args") or ""))
    override = (request.get("options") or {}).get("timeout", -1)
    timeout = run_timeout(model, request.get("context") or {}, None if override in (None, -1) else int(override))
    kw = {"host": request["host"], "run_id": request.get("run_id", ""), "image": request.get("image", ""),
          "machine_name": request["host"], "docker_file": docker_file}
    if not os.path.isfile(os.path.join(request["mad_dir"], scripts)):
        return [failure_row(model, f"script {scripts} not found under {request['mad_dir']}", **kw)]
    started = time.monotonic()
    timed_out = False
    with open(log, "wb") as handle:
        handle.write(f"$ cd {folder} && bash {os.path.basename(scripts)}\n".encode())
        handle.flush()
        proc = subprocess.Popen(["bash", os.path.basename(scripts)], cwd=folder, env=env, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out, rc = True, None
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)
            raise
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    scanner = PerfScanner()  # bounded memory and linear time, however long the script's lines are
    with open(log, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            scanner.feed(chunk)
    kw["test_duration"] = round(time.monotonic() - started, 3)
    csv = os.path.join(folder, str(model["multiple_results"])) if model.get("multiple_results") else None
    return rows_for_run(model, scanner, rc, timed_out, timeout, csv, **kw)


def _secret_env(request):
    """The container's secret env, from the job's environment (sbatch exported the submitter's): the
    context's secret-named values (``secret_env_names``) and the host's ``MAD_SECRETS*`` variables.
    They go in as credentials, so the log masks them."""
    names = set(request.pop("secret_env_names", None) or ())
    return {k: v for k, v in os.environ.items() if k in names or "MAD_SECRETS" in k}


def main(argv):
    signal.signal(signal.SIGTERM, _terminate)
    with open(argv[1], encoding="utf-8") as handle:
        request = json.load(handle)
    image = request.pop("slurm_image", None) or {}
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    request["host"] = node
    request["machine_name"] = node
    dist = request["model"].get("distributed") or {}
    if dist.get("launcher") == "slurm_multi":
        path = rows_path(request["output_dir"], request["model"]["name"])
        rows = self_managed(request)
        for row in rows:
            row.update(deployment_type="slurm", slurm_job_id=os.environ.get("SLURM_JOB_ID", ""),
                       nnodes=os.environ.get("SLURM_JOB_NUM_NODES", "1"))
        write_rows(path, rows)
        print(f"{request['model']['name']}: {len(rows)} row(s)")
        return 0
    _multi_node(request)
    engine = EngineClient(os.environ.get("DOCKER_HOST") or None)
    if not request.get("error") and image.get("name"):
        try:
            if image.get("load_from"):
                load_image(engine, image["name"], image["load_from"], image_id=image.get("id") or "")
            else:
                ensure_image(engine, image["name"], image.get("digest") or "")
        except EngineError as e:
            request["error"] = pull_failure_reason(e.reason, str(e))
    result = run_request(request, _secret_env(request), engine)
    if result.get("rows_path"):  # the SLURM columns, also for a bundle that plain sbatch ran
        for row in result["rows"]:
            row.update(deployment_type="slurm", slurm_job_id=os.environ.get("SLURM_JOB_ID", ""),
                       nnodes=os.environ.get("SLURM_JOB_NUM_NODES", "1"))
        write_rows(result["rows_path"], result["rows"])
    print(result["msg"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
