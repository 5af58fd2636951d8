# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Action of mad.engine.sync: move a file tree between the controller and a host as one tarball.

One Python command on the host, the tarball on its standard input (push) or output (fetch), whatever
the number of files: ansible.builtin.copy of a folder costs two module runs per file, and
ansible.posix.synchronize needs rsync on both sides.
The tarball halves are ``module_utils/_tree.py``, imported here and sent as source to the host.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import shlex
import shutil
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.mad.engine.plugins.module_utils import _tree
from ansible_collections.mad.engine.plugins.module_utils._paths import OutsideError, inside

ARGUMENT_SPEC = {
    "mode": {"type": "str", "choices": ["push", "fetch"], "default": "push"},
    "src": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "paths": {"type": "list", "elements": "str", "default": []},
    "python": {"type": "str"},
}
DEFAULT_PYTHON = "/usr/bin/python3"
# Bigger tarballs go as a file (held in memory otherwise, as the command's standard input).
STDIN_LIMIT = 32 * 1024 * 1024


class ActionModule(ActionBase):
    # The big-tarball path makes its own remote tmp dir; the usual one would cost two commands up front.
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        if self._task.check_mode:
            result.update(changed=args["mode"] == "push", msg="check mode: nothing transferred")
            return result
        python = args["python"] or self._python(task_vars)
        local_tmp = tempfile.mkdtemp(prefix="mad-sync-")
        try:
            if args["mode"] == "push":
                result.update(self._push(args, python, local_tmp))
            else:
                result.update(self._fetch(args, python, local_tmp))
        finally:
            shutil.rmtree(local_tmp, ignore_errors=True)
        return result

    def _push(self, args, python, local_tmp):
        if not os.path.isdir(args["src"]):
            raise AnsibleActionFail(f"src {args['src']} is not a directory on the controller")
        # Checked before anything is packed: a path leaving src (absolute, '..', a symlink on the way)
        # would send controller files, and the host would refuse the whole tarball anyway.
        try:
            paths = [inside(args["src"], path, "path") for path in args["paths"]]
        except OutsideError as exc:
            raise AnsibleActionFail(f"refusing to send {exc}; nothing was sent") from None
        tarball = os.path.join(local_tmp, "tree.tar.gz")
        packed = _tree.pack(tarball, args["src"], paths)
        if os.path.getsize(tarball) <= STDIN_LIMIT:
            # One command: the tarball goes through its standard input.
            with open(tarball, "rb") as handle:
                out = self._remote(python, ["unpack", "-", args["dest"]], handle.read())
        else:
            remote_tmp = self._make_tmp_path()
            try:
                remote = self._connection._shell.join_path(remote_tmp, "tree.tar.gz")
                self._transfer_file(tarball, remote)
                self._fixup_perms2((remote_tmp, remote))
                out = self._remote(python, ["unpack", remote, args["dest"]])
            finally:
                self._remove_tmp_path(remote_tmp)
        return {"changed": True, "packed": packed["packed"], "missing": packed["missing"], "files": out["files"],
                "dest": args["dest"]}

    def _fetch(self, args, python, local_tmp):
        # One command: the tarball comes back base64-encoded in its output.
        out = self._remote(python, ["pack", "-", args["src"], ""] + args["paths"])
        tarball = os.path.join(local_tmp, "tree.tar.gz")
        with open(tarball, "wb") as handle:
            handle.write(base64.b64decode(out.pop("data")))
        files = _tree.unpack(tarball, args["dest"])["files"]
        return {"changed": bool(files), "packed": out["packed"], "missing": out["missing"], "files": files,
                "dest": args["dest"]}

    def _remote(self, python, argv, in_data=None):
        """Run ``_tree.main(argv)`` on the host with its Python; returns its JSON result."""
        cmd = " ".join(shlex.quote(part) for part in [python, "-c", inspect.getsource(_tree)] + argv)
        res = self._low_level_execute_command(cmd, sudoable=True, in_data=in_data)
        try:
            out = json.loads((res.get("stdout") or "").strip().splitlines()[-1])
        except (ValueError, IndexError):
            out = {"failed": True, "msg": f"rc {res.get('rc')}: {(res.get('stderr') or '').strip()[-500:]}"}
        if res.get("rc") != 0 or out.get("failed"):
            raise AnsibleActionFail(f"{argv[0]} on the host with {python} failed: {out.get('msg')}")
        return out

    def _python(self, task_vars):
        for value in (task_vars.get("ansible_python_interpreter"),
                      (task_vars.get("ansible_facts") or {}).get("discovered_interpreter_python")):
            value = self._templar.template(value) if value else value
            if value and "{{" not in str(value) and str(value) != "auto":
                return str(value)
        return DEFAULT_PYTHON
