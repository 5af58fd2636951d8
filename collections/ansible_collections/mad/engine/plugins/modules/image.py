#!/usr/bin/python
# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: image
short_description: Make a manifest image present on a host
version_added: 0.1.0
description:
  - Makes the image O(name) present in the host's Docker engine, the way a model run needs it.
  - If the engine already has it (with O(digest), when given), nothing happens and C(changed) is false.
  - Otherwise it is pulled (by digest when O(name) is C(repo@sha256:...)), with registry credentials
    if given, and the pulled image's repo digests are checked against O(digest).
  - With O(load_from), the image is loaded from a C(docker save) tarball on the host instead, for
    clusters without a registry.
author:
  - madengine developers (@ROCm)
extends_documentation_fragment:
  - mad.engine.engine
  - mad.engine.attributes
  - mad.engine.attributes.actiongroup
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  name:
    description:
      - Image reference, ideally C(repo@sha256:...) as a manifest's C(registry_image) (see the
        C(mad.engine.run_models) role, which pins every image this way).
      - With O(load_from), the name the tarball holds (the manifest's C(docker_image)).
    type: str
    required: true
  digest:
    description:
      - The repo digest (C(sha256:...)) the image must have; an image present without it is pulled
        again, and a pull that does not give it fails with reason C(digest mismatch).
      - Ignored with O(load_from) (loaded images carry no repo digest).
    type: str
    default: ""
  registry:
    description:
      - Registry the credentials are for, such as C(127.0.0.1:5000). Default is the registry of O(name).
    type: str
  registry_username:
    description:
      - User name for the registry. The credentials go to the engine with the pull only; nothing is
        stored on the host.
      - Requires O(registry_password).
    type: str
  registry_password:
    description:
      - Password or token for the registry. Never logged, and scrubbed from error messages.
    type: str
  load_from:
    description:
      - Path of a C(docker save) tarball on the host to load the image from, instead of pulling.
      - Loaded only if the engine does not have O(name) yet (as image O(image_id), when given).
    type: path
  image_id:
    description:
      - With O(load_from), the image ID (C(sha256:...)) the tarball holds. A present O(name) with another
        ID (an older build under the same tag) is replaced by loading the tarball, and the load fails if the
        tarball does not give O(name) this ID.
    type: str
    default: ""
notes:
  - Failures carry a short C(reason) such as C(pull failed), C(registry auth failed),
    C(digest mismatch), C(image load failed) or C(engine unreachable).
seealso:
  - module: mad.engine.run_model
"""

EXAMPLES = r"""
- name: Pull a pushed manifest image by digest
  mad.engine.image:
    name: 127.0.0.1:5000/ci-dummy_dummy@sha256:4f2a...
    digest: sha256:4f2a...

- name: Pull from a registry with credentials
  mad.engine.image:
    name: registry.example.com/mad/ci-dummy_dummy@sha256:4f2a...
    digest: sha256:4f2a...
    registry: registry.example.com
    registry_username: "{{ lookup('env', 'MAD_REGISTRY_USER') }}"
    registry_password: "{{ lookup('env', 'MAD_REGISTRY_PASSWORD') }}"
  no_log: true

- name: Load an image shipped as a tarball (no registry)
  mad.engine.image:
    name: ci-dummy_dummy
    load_from: /tmp/madengine/images/ci-dummy_dummy.tar
"""

RETURN = r"""
image:
  description: The reference that is now present.
  returned: success
  type: str
  sample: 127.0.0.1:5000/ci-dummy_dummy@sha256:4f2a...
id:
  description: The image ID (empty in check mode when the image would be pulled or loaded).
  returned: success
  type: str
  sample: sha256:02cc328f8357...
digest:
  description: The repo digest that was checked (O(digest)); empty without one and with O(load_from).
  returned: success
  type: str
  sample: sha256:4f2a...
loaded:
  description: Names (or IDs) the tarball loaded; empty unless O(load_from) loaded something.
  returned: when O(load_from) is given
  type: list
  elements: str
  sample: ["ci-dummy_dummy:latest"]
reason:
  description: Short cause of a failure.
  returned: failure
  type: str
  sample: pull failed
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mad.engine.plugins.module_utils._engine import ENGINE_ARGS, EngineClient, EngineError  # noqa: E402
from ansible_collections.mad.engine.plugins.module_utils._image import ensure_image, load_image  # noqa: E402


def main() -> None:
    spec = dict(
        ENGINE_ARGS,
        name=dict(type="str", required=True),
        digest=dict(type="str", default=""),
        registry=dict(type="str"),
        registry_username=dict(type="str"),
        registry_password=dict(type="str", no_log=True),
        load_from=dict(type="path"),
        image_id=dict(type="str", default=""),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_together=[["registry_username", "registry_password"]])
    p = module.params
    auth = None
    if p["registry_username"]:
        auth = {"username": p["registry_username"], "password": p["registry_password"],
                "serveraddress": p["registry"] or ""}
    try:
        engine = EngineClient(p)
        if p["load_from"]:
            result = load_image(engine, p["name"], p["load_from"], module.check_mode, p["image_id"])
        else:
            result = ensure_image(engine, p["name"], p["digest"] or "", auth, module.check_mode)
    except EngineError as e:
        module.fail_json(msg=str(e), reason=e.reason)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
