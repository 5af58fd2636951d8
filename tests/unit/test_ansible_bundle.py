"""`madengine-cli generate ansible` (madengine.ansible_bundle): the bundle's content, secrets, writing, exit codes.

The files are parsed (YAML with Ansible's ``!unsafe`` tag, JSON, ansible.cfg as INI) and linted with
ansible-lint's own yamllint rules; the vars file is also loaded by a real ``ansible-playbook`` (local
connection, no hosts) to show that Ansible's ``{{ }}`` survive where they must and data is never
templated. The bundle is run against the test cluster in tests/cluster/test_generate_ansible.py.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tracked_tree import copy_tracked

from madengine import ansible_bundle
from madengine.ansible_bundle import (
    DEFAULT_PLAYBOOK,
    GENERATED_MARKER,
    ROLE,
    VARS_FILE,
    render_ansible,
    to_vars_yaml,
    write_bundle,
)
from madengine.cli.app import app, invoke
from madengine.credentials import Credentials
from madengine.errors import InvalidInputError
from madengine.execution_config import ExportOptions, build_execution_config, execution_config_from_dict
from madengine.manifest import BuiltImage, Manifest, write_manifest
from madengine.model import Model
from madengine.templating import template_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "MAD"
DIGEST = "sha256:" + "5e" * 32
REGISTRY = "127.0.0.1:5000"
PASSWORD = "Qz-distinctive-Registry-Pa55-9913"
TOKEN = "hf_distinctive_ansible_token_5521"
ENV_PASSWORD = "env-distinctive-Pa55word-3344"
CTX_SECRET = "ctx-distinctive-secret-7070"
SECRETS = (PASSWORD, TOKEN, ENV_PASSWORD, CTX_SECRET)
TEMPLATE = "{{ lookup('env', 'HOME') }}"
CTX = {"gpu_vendor": "CPU", "guest_os": "UBUNTU"}


# ------------------------------------------------------------------------------------------ helpers
class AnsibleLoader(yaml.SafeLoader):
    """YAML as Ansible reads it, as far as these files go: ``!unsafe`` strings are plain strings."""


AnsibleLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(text: str) -> Any:
    return yaml.load(text, Loader=AnsibleLoader)  # noqa: S506 - a SafeLoader subclass


@pytest.fixture
def mad(tmp_path: Path) -> Path:
    """examples/MAD plus distinctive secrets: a registry login, a `cred` model, a secret in a script."""
    root = tmp_path / "MAD"
    copy_tracked(EXAMPLE, root)
    (root / "credential.json").write_text(json.dumps({
        REGISTRY: {"username": "reguser", "password": PASSWORD},
        "hfcred": {"username": "bob", "token": TOKEN},
    }))
    models = json.loads((root / "models.json").read_text())
    models += [
        {"name": "dummy_cred", "dockerfile": "docker/dummy", "scripts": "scripts/dummy_cred/run.sh", "tags": ["cred"],
         "cred": "hfcred", "n_gpus": "1", "timeout": 60},
        {"name": "dummy_jinja", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "tags": ["jinja"],
         "args": "--label {{ not_a_var }} {% raw %}", "timeout": 60},
    ]
    (root / "models.json").write_text(json.dumps(models, indent=2))
    (root / "scripts" / "dummy_cred").mkdir()
    (root / "scripts" / "dummy_cred" / "run.sh").write_text(
        f"#!/bin/bash\n# a careless script: TOKEN={TOKEN}\necho 'performance: 1 x'\n")
    os.chmod(root / "scripts" / "dummy_cred" / "run.sh", 0o755)
    return root


def models_of(mad: Path, *tags: str) -> list[Model]:
    from madengine.discover import discover_models

    return discover_models(mad, list(tags))


def exec_config(mad: Path, models: list[Model], context: dict[str, Any]):
    options = ExportOptions(mad_dir=mad, data_config="data.json", tools_config="scripts/common/tools.json",
                            data_config_given=False, tools_config_given=False)
    result = build_execution_config(models, context, options)
    return execution_config_from_dict(json.loads(json.dumps(result.config)))


def manifest_of(models: list[Model], *, pinned: bool = True, mad_dir: str = "") -> Manifest:
    image = BuiltImage(docker_image="ci-dummy_dummy", dockerfile="docker/dummy.Dockerfile",
                       base_docker="madengine-base:bookworm", docker_sha="sha256:" + "0b" * 32,
                       build_duration=1.5, gpu_vendor="CPU", guest_os="UBUNTU", models=[m.name for m in models])
    if pinned:
        image.registry_image = f"{REGISTRY}/ci-dummy_dummy@{DIGEST}"
        image.image_digest = DIGEST
        image.registry = REGISTRY
        image.pushed = True
    manifest = Manifest(built_images={"ci-dummy_dummy": image}, registry=REGISTRY if pinned else None,
                        context=dict(CTX), mad_dir=mad_dir,
                        credentials_required=sorted({m.cred for m in models if m.cred}))
    for index, model in enumerate(models):
        key = "ci-dummy_dummy" if index == 0 else f"ci-{model.name.replace('/', '_')}_dummy"
        manifest.built_models[key] = model
        manifest.model_images[key] = "ci-dummy_dummy"
    return manifest


def bundle_for(mad: Path, *tags: str, context: dict[str, Any] | None = None, pinned: bool = True,
               env: dict[str, str] | None = None, **kwargs: Any) -> ansible_bundle.AnsibleBundle:
    context = context or dict(CTX)
    models = models_of(mad, *tags)
    config = exec_config(mad, models, context)
    manifest = manifest_of(models, pinned=pinned)
    return render_ansible(manifest, config, mad_dir=mad, credentials=Credentials.load(mad, env=env or {}), **kwargs)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, out, err


def ansible_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MAD_REGISTRY"))}
    return dict(env, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), LC_ALL="C.UTF-8", LANG="C.UTF-8",
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]),
                ANSIBLE_NOCOLOR="1", **extra)


def ansible_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


# ------------------------------------------------------------------------------------------ content
def test_bundle_files_parse_and_use_the_shipped_role(mad):
    bundle = bundle_for(mad, "dummy", "data", "multi")
    files = bundle.files
    assert set(files) == {DEFAULT_PLAYBOOK, VARS_FILE, "build_manifest.json", "execution_config.json", "tools.json",
                          "data.json", "inventory.example.yml", "ansible.cfg", ".ansible-lint", "README.md"}
    plays = load(files[DEFAULT_PLAYBOOK])
    assert plays == [{"name": f"Run MAD models with {ROLE}", "hosts": "{{ run_models_hosts | default('all') }}",
                      "gather_facts": False, "vars_files": [VARS_FILE], "roles": [{"role": ROLE}]}]
    variables = load(files[VARS_FILE])
    assert variables["run_models_manifest_file"] == "{{ playbook_dir }}/build_manifest.json"
    assert variables["run_models_mad_dir"] == "{{ playbook_dir }}/mad"
    assert variables["run_models_tools_config"] == "{{ playbook_dir }}/tools.json"
    assert variables["run_models_data_config"] == "{{ playbook_dir }}/data.json"
    assert variables["run_models_models"] == ["ci-dummy_dummy", "ci-dummy_data_dummy", "ci-dummy_multi_dummy"]
    assert variables["run_models_options"] == {"timeout": -1, "keep_alive": False, "disable_skip_gpu_arch": False,
                                               "sys_env_details": True}
    assert variables["madengine_context"] == CTX
    assert variables["run_models_registry_password"] == (
        "{{ vault_madengine_registry_password | default(lookup('ansible.builtin.env', 'MAD_REGISTRY_PASSWORD')) }}")
    # Every variable it sets is one the role documents (or one of the bundle's own madengine_* ones).
    spec = yaml.safe_load((REPO / "collections/ansible_collections/mad/engine/roles/run_models/meta/"
                           "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert {k for k in variables if not k.startswith("madengine_")} <= set(spec)
    manifest = json.loads(files["build_manifest.json"])
    assert list(manifest["built_models"]) == variables["run_models_models"]
    assert json.loads(files["execution_config.json"])["execution_config_version"] == 1
    assert json.loads(files["tools.json"]) == {"tools": {}}
    assert json.loads(files["data.json"]) == {"tiny": {"local": "data/tiny", "readwrite": False}}
    inventory = load(files["inventory.example.yml"])
    assert set(inventory["all"]["children"]["gpu_nodes"]["hosts"]) == {"gpu-node-01", "gpu-node-02"}
    assert yaml.safe_load(files[".ansible-lint"])["profile"] == "production"
    # The MAD files the role syncs: the models' script folders, scripts/common, relative local data.
    assert {"scripts/dummy/run.sh", "scripts/dummy_data/run.sh", "scripts/dummy_multi/run.sh",
            "scripts/common/tools.json", "data/tiny/numbers.txt"} <= set(bundle.mad_files)
    assert not any(p.startswith(("scripts/dummy2", "scripts/dummy_fail")) for p in bundle.mad_files)
    assert "data.json" not in bundle.mad_files and "credential.json" not in bundle.mad_files
    assert bundle.instance.startswith("madengine-") and bundle.notes == []


def test_ansible_cfg_defaults(mad):
    bundle = bundle_for(mad, "dummy")
    cfg = configparser.ConfigParser()
    cfg.read_string(bundle.files["ansible.cfg"])
    assert cfg.getboolean("ssh_connection", "pipelining") is True
    assert cfg.getboolean("defaults", "host_key_checking") is True
    assert cfg.getint("defaults", "forks") == ansible_bundle.FORKS
    assert cfg.get("defaults", "interpreter_python") == "/usr/bin/python3"
    assert cfg.get("defaults", "inventory") == "inventory.example.yml"
    assert "~/.ansible/collections" in cfg.get("defaults", "collections_path").split(":")
    # Its own control path dir, short enough for a unix socket (108 bytes, with ssh's 17-char suffix).
    control = cfg.get("ssh_connection", "control_path_dir")
    assert control == f"~/.ansible/cp/{bundle.instance}"
    assert len(os.path.expanduser(control)) + 1 + 10 + 17 < 108


def test_ansible_markers_survive_and_data_is_unsafe(mad):
    context = dict(CTX, docker_env_vars={"TEMPLATED": TEMPLATE, "MULTI": "a\n{{ b }}\n", "PLAIN": "x"})
    bundle = bundle_for(mad, "dummy", "jinja", context=context)
    text = bundle.files[VARS_FILE]
    # Data with Jinja markers is tagged !unsafe; Ansible's own expressions stay plain templates.
    assert "TEMPLATED: !unsafe '{{ lookup(''env'', ''HOME'') }}'" in text
    assert "MULTI: !unsafe" in text
    assert "PLAIN: x" in text
    assert '"{{ playbook_dir }}/build_manifest.json"' in text
    variables = load(text)
    assert variables["madengine_context"]["docker_env_vars"] == context["docker_env_vars"]
    assert variables["run_models_context"].startswith("{{ madengine_context | ansible.builtin.combine(")
    # The model args with `{{` live in build_manifest.json, read with lookup('file') (never templated).
    manifest = json.loads(bundle.files["build_manifest.json"])
    assert manifest["built_models"]["ci-dummy_jinja_dummy"]["args"] == "--label {{ not_a_var }} {% raw %}"
    # The templates themselves keep Ansible's delimiters out of render time.
    assert "{{ run_models_hosts | default('all') }}" in template_text("ansible/playbook.yml.j2")


def test_vars_render_at_run_time_with_plain_ansible(mad, tmp_path):
    """A real ansible-playbook loads the vars file: data stays data, lookups and vault vars apply."""
    context = dict(CTX, docker_env_vars={"TEMPLATED": TEMPLATE, "HIDDEN": "******", "MULTI": "a\n{{ b }}\n"})
    bundle = bundle_for(mad, "dummy", "jinja", context=context)
    out = tmp_path / "bundle"
    write_bundle(bundle, out)
    (out / "probe.yml").write_text("""\
- name: Probe the bundle's variables
  hosts: localhost
  gather_facts: false
  vars_files: [madengine_vars.yml]
  tasks:
    - name: Dump them
      ansible.builtin.copy:
        dest: "{{ playbook_dir }}/probe.json"
        mode: "0600"
        content: >-
          {{ {'context': run_models_context, 'models': run_models_models, 'options': run_models_options,
              'manifest_file': run_models_manifest_file, 'mad_dir': run_models_mad_dir,
              'user': run_models_registry_username, 'password': run_models_registry_password,
              'cred_env': run_models_cred_env, 'config': madengine_execution_config.context,
              'manifest': lookup('ansible.builtin.file', run_models_manifest_file) | ansible.builtin.from_json}
             | ansible.builtin.to_json }}
""")
    (tmp_path / "vault.json").write_text(json.dumps({
        "vault_madengine_docker_env": {"HIDDEN": "given-at-run-time"},
        "vault_madengine_registry_password": "from-the-vault",
        "vault_madengine_cred_env": {"hfcred": {"hfcred_TOKEN": "t"}}}))
    done = subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", "localhost,", "-c", "local", "probe.yml",
         "-e", f"@{tmp_path / 'vault.json'}", "-e", f"ansible_python_interpreter={sys.executable}"],
        cwd=out, env=ansible_env(MAD_REGISTRY_USER="env-user"), capture_output=True, text=True, timeout=300,
        check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    probe = json.loads((out / "probe.json").read_text())
    env = probe["context"]["docker_env_vars"]
    assert env == {"TEMPLATED": TEMPLATE, "HIDDEN": "given-at-run-time", "MULTI": "a\n{{ b }}\n"}
    assert probe["models"] == ["ci-dummy_dummy", "ci-dummy_jinja_dummy"]
    assert probe["options"]["timeout"] == -1
    assert probe["manifest_file"] == str(out / "build_manifest.json")
    assert probe["mad_dir"] == str(out / "mad")
    assert (probe["user"], probe["password"]) == ("env-user", "from-the-vault")
    assert probe["cred_env"] == {"hfcred": {"hfcred_TOKEN": "t"}}
    assert probe["config"]["docker_env_vars"]["HIDDEN"] == "******"
    assert probe["manifest"]["built_models"]["ci-dummy_jinja_dummy"]["args"] == "--label {{ not_a_var }} {% raw %}"


def test_yaml_files_pass_ansible_lints_yamllint_rules(mad):
    pytest.importorskip("ansiblelint")
    from ansiblelint.yaml_utils import load_yamllint_config
    from yamllint import linter

    config = load_yamllint_config()
    context = dict(CTX, docker_env_vars={"T": TEMPLATE, "LONG": "word " * 60, "on": "yes", "M": "a\nb"},
                   tools=[{"name": "time_wrapper"}], docker_mounts={"/data": "/data"})
    bundle = bundle_for(mad, "dummy", "data", "jinja", context=context)
    for name, text in bundle.files.items():
        if name.endswith((".yml", ".yaml")) or name == ".ansible-lint":
            problems = [f"{p.line}: {p.desc} ({p.rule})" for p in linter.run(text, config)
                        if p.level == "error"]
            assert problems == [], (name, problems)


def test_to_vars_yaml():
    text = to_vars_yaml({"a": [1, {"b": ["x"]}], "s": "{% if %}", "m": "l1\nl2", "n": None, "t": True})
    assert text == "a:\n  - 1\n  - b:\n      - x\ns: !unsafe '{% if %}'\nm: |-\n  l1\n  l2\nn: null\nt: true"
    assert load(text) == {"a": [1, {"b": ["x"]}], "s": "{% if %}", "m": "l1\nl2", "n": None, "t": True}


def test_selection_follows_the_execution_config(mad):
    models = models_of(mad, "dummy", "data")
    manifest = manifest_of(models)
    config = exec_config(mad, models_of(mad, "data"), dict(CTX))
    bundle = render_ansible(manifest, config, mad_dir=mad, credentials=Credentials.load(mad, env={}))
    assert load(bundle.files[VARS_FILE])["run_models_models"] == ["ci-dummy_data_dummy"]
    assert bundle.skipped == [{"model": "dummy", "reason": "not in the execution config"}]
    assert "dummy" in bundle.files["README.md"].split("Not run")[1]
    config = exec_config(mad, models_of(mad, "multi"), dict(CTX))
    with pytest.raises(InvalidInputError, match="No model of the execution config"):
        render_ansible(manifest, config, mad_dir=mad, credentials=Credentials.load(mad, env={}))


def test_unknown_tool_and_unpinned_images(mad):
    with pytest.raises(InvalidInputError):
        models = models_of(mad, "dummy")
        config = exec_config(mad, models, dict(CTX))
        config.context["tools"] = [{"name": "no_such_tool"}]
        render_ansible(manifest_of(models), config, mad_dir=mad, credentials=Credentials.load(mad, env={}))
    bundle = bundle_for(mad, "dummy", pinned=False)
    assert bundle.models[0].image == "ci-dummy_dummy" and not bundle.models[0].pinned
    assert any("not pinned" in note for note in bundle.notes)


# ------------------------------------------------------------------------------------------ secrets
def test_no_secret_values_anywhere_in_the_bundle(mad, tmp_path):
    context = dict(CTX, docker_env_vars={"HF_TOKEN": CTX_SECRET, "MODE": "fast"})
    bundle = bundle_for(mad, "dummy", "cred", context=context,
                        env={"MAD_REGISTRY_USER": "envuser", "MAD_REGISTRY_PASSWORD": ENV_PASSWORD})
    out = tmp_path / "bundle"
    write_bundle(bundle, out)
    paths = [p for p in out.rglob("*") if p.is_file()]
    assert out / "mad" / "scripts" / "dummy_cred" / "run.sh" in paths
    for path in paths:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, (path, secret)
    # The secrets are named, and asked for at run time.
    readme = (out / "README.md").read_text()
    assert "hfcred" in readme and "HF_TOKEN" in readme and "vault_madengine_cred_env" in readme
    assert "MAD_REGISTRY_PASSWORD" in readme and "ansible-vault create" in readme
    assert bundle.credentials_required == ["hfcred"] and bundle.secret_env == ["HF_TOKEN"]
    variables = load((out / VARS_FILE).read_text())
    assert variables["madengine_context"]["docker_env_vars"] == {"HF_TOKEN": "******", "MODE": "fast"}
    assert variables["run_models_cred_env"] == "{{ vault_madengine_cred_env | default({}) }}"
    # The masked script keeps its mode.
    assert os.access(out / "mad" / "scripts" / "dummy_cred" / "run.sh", os.X_OK)


def test_inventory_copy(mad, tmp_path):
    inventory = tmp_path / "cluster.yml"
    inventory.write_text("all:\n  hosts:\n    n1: {ansible_host: 127.0.0.9}\n    n2:\n"
                         "      ansible_password: \"{{ vault_n2_password }}\"\n")
    inventory.chmod(0o600)
    bundle = bundle_for(mad, "dummy", inventory=inventory)
    assert bundle.inventory == "inventory.yml" and bundle.hosts == ["n1", "n2"]
    write_bundle(bundle, tmp_path / "bundle")
    assert (tmp_path / "bundle" / "inventory.yml").stat().st_mode & 0o777 == 0o600  # kept private
    assert bundle.files["inventory.yml"] == inventory.read_text()
    assert "inventory.example.yml" not in bundle.files
    cfg = configparser.ConfigParser()
    cfg.read_string(bundle.files["ansible.cfg"])
    assert cfg.get("defaults", "inventory") == "inventory.yml"
    assert "n1, n2" in bundle.files["README.md"]
    ini = tmp_path / "hosts.ini"
    ini.write_text("[gpu]\nn3 ansible_host=127.0.0.10\n")
    assert bundle_for(mad, "dummy", inventory=ini).inventory == "inventory.ini"


@pytest.mark.parametrize("line", ["ansible_password: hunter2-plain", "ansible_become_pass: hunter2-plain",
                                  f"registry_note: {PASSWORD}"])
def test_inventory_with_a_plain_secret_is_exit_4(mad, tmp_path, line):
    inventory = tmp_path / "cluster.yml"
    inventory.write_text(f"all:\n  hosts:\n    n1:\n      {line}\n")
    with pytest.raises(InvalidInputError, match="plain text") as info:
        bundle_for(mad, "dummy", inventory=inventory)
    assert "hunter2" not in str(info.value) and PASSWORD not in str(info.value)


def test_bad_playbook_names_are_exit_4(mad):
    for name in ("playbook.txt", "madengine_vars.yml", "README.md", "inventory.yml"):
        with pytest.raises(InvalidInputError):
            bundle_for(mad, "dummy", playbook=name)


# ------------------------------------------------------------------------------------------ writing
def test_write_bundle_keeps_what_is_not_its_own(mad, tmp_path):
    out = tmp_path / "bundle"
    bundle = bundle_for(mad, "dummy", "data")
    write_bundle(bundle, out)
    assert GENERATED_MARKER in (out / "inventory.example.yml").read_text()
    # The user's own files, an edited example inventory and a stale MAD file.
    (out / "runs" / "r1").mkdir(parents=True)
    (out / "runs" / "r1" / "rows.json").write_text("[]")
    (out / "group_vars" / "all").mkdir(parents=True)
    (out / "group_vars" / "all" / "vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n")
    (out / "inventory.example.yml").write_text("all:\n  hosts:\n    mine: {}\n")
    (out / "mad" / "scripts" / "stale").mkdir()
    (out / "mad" / "scripts" / "stale" / "run.sh").write_text("old")
    bundle = bundle_for(mad, "dummy")
    written = write_bundle(bundle, out)
    assert (out / "runs" / "r1" / "rows.json").read_text() == "[]"
    assert (out / "group_vars" / "all" / "vault.yml").is_file()
    assert (out / "inventory.example.yml").read_text() == "all:\n  hosts:\n    mine: {}\n"
    assert any("was edited: kept" in note for note in bundle.notes)
    assert not (out / "mad" / "scripts" / "stale").exists()
    assert not (out / "mad" / "scripts" / "dummy_data").exists()
    assert (out / "mad" / "scripts" / "dummy" / "run.sh").is_file()
    assert out / DEFAULT_PLAYBOOK in written
    assert not [p.name for p in out.iterdir() if p.name.startswith(".madengine-")]
    # An unedited example is replaced again.
    (out / "inventory.example.yml").unlink()
    write_bundle(bundle_for(mad, "dummy"), out)
    write_bundle(bundle_for(mad, "dummy"), out)
    assert GENERATED_MARKER in (out / "inventory.example.yml").read_text()


def test_write_bundle_is_all_or_nothing(mad, tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    write_bundle(bundle_for(mad, "dummy"), out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = ansible_bundle.write_bytes_atomic
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ansible_bundle, "write_bytes_atomic", failing)
    with pytest.raises(OSError, match="No space"):
        write_bundle(bundle_for(mad, "dummy", "data", context=dict(CTX, timeout=99)), out)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".madengine-")]


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_generate_ansible(capsys, mad, tmp_path, monkeypatch):
    monkeypatch.delenv("MAD_DIR", raising=False)
    monkeypatch.delenv("MODEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    models = models_of(mad, "dummy", "data")
    write_manifest(tmp_path / "build_manifest.json", manifest_of(models, mad_dir=str(mad)))
    code, _, err = cli(capsys, "export-config", "--mad-dir", str(mad), "--tags", "dummy,data",
                       "-c", json.dumps(CTX))
    assert code == 0, err
    code, out, err = cli(capsys, "generate", "ansible")
    assert code == 0, err
    assert (tmp_path / DEFAULT_PLAYBOOK).is_file() and (tmp_path / "mad" / "scripts" / "dummy" / "run.sh").is_file()
    assert DEFAULT_PLAYBOOK in out
    assert "ansible-playbook madengine_distributed.yml" in err
    code, out, err = cli(capsys, "generate", "ansible", "--output", "site/run.yaml", "--manifest-file",
                         "build_manifest.json", "--execution-config", "execution_config.json")
    assert code == 0, err
    assert load((tmp_path / "site" / "run.yaml").read_text())[0]["vars_files"] == [VARS_FILE]


def test_cli_missing_inputs_exit_4(capsys, mad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "generate", "ansible", "--mad-dir", str(mad))
    assert code == 4 and "Build manifest not found" in err and "build" in err
    write_manifest(tmp_path / "build_manifest.json", manifest_of(models_of(mad, "dummy"), mad_dir=str(mad)))
    code, _, err = cli(capsys, "generate", "ansible", "--mad-dir", str(mad), "--execution-config", "nope.json")
    assert code == 4 and "Execution config not found" in err and "nope.json" in err and "export-config" in err
    (tmp_path / "execution_config.json").write_text("{not json")
    code, _, err = cli(capsys, "generate", "ansible", "--mad-dir", str(mad))
    assert code == 4 and "malformed" in err
    config = build_execution_config(models_of(mad, "dummy"), dict(CTX), ExportOptions(mad_dir=mad)).config
    (tmp_path / "execution_config.json").write_text(json.dumps(config))
    code, _, err = cli(capsys, "generate", "ansible", "--mad-dir", str(mad), "--inventory", "missing.yml")
    assert code == 4 and "Inventory not found" in err
    code, _, err = cli(capsys, "generate", "ansible", "--mad-dir", str(mad), "--output", "bundle/play.txt")
    assert code == 4 and ".yml" in err
    assert not (tmp_path / DEFAULT_PLAYBOOK).exists() and not (tmp_path / "bundle").exists()


def test_cli_from_a_manifest_alone(capsys, mad, tmp_path, monkeypatch):
    """No execution config: the manifest's context and run options stand in."""
    monkeypatch.chdir(tmp_path)
    manifest = manifest_of(models_of(mad, "dummy"), mad_dir=str(mad))
    manifest.context = {**manifest.context, "docker_env_vars": {"OMP_NUM_THREADS": "4"}}
    write_manifest(tmp_path / "build_manifest.json", manifest)
    code, out, err = cli(capsys, "generate", "ansible", "--output", "site/play.yml")
    assert code == 0, err
    config = json.loads((tmp_path / "site" / "execution_config.json").read_text())
    assert config["context"]["docker_env_vars"] == {"OMP_NUM_THREADS": "4"}
    assert [m["name"] for m in config["models"]] == ["dummy"]
    assert (tmp_path / "site" / "mad" / "scripts" / "dummy" / "run.sh").is_file()


def test_templates_ship_in_the_package():
    for name in ("playbook.yml.j2", "vars.yml.j2", "ansible.cfg.j2", "ansible-lint.yml.j2",
                 "inventory.example.yml.j2", "README.md.j2"):
        assert template_text(f"ansible/{name}")
