#!/usr/bin/python
# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: sync
short_description: Copy a file tree between the controller and a host as one tarball
version_added: 0.1.0
description:
  - With O(mode=push), packs the O(paths) of the controller directory O(src) into one gzip tarball,
    transfers it and unpacks it into O(dest) on the host (created if needed). Files already in O(dest)
    and not in the tarball are left alone.
  - With O(mode=fetch), packs the host directory O(src) (its O(paths), or all of it) and unpacks it into
    the controller directory O(dest). A missing O(src) fetches nothing and is not an error.
  - It costs one file transfer and one Python command on the host whatever the number of files, and
    needs nothing on the host but Python (no tar, no rsync). Members that would land outside O(dest) are
    refused. C(__pycache__) and C(.git) folders are skipped.
  - The C(mad.engine.run_models) role uses it to sync the needed part of the MAD root to the host and to
    fetch the results back.
author:
  - madengine developers (@ROCm)
extends_documentation_fragment:
  - mad.engine.attributes
  - mad.engine.attributes.actiongroup
attributes:
  check_mode:
    support: full
    details: Nothing is transferred; a push reports C(changed).
  diff_mode:
    support: none
  action:
    description: Runs as an action plugin on the controller.
    support: full
options:
  mode:
    description: V(push) (controller to host) or V(fetch) (host to controller).
    type: str
    choices: [push, fetch]
    default: push
  src:
    description: The directory to copy from (on the controller for V(push), on the host for V(fetch)).
    type: path
    required: true
  dest:
    description: The directory to unpack into (on the host for V(push), on the controller for V(fetch)).
    type: path
    required: true
  paths:
    description:
      - Paths relative to O(src) to copy (files or folders); empty for all of O(src).
      - Paths that do not exist are skipped and listed in RV(missing).
      - With O(mode=push), a path that leaves O(src) (absolute elsewhere, C(..) above it, or through a
        symlink pointing outside) fails the task before anything is sent. Symlinks inside the folders
        are sent as symlinks, never followed.
    type: list
    elements: str
    default: []
  python:
    description:
      - The host's Python to unpack or pack with. Default is C(ansible_python_interpreter), then the
        discovered interpreter, then C(/usr/bin/python3).
    type: str
seealso:
  - module: mad.engine.run_model
"""

EXAMPLES = r"""
- name: Sync the parts of the MAD root a model needs
  mad.engine.sync:
    src: /srv/MAD
    paths: [scripts/dummy, scripts/common, data.json]
    dest: /tmp/madengine/mad

- name: Fetch a run's results to the controller
  mad.engine.sync:
    mode: fetch
    src: /tmp/madengine/results/run1
    dest: "results/{{ inventory_hostname }}"
"""

RETURN = r"""
packed:
  description: The paths that were packed.
  returned: success
  type: list
  elements: str
  sample: [scripts/dummy, scripts/common, data.json]
missing:
  description: The paths of O(paths) that did not exist.
  returned: success
  type: list
  elements: str
files:
  description: The number of files unpacked.
  returned: success
  type: int
  sample: 7
dest:
  description: Where the tree was unpacked.
  returned: success
  type: str
"""
