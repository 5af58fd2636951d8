#!/usr/bin/python
# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_facts
short_description: Gather what a MAD model run needs to know about a host
version_added: 0.1.0
description:
  - Detects the host's GPUs (vendor, count, architecture and render devices) with the vendors' tools
    (C(nvidia-smi), C(rocm-smi) or C(amd-smi) with C(rocminfo), C(xpu-smi)). A host where none of them
    finds a GPU is a C(CPU) host; that is not an error.
  - Asks the Docker engine for its version, and reads the CPU count, memory and OS of the host.
  - Returns the facts and sets them as the host fact C(mad_host), which M(mad.engine.run_model) takes as
    its C(request.facts).
  - Never reports C(changed).
author:
  - madengine developers (@ROCm)
extends_documentation_fragment:
  - mad.engine.engine
  - mad.engine.attributes
  - mad.engine.attributes.actiongroup
  - mad.engine.attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  gpu_vendor:
    description:
      - Override the detected GPU vendor (the inventory variable C(mad_gpu_vendor) in the
        C(mad.engine.run_models) role), for hosts whose tools misreport.
      - V(CPU) makes the host CPU-only (no GPUs, no render devices); another vendor keeps the detected
        count, architecture and devices.
      - Case does not matter.
    type: str
    choices: [AMD, NVIDIA, INTEL, CPU, amd, nvidia, intel, cpu]
  images:
    description:
      - Images to look for in the engine's image store; the module returns the ones it already has as
        RV(images_present). An image with a O(images[].digest) or O(images[].id) counts only if it has
        that repo digest and image ID.
      - The C(mad.engine.run_models) role passes its plan's images, and pulls only the missing ones; on a
        host that has them all, the pull task is skipped without a module run.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The image reference, as M(mad.engine.image) takes it.
        type: str
        required: true
      digest:
        description: The repo digest it must have (C(sha256:...)), or empty for any content.
        type: str
        default: ""
      id:
        description: The image ID it must have (C(sha256:...)), or empty for any. A tag loaded from an
          older build's tarball is then not the wanted image.
        type: str
        default: ""
notes:
  - The engine must answer; if it does not, the module fails with a message naming O(docker_host).
seealso:
  - module: mad.engine.run_model
"""

EXAMPLES = r"""
- name: Gather the host's GPU and engine facts
  mad.engine.host_facts:

- name: Treat this host as CPU-only, on a non-default engine socket
  mad.engine.host_facts:
    gpu_vendor: CPU
    docker_host: unix:///run/madengine/docker.sock

- name: Which of these images does the engine already have?
  mad.engine.host_facts:
    images:
      - name: reg.example.com:5000/ci-dummy@sha256:9f2c0e1d4b5a69780c3e4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e
        digest: sha256:9f2c0e1d4b5a69780c3e4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e
      - name: ci-local_only:latest
  register: facts

- name: Show them
  ansible.builtin.debug:
    msg: "{{ ansible_facts.mad_host.gpu_count }} x {{ ansible_facts.mad_host.gpu_vendor }}"
"""

RETURN = r"""
gpu_vendor:
  description: C(AMD), C(NVIDIA), C(INTEL) or C(CPU) (after O(gpu_vendor)).
  returned: success
  type: str
  sample: AMD
detected_gpu_vendor:
  description: The vendor detection found, before O(gpu_vendor).
  returned: success
  type: str
  sample: AMD
gpu_count:
  description: Number of GPUs (0 on a CPU host).
  returned: success
  type: int
  sample: 8
gpu_architecture:
  description: GPU architecture such as C(gfx942) or C(sm_90); empty when unknown or CPU-only.
  returned: success
  type: str
  sample: gfx942
render_devices:
  description: The host's C(/dev/dri/renderD*) devices (AMD and Intel GPUs), sorted.
  returned: success
  type: list
  elements: str
  sample: [/dev/dri/renderD128, /dev/dri/renderD129]
docker_version:
  description: The Docker engine's version.
  returned: success
  type: str
  sample: 20.10.24+dfsg1
docker_api_version:
  description: The highest Engine API version the engine speaks.
  returned: success
  type: str
  sample: "1.41"
cpu_count:
  description: Logical CPUs of the host.
  returned: success
  type: int
  sample: 64
memory_mb:
  description: Total memory of the host in MiB (0 when unknown).
  returned: success
  type: int
  sample: 257000
os:
  description: The OS's pretty name.
  returned: success
  type: str
  sample: Debian GNU/Linux 12 (bookworm)
kernel:
  description: The kernel release.
  returned: success
  type: str
  sample: 6.1.0-18-amd64
machine:
  description: The CPU architecture.
  returned: success
  type: str
  sample: x86_64
hostname:
  description: The host's own name.
  returned: success
  type: str
  sample: node1
python:
  description: The version of the Python that ran the module.
  returned: success
  type: str
  sample: 3.11.2
python_executable:
  description: The path of the Python that ran the module (the role runs its helpers with it).
  returned: success
  type: str
  sample: /usr/bin/python3
images_present:
  description: The names of the O(images) the engine already has (with their digest and ID when given),
    in the order given. Not part of RV(ansible_facts.mad_host).
  returned: success
  type: list
  elements: str
  sample: [registry.example.com:5000/ci-dummy_dummy:latest]
ansible_facts:
  description: The same facts (without RV(images_present)), under C(mad_host).
  returned: success
  type: dict
  contains:
    mad_host:
      description: Every key above.
      type: dict
      returned: success
reason:
  description: Short cause of a failure, such as C(engine unreachable).
  returned: failure
  type: str
  sample: engine unreachable
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mad.engine.plugins.module_utils._engine import ENGINE_ARGS, EngineClient, EngineError  # noqa: E402
from ansible_collections.mad.engine.plugins.module_utils._facts import host_facts  # noqa: E402
from ansible_collections.mad.engine.plugins.module_utils._image import present_images  # noqa: E402


def main() -> None:
    spec = dict(
        ENGINE_ARGS,
        gpu_vendor=dict(type="str", choices=["AMD", "NVIDIA", "INTEL", "CPU", "amd", "nvidia", "intel", "cpu"]),
        images=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            digest=dict(type="str", default=""),
            id=dict(type="str", default=""),
        )),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    try:
        engine = EngineClient(module.params)
        facts = host_facts(engine.version(), module.params["gpu_vendor"])
        present = present_images(engine, module.params["images"])
    except EngineError as e:
        module.fail_json(msg=str(e), reason=e.reason)
    module.exit_json(changed=False, ansible_facts={"mad_host": facts}, images_present=present, **facts)


if __name__ == "__main__":
    main()
