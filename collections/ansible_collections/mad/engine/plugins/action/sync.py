# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Action of mad.engine.sync: move a file tree between the controller and a host as one tarball.

One file transfer and one Python command on the host, whatever the number of files: ansible.builtin.copy
of a folder costs two module runs per file, and ansible.posix.synchronize needs rsync on both sides.
The tarball halves are ``module_utils/_tree.py``, imported here and sent as source to the host.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.mad.engine.plugins.module_utils import _tree

ARGUMENT_SPEC = {
    "mode": {"type": "str", "choices": ["push", "fetch"], "default": "push"},
    "src": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "paths": {"type": "list", "elements": "str", "default": []},
    "python": {"type": "str"},
}
DEFAULT_PYTHON = "/usr/bin/python3"


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if self._task.check_mode:
            result.update(changed=args["mode"] == "push", msg="check mode: nothing transferred")
            return result
        python = args["python"] or self._python(task_vars)
        local_tmp = tempfile.mkdtemp(prefix="mad-sync-")
        try:
            remote_tmp = self._make_tmp_path()
            if args["mode"] == "push":
                result.update(self._push(args, python, local_tmp, remote_tmp))
            else:
                result.update(self._fetch(args, python, local_tmp, remote_tmp))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
            for name in os.listdir(local_tmp):
                os.remove(os.path.join(local_tmp, name))
            os.rmdir(local_tmp)
        return result

    def _push(self, args, python, local_tmp, remote_tmp):
        if not os.path.isdir(args["src"]):
            raise AnsibleActionFail(f"src {args['src']} is not a directory on the controller")
        tarball = os.path.join(local_tmp, "tree.tar.gz")
        packed = _tree.pack(tarball, args["src"], args["paths"])
        remote = self._connection._shell.join_path(remote_tmp, "tree.tar.gz")
        self._transfer_file(tarball, remote)
        self._fixup_perms2((remote_tmp, remote))
        out = self._remote(python, ["unpack", remote, self._remote_expand_user(args["dest"])])
        return {"changed": True, "packed": packed["packed"], "missing": packed["missing"], "files": out["files"],
                "dest": args["dest"]}

    def _fetch(self, args, python, local_tmp, remote_tmp):
        remote = self._connection._shell.join_path(remote_tmp, "tree.tar.gz")
        out = self._remote(python, ["pack", remote, self._remote_expand_user(args["src"]), ""] + args["paths"])
        tarball = os.path.join(local_tmp, "tree.tar.gz")
        self._connection.fetch_file(remote, tarball)
        files = _tree.unpack(tarball, args["dest"])["files"]
        return {"changed": bool(files), "packed": out["packed"], "missing": out["missing"], "files": files,
                "dest": args["dest"]}

    def _remote(self, python, argv):
        """Run ``_tree.main(argv)`` on the host with its Python; returns its JSON result."""
        code = inspect.getsource(_tree)
        cmd = " ".join(shlex.quote(part) for part in [python, "-c", code] + argv)
        res = self._low_level_execute_command(cmd, sudoable=True)
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
