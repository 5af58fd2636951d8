"""`madengine-cli export-config` and the execution config it writes (madengine.execution_config)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from madengine import __version__
from madengine.cli.app import app, invoke
from madengine.errors import ExitCode, InvalidInputError
from madengine.execution_config import (
    EXECUTION_CONFIG_VERSION,
    execution_config_from_dict,
    load_execution_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "MAD"
CTX = '{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}'
PASSWORD = "Zq-distinctive-Pa55word-9187"
TOKEN = "hf_distinctive_token_55501"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mad(tmp_path: Path) -> Path:
    """A copy of examples/MAD with a credential.json holding distinctive secrets and a `cred` model."""
    root = tmp_path / "MAD"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".ruff_cache", "__pycache__"))
    (root / "credential.json").write_text(json.dumps({
        "127.0.0.1:5000": {"username": "reguser", "password": PASSWORD},
        "hfcred": {"username": "bob", "token": TOKEN},
    }))
    models = json.loads((root / "models.json").read_text())
    models.append({"name": "dummy_cred", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh",
                   "tags": ["cred"], "cred": "hfcred", "n_gpus": "2", "timeout": 60})
    models.append({"name": "dummy_old", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh",
                   "tags": ["old"], "deprecated": True})
    (root / "models.json").write_text(json.dumps(models, indent=2))
    return root


def export(capsys, mad: Path, out: Path, *args: str, ctx: str = CTX) -> tuple[int, str, str]:
    return cli(capsys, "export-config", "--mad-dir", str(mad), "-o", str(out), "-c", ctx, *args)


def test_export_config_content(capsys, mad, tmp_path):
    out = tmp_path / "execution_config.json"
    ctx = json.dumps({"gpu_vendor": "amd", "guest_os": "UBUNTU", "timeout": 900,
                      "docker_env_vars": {"HF_TOKEN": "ctx-secret-value-31337", "MODE": "fast"}})
    code, stdout, err = export(capsys, mad, out, "--tags", "dummy,dummy3:dummy_3:batch_size=512",
                               "--tags", "cred", "--tags", "data", ctx=ctx)
    assert code == 0, err
    assert "dummy_cred" in stdout
    config = json.loads(out.read_text())
    assert config["execution_config_version"] == EXECUTION_CONFIG_VERSION
    assert config["madengine_version"] == __version__
    names = [m["name"] for m in config["models"]]
    assert names == ["dummy", "dummy3/dummy_3", "dummy_cred", "dummy_data"]
    dummy3 = config["models"][1]
    # Fully resolved: relocated paths, dynamic update_model() fields, tag params applied.
    assert dummy3["scripts"] == "scripts/dummy3/run.sh"
    assert dummy3["params"] == {"batch_size": "512"}
    assert dummy3["args"].endswith("--batch_size 512")
    assert dummy3["owner"] == "mad.support@example.com"
    # Context normalised and masked.
    assert config["context"]["gpu_vendor"] == "AMD"
    assert config["context"]["docker_env_vars"] == {"HF_TOKEN": "******", "MODE": "fast"}
    options = config["run_options"]
    assert options["timeout"] == 900
    assert options["keep_alive"] is False
    assert options["data_config"] == str(mad / "data.json")
    assert options["tools_config"] == str(mad / "scripts/common/tools.json")
    assert options["data"] == {"tiny": {"local": "data/tiny", "readwrite": False}}
    assert options["tools"] == {}
    assert options["skip_gpu_arch"] is True and options["disable_skip_gpu_arch"] is False
    assert options["sys_env_details"] is True and options["force_mirror_local"] is None
    assert config["credentials_required"] == ["hfcred"]
    resources = {r["model"]: r for r in config["resources"]}
    assert [r["model"] for r in config["resources"]] == names
    assert resources["dummy_cred"] == {"model": "dummy_cred", "n_gpus": 2, "gpu_vendor": "AMD",
                                       "gpu_resource": "amd.com/gpu", "timeout": 900, "data": None}
    assert resources["dummy_data"]["data"] == {"name": "tiny", "defined": True, "providers": ["local"],
                                               "readwrite": False, "size": ""}
    text = out.read_text()
    for secret in (PASSWORD, TOKEN, "ctx-secret-value-31337"):
        assert secret not in text
        assert secret not in stdout + err


def test_export_options_and_timeout_default(capsys, mad, tmp_path):
    out = tmp_path / "ec.json"
    ctx = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU", "tools": [{"name": "time_wrapper"}]}'
    mirror = tmp_path / "mirror"
    code, _, err = export(capsys, mad, out, "--tags", "dummy", "--disable-skip-gpu-arch",
                          "--no-sys-env-details", "--force-mirror-local", str(mirror), ctx=ctx)
    assert code == 0, err
    config = json.loads(out.read_text())
    options = config["run_options"]
    assert options["timeout"] == -1  # each model's own
    assert options["disable_skip_gpu_arch"] is True and options["skip_gpu_arch"] is False
    assert options["sys_env_details"] is False
    assert options["force_mirror_local"] == str(mirror.absolute())
    assert options["tools"]["time_wrapper"]["env_vars"] == {"TIME_WRAPPER_ENABLED": "1"}
    assert config["resources"][0] == {"model": "dummy", "n_gpus": 1, "gpu_vendor": "CPU", "gpu_resource": None,
                                      "timeout": 300, "data": None}


def test_deprecated_models_are_skipped_unless_asked(capsys, mad, tmp_path):
    out = tmp_path / "ec.json"
    code, _, err = export(capsys, mad, out, "--tags", "old,dummy")
    assert code == 0
    config = json.loads(out.read_text())
    assert [m["name"] for m in config["models"]] == ["dummy"]
    assert config["skipped"] == [{"model": "dummy_old", "reason": "deprecated (use --ignore-deprecated to export it)"}]
    assert "dummy_old" in err
    code, _, _ = export(capsys, mad, out, "--tags", "old", "--ignore-deprecated")
    assert code == 0
    assert [m["name"] for m in json.loads(out.read_text())["models"]] == ["dummy_old"]


@pytest.mark.parametrize("ctx", ['{"guest_os": "UBUNTU"}', '{"gpu_vendor": "AMD"}', "{}"])
def test_missing_build_context_exits_4(capsys, mad, tmp_path, ctx):
    out = tmp_path / "ec.json"
    code, _, err = export(capsys, mad, out, "--tags", "dummy", ctx=ctx)
    assert code == ExitCode.INVALID_INPUT
    assert "required for build-only operations" in err
    assert not out.exists()


def test_unknown_tag_exits_4(capsys, mad, tmp_path):
    out = tmp_path / "ec.json"
    code, _, err = export(capsys, mad, out, "--tags", "dumy")
    assert code == ExitCode.INVALID_INPUT
    assert "dumy" in err
    assert not out.exists()


def test_missing_named_configs_and_unknown_tool_exit_4(capsys, mad, tmp_path):
    out = tmp_path / "ec.json"
    code, _, err = export(capsys, mad, out, "--tags", "dummy", "--data-config", str(tmp_path / "nope.json"))
    assert code == 4 and "--data-config file not found" in err
    code, _, err = export(capsys, mad, out, "--tags", "dummy",
                          ctx='{"gpu_vendor": "AMD", "guest_os": "UBUNTU", "tools": [{"name": "nope"}]}')
    assert code == 4 and "unknown tool 'nope'" in err
    assert not out.exists()


def test_export_needs_no_docker(mad, tmp_path):
    """export-config never imports the docker SDK (and so needs no engine)."""
    out = tmp_path / "ec.json"
    code = (
        "import sys\n"
        "from madengine.cli.app import app, invoke\n"
        f"rc = invoke(app, ['export-config', '--mad-dir', {str(mad)!r}, '--tags', 'dummy', '-o', {str(out)!r},"
        f" '-c', {CTX!r}], 'madengine-cli')\n"
        "assert rc == 0, rc\n"
        "assert 'docker' not in sys.modules, 'docker SDK imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": "unix:///nonexistent.sock",
                                 "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert out.is_file()


# ------------------------------------------------------------------------------------------ loading
def test_load_round_trip(capsys, mad, tmp_path):
    out = tmp_path / "ec.json"
    assert export(capsys, mad, out, "--tags", "dummy,dummy2:dummy_2")[0] == 0
    config = load_execution_config(out)
    assert [m.name for m in config.models] == ["dummy", "dummy2/dummy_2"]
    assert config.models[1].dir == "dummy2"
    assert config.context["gpu_vendor"] == "AMD"
    assert config.run_options["timeout"] == -1
    assert config.path == out
    assert config.raw == json.loads(out.read_text())


@pytest.mark.parametrize("content, message", [
    (None, "Execution config not found"),
    ("{not json", "malformed JSON at line 1"),
    ("[]", "must be a JSON object"),
    ('{"hello": 1}', "it is not an execution config"),
    ('{"execution_config_version": 99, "models": []}', "execution_config_version 99"),
    ('{"execution_config_version": 1, "models": {}}', "'models' must be a list"),
    ('{"execution_config_version": 1, "models": [{"tags": []}]}', "field 'name'"),
    ('{"execution_config_version": 1, "models": [], "run_options": []}', "'run_options' must be an object"),
    ('{"execution_config_version": 1, "models": [], "run_options": {"timeout": "soon"}}', "run_options.timeout"),
    ('{"execution_config_version": 1, "models": [], "credentials_required": [1]}', "credential names"),
])
def test_load_errors_are_exit_4(tmp_path, content, message):
    path = tmp_path / "execution_config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidInputError) as info:
        load_execution_config(path)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert message in info.value.message
    assert info.value.hint


def test_load_a_folder_is_exit_4(tmp_path):
    with pytest.raises(InvalidInputError, match="is a folder"):
        load_execution_config(tmp_path)


def test_from_dict_defaults():
    config = execution_config_from_dict({"models": [{"name": "m", "scripts": "s/run.sh"}]})
    assert config.version == EXECUTION_CONFIG_VERSION
    assert config.context == {} and config.run_options == {} and config.resources == []
    assert config.models[0].name == "m"
