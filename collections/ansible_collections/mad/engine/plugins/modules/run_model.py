#!/usr/bin/python
# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: run_model
short_description: Run one MAD model in a container on a host and return its perf rows
version_added: 0.1.0
description:
  - Runs one model of a build manifest in its image, with the same semantics as C(madengine-cli run) on
    the local machine (the same executor code), that is vendor GPU options, environment, mounts, the
    C(run_directory), tools, pre and post scripts, the timeout, C(multiple_results) and the skip rules.
  - Returns the perf rows (the columns of C(perf.csv)), the log tail and the log path on the host, and
    writes the rows as JSON beside the log.
  - The container is removed on every path (unless C(request.options.keep_alive)).
  - The log keeps each output stream's lines whole (a line over 64 KiB is written in pieces; an
    unterminated last line gets a line break), and replaces the values of O(cred_env) and of secret-named
    env vars (C(*_TOKEN), C(*_PASSWORD), C(*_SECRET), C(*_KEY), C(MAD_SECRETS*), ...; not numbers or
    booleans, and not values under 4 characters) by C(******), also when the model prints them itself.
  - Data that cannot be mounted (a source missing from C(data_config), or whose providers all fail) does
    not stop the model; the log and the row's C(reason) say C(data <name> is NOT mounted). A source with
    no provider (C({})) runs with only C(MAD_DATANAME) set.
  - Reports C(changed) when a container ran; a model that was skipped, or could not start, changes nothing.
  - A model that fails (non-zero exit, timeout, no performance line, missing script) is B(not) a
    module failure; its FAILURE row says why. Neither is an engine that cannot be reached, which gives a
    FAILURE row with RV(infra_error=true). The task fails only on bad module arguments.
author:
  - madengine developers (@ROCm)
extends_documentation_fragment:
  - mad.engine.engine
  - mad.engine.attributes
  - mad.engine.attributes.actiongroup
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
options:
  request:
    description:
      - The run request, as the C(mad.engine.run_models) role's C(mad.engine.run_plan) filter builds it
        from a manifest. Secrets do not belong here (see O(cred_env)).
      - C(model) (required) is the manifest's C(built_models) record.
      - C(image) is the reference to run (present on the host, see M(mad.engine.image)); C(image_info)
        holds the manifest's C(docker_file), C(base_docker), C(docker_sha), C(image_digest) and
        C(build_duration) for the row.
      - C(context) is the run context; C(gpu_vendor), C(gpu_count) and C(gpu_architecture) that it does
        not set are filled from C(facts) (the C(mad_host) fact of M(mad.engine.host_facts); detected
        here when absent).
      - C(tools_config) is the content of the tools config (C(tools.json)) and C(tools_config_name) its
        name for messages; the context's C(tools) are resolved against it on the host.
      - C(data_config) is the content of C(data.json).
      - C(options) holds C(timeout) (-1 not given, 0 none, N seconds), C(keep_alive), C(keep_model_dir),
        C(skip_model_run), C(disable_skip_gpu_arch), C(sys_env_details) and C(force_mirror_local).
      - C(mad_dir) is the MAD root on the host, C(output_dir) where the log, rows and sysenv files go,
        C(run_id) and C(host) (the inventory hostname) are copied into the rows, C(key) is the
        manifest's C(built_models) key (returned as RV(key)).
      - C(error), when set, is why the model cannot run here (for example an image that could not be
        pulled); nothing runs and the row is a FAILURE with that reason (RV(infra_error) from
        C(infra_error), default true).
    type: dict
    required: true
  cred_env:
    description:
      - Environment variables holding the model's credentials (C(<CRED>_<FIELD>)), passed to the
        container and masked in logs. Never logged.
    type: dict
    default: {}
notes:
  - Check mode is not supported, so the task is skipped in check mode.
seealso:
  - module: mad.engine.host_facts
  - module: mad.engine.image
"""

EXAMPLES = r"""
- name: Gather host facts first (they complete the run context)
  mad.engine.host_facts:

- name: Run one model
  mad.engine.run_model:
    request:
      key: ci-dummy_dummy
      model: "{{ manifest.built_models['ci-dummy_dummy'] }}"
      image: ci-dummy_dummy
      image_info:
        docker_file: docker/dummy.Dockerfile
      context: {gpu_vendor: CPU, guest_os: UBUNTU}
      facts: "{{ ansible_facts.mad_host }}"
      options: {timeout: 600}
      mad_dir: /tmp/madengine/mad
      output_dir: /tmp/madengine/results/run1
      run_id: run1
      host: "{{ inventory_hostname }}"
  register: run

- name: Show the rows
  ansible.builtin.debug:
    var: run.rows
"""

RETURN = r"""
model:
  description: The model's name.
  returned: always
  type: str
  sample: dummy
key:
  description: The manifest's C(built_models) key of the model (C(request.key)).
  returned: always
  type: str
  sample: ci-dummy_dummy
rows:
  description:
    - The perf rows, each with every C(perf.csv) column (C(model), C(performance), C(metric), C(status),
      C(reason), C(host), C(run_id), ...) as strings, plus extra C(multiple_results) columns.
    - C(status) is C(SUCCESS), C(FAILURE) or C(SKIPPED); C(reason) says why for the last two.
  returned: always
  type: list
  elements: dict
  sample: [{"model": "dummy", "performance": "1234.5", "metric": "samples_per_second", "status": "SUCCESS"}]
log_path:
  description: The run log on the host (empty when nothing ran).
  returned: always
  type: str
  sample: /tmp/madengine/results/run1/dummy_dummy.run.live.log
log_tail:
  description: The last lines of the log.
  returned: always
  type: list
  elements: str
rows_path:
  description: The rows as JSON on the host, C(<output_dir>/<model>.rows.json).
  returned: always
  type: str
  sample: /tmp/madengine/results/run1/dummy.rows.json
container:
  description: Name of the container that ran (empty when none did).
  returned: always
  type: str
kept:
  description: Whether the container was left running (C(keep_alive)).
  returned: always
  type: bool
exec_line:
  description: A C(docker exec) command line for a kept container.
  returned: always
  type: str
infra_error:
  description: The failure was the infrastructure's (engine, image), not the model's; worth a retry.
  returned: always
  type: bool
msg:
  description: One line summing up the statuses and reasons.
  returned: always
  type: str
  sample: "dummy: SUCCESS"
"""

import os  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mad.engine.plugins.module_utils._engine import ENGINE_ARGS  # noqa: E402
from ansible_collections.mad.engine.plugins.module_utils._request import run_request  # noqa: E402


def _stop_with_the_controller() -> None:
    """SIGTERM, SIGHUP, or the controller gone (ansible-playbook stopped or killed: the ssh channel, and
    with it this process's stdout, closes) stop the run as Ctrl-C does: the container is removed and the
    module ends. Without this it would run on, and later remove the run directory of a resumed run."""
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)

    def watch() -> None:
        poller = select.poll()
        poller.register(1, 0)  # POLLERR and POLLHUP only: the reading end of stdout is gone
        while not poller.poll(500):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="controller-watch", daemon=True).start()


def main() -> None:
    spec = dict(
        ENGINE_ARGS,
        request=dict(type="dict", required=True),
        cred_env=dict(type="dict", default={}, no_log=True),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=False)
    _stop_with_the_controller()
    engine_params = {"docker_host": module.params["docker_host"], "api_timeout": module.params["api_timeout"]}
    module.exit_json(**run_request(module.params["request"], module.params["cred_env"], engine_params))


if __name__ == "__main__":
    main()
