"""CLI behaviour through the real entry point: exit codes, messages, help, completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from madengine import __version__
from madengine.cli.app import app, invoke, legacy_app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "MAD"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"madengine {__version__}"


def test_help_lists_every_command_and_guide_options():
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("build", "run", "generate", "export-config", "discover"):
        assert command in result.output
    build_help = runner.invoke(app, ["build", "--help"]).output
    for option in ("--tags", "--registry", "--additional-context", "--additional-context-file",
                   "--clean-docker-cache", "--manifest-output", "--summary-output", "--live-output",
                   "--output", "--ignore-deprecated", "--data-config", "--tools-config",
                   "--sys-env-details", "--force-mirror-local", "--disable-skip-gpu-arch", "--mad-dir",
                   "--verbose"):
        assert option in build_help, option
    run_help = runner.invoke(app, ["run", "--help"]).output
    for option in ("--manifest-file", "--timeout", "--keep-alive", "--keep-model-dir", "--skip-model-run",
                   "--manifest-output", "--clean-docker-cache"):
        assert option in run_help, option
    gen_help = runner.invoke(app, ["generate", "ansible", "--help"]).output
    for option in ("--manifest-file", "--execution-config", "--output"):
        assert option in gen_help
    assert "--namespace" in runner.invoke(app, ["generate", "k8s", "--help"]).output


def test_bare_invocation_shows_help_and_succeeds(capsys):
    code, out, err = cli(capsys)
    assert code == 0
    assert "Usage" in out + err


@pytest.mark.parametrize("args", [["build", "--clean-cache"], ["run", "--timeout", "soon"], ["nope"]])
def test_usage_errors_exit_4_not_2(capsys, args):
    code, out, err = cli(capsys, *args)
    assert code == 4
    assert "Error" in out + err


def test_clean_cache_points_to_new_name(capsys):
    code, out, err = cli(capsys, "build", "--clean-cache")
    assert code == 4
    assert "--clean-docker-cache" in out + err


def test_discover_table(capsys):
    code, out, _ = cli(capsys, "discover", "--mad-dir", str(EXAMPLE))
    assert code == 0
    for name in ("dummy", "dummy2/dummy_2", "dummy3/dummy_3"):
        assert name in out
    for source in ("root", "dir", "dynamic"):
        assert source in out
    assert "model(s)" in out


def test_discover_json_is_pure_json(capsys):
    code, out, err = cli(capsys, "discover", "--json", "--mad-dir", str(EXAMPLE), "--tags", "dummies")
    assert code == 0
    models = json.loads(out)
    assert [m["name"] for m in models] == ["dummy", "dummy2/dummy_2", "dummy3/dummy_3"]
    assert {m["source"] for m in models} == {"root", "dir", "dynamic"}
    for key in ("name", "tags", "dockerfile", "scripts", "args", "n_gpus", "timeout", "multiple_results",
                "data", "cred", "skip_gpu_arch", "deprecated", "url", "owner", "training_precision",
                "additional_docker_run_options", "source"):
        assert key in models[0], key


def test_discover_params_reach_args(capsys):
    code, out, _ = cli(capsys, "discover", "--json", "--mad-dir", str(EXAMPLE),
                       "--tags", "dummy3:dummy_3:batch_size=512:in=32")
    assert code == 0
    (model,) = json.loads(out)
    assert model["args"].endswith("--batch_size 512 --in 32")
    assert model["params"] == {"batch_size": "512", "in": "32"}


def test_mad_dir_from_env(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODEL_DIR", str(EXAMPLE))
    code, out, _ = cli(capsys, "discover", "--json", "--tags", "dummy2:dummy_2")
    assert code == 0
    assert [m["name"] for m in json.loads(out)] == ["dummy2/dummy_2"]


def test_unknown_tag_exit_4_with_suggestion(capsys):
    code, out, err = cli(capsys, "discover", "--mad-dir", str(EXAMPLE), "--tags", "dumy")
    assert code == 4
    assert "dumy" in err and "did you mean" in err and "'dummy'" in err
    assert "Traceback" not in err


def test_malformed_models_json_names_file_line_column(capsys, tmp_path):
    (tmp_path / "models.json").write_text('[\n  {"name": "a",}\n]\n')
    code, _, err = cli(capsys, "discover", "--mad-dir", str(tmp_path))
    assert code == 4
    assert "models.json" in err and "line 2" in err


def test_crashing_dynamic_script_shows_last_line_and_traceback_only_verbose(capsys, tmp_path):
    script_dir = tmp_path / "scripts" / "boom"
    script_dir.mkdir(parents=True)
    (script_dir / "get_models_json.py").write_text(
        "def helper():\n    raise RuntimeError('cannot reach model zoo')\n\n"
        "def list_models():\n    return helper()\n")
    code, _, err = cli(capsys, "discover", "--mad-dir", str(tmp_path))
    assert code == 4
    assert "get_models_json.py" in err and "cannot reach model zoo" in err
    assert "Traceback" not in err and "def helper" not in err
    code, _, err = cli(capsys, "discover", "--mad-dir", str(tmp_path), "--verbose")
    assert code == 4
    assert "Traceback" in err


def test_build_without_context_is_exit_4_with_example(capsys):
    code, _, err = cli(capsys, "build", "--tags", "dummy", "--mad-dir", str(EXAMPLE))
    assert code == 4
    assert "Additional context is required for build-only operations" in err
    assert "Example usage" in err and '"gpu_vendor"' in err


def test_bad_context_type_exit_4(capsys):
    code, _, err = cli(capsys, "build", "--tags", "dummy", "--mad-dir", str(EXAMPLE),
                       "-c", '{"gpu_vendor": "CPU", "guest_os": "UBUNTU", "docker_env_vars": [1]}')
    assert code == 4
    assert "docker_env_vars" in err


def test_madengine_offers_the_same_commands_as_madengine_cli(capsys):
    """Issue 14 item 8: MAD's docs say `madengine run --tags ...`, `madengine build ...`."""
    def commands(typer_app) -> set[str]:
        import typer

        group = typer.main.get_command(typer_app)
        return set(group.commands)

    assert commands(legacy_app) == commands(app)
    assert {"run", "build", "generate", "export-config", "discover", "compare", "report"} <= commands(legacy_app)
    code = invoke(legacy_app, ["run", "--help"], "madengine")
    out, _ = capsys.readouterr()
    assert code == 0 and "Usage: madengine run" in out
    code = invoke(legacy_app, ["build", "--tags", "dummy", "--mad-dir", str(EXAMPLE), "-c", "{bad"], "madengine")
    assert code == 4


def test_legacy_entry_point_has_discover(capsys):
    code = invoke(legacy_app, ["discover", "--json", "--mad-dir", str(EXAMPLE), "--tags", "dummy"],
                  "madengine")
    out, _ = capsys.readouterr()
    assert code == 0
    assert json.loads(out)[0]["name"] == "dummy"


def test_bash_completion_source_and_tags():
    env = dict(os.environ, _MADENGINE_CLI_COMPLETE="bash_source")
    exe = Path(sys.executable).with_name("madengine-cli")
    source = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=30)
    assert source.returncode == 0
    assert "complete -o default -F _madengine_cli_completion madengine-cli" in source.stdout
    words = "madengine-cli discover --tags dumm"
    env = dict(os.environ, _MADENGINE_CLI_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD="3",
               _TYPER_COMPLETE_ARGS=words, MAD_DIR=str(EXAMPLE))
    done = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=30)
    offered = done.stdout.split()
    assert "dummy" in offered and "dummies" in offered and "dummy2/dummy_2" in offered


@pytest.mark.parametrize("args", [
    ["discover", "--json", "--tags", "dummy"],
    ["build", "--dry-run", "--json", "--tags", "dummy", "-j", "2", "-c", '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'],
    ["compare", "nope.csv", "--baseline", "nope2.csv", "--format", "json"],
])
def test_commands_do_not_import_pydantic(args):
    """Start-up: typer 0.2x would import Pydantic (about 0.25 s) to coerce any option (issue 14 item 8)."""
    code = ("import sys\nfrom madengine.cli.app import legacy_main\ntry:\n    legacy_main()\n"
            "finally:\n    print('PYDANTIC', 'pydantic' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, *args, "--mad-dir", str(EXAMPLE)] if args[0] != "compare"
                          else [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert "PYDANTIC False" in done.stderr, done.stderr


@pytest.mark.parametrize("args", [["--version"], ["discover", "--json", "--tags", "dummy"]])
def test_commands_that_draw_nothing_never_import_rich(args, tmp_path):
    """Rich is a third of the start-up: it is imported on the first thing drawn, not before."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('RICH', any(m == 'rich' or m.startswith('rich.') for m in sys.modules), "
            "file=sys.stderr))\n"
            "from madengine.cli.app import main\n"
            f"sys.argv = ['madengine-cli', *{args!r}]\n"
            "main()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=EXAMPLE,
                         env=dict(os.environ, PYTHONPATH=str(EXAMPLE.parents[1])))
    assert out.returncode == 0, out.stderr
    assert "RICH False" in out.stderr


def test_a_warning_is_drawn_by_rich_when_it_happens(tmp_path):
    """The deferred log handler still shows warnings (here: a model defined twice) on stderr."""
    (tmp_path / "models.json").write_text(json.dumps([{"name": "m", "tags": ["t"]}, {"name": "m", "tags": ["u"]}]))
    out = subprocess.run([sys.executable, "-c", "from madengine.cli.app import main; main()", "discover", "--json",
                          "--mad-dir", str(tmp_path)],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(EXAMPLE.parents[1])))
    assert out.returncode == 0, out.stderr
    assert "WARNING" in out.stderr and "defined twice" in out.stderr
    assert [(m["name"], m["tags"]) for m in json.loads(out.stdout)] == [("m", ["t"])]  # selected once


@pytest.mark.parametrize(("argv", "needed"), [
    (["discover", "--json"], ["discover"]),
    (["-v", "run", "--tags", "dummy"], ["run"]),
    (["generate", "k8s", "--help"], ["generate"]),
    (["--version"], []),
    (["--help"], None),
    (["-h", "discover"], None),
    ([], None),
    (["disc"], None),  # misspelt: every command, so the error can suggest the right one
])
def test_commands_for_names_what_the_command_line_needs(argv, needed, monkeypatch):
    from madengine.cli.app import commands_for

    monkeypatch.delenv("_MADENGINE_CLI_COMPLETE", raising=False)
    assert commands_for(argv, "madengine-cli") == needed


def test_commands_for_completion_needs_every_command(monkeypatch):
    from madengine.cli.app import commands_for

    monkeypatch.setenv("_MADENGINE_CLI_COMPLETE", "complete_bash")
    assert commands_for(["discover"], "madengine-cli") is None


def test_a_command_imports_only_its_own_module():
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('LOADED', sorted(m for m in sys.modules "
            "if m.startswith('madengine.cli.commands.')), file=sys.stderr))\n"
            "from madengine.cli.app import main\n"
            "sys.argv = ['madengine-cli', 'discover', '--json', '--tags', 'dummy']\n"
            "main()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=EXAMPLE,
                         env=dict(os.environ, PYTHONPATH=str(EXAMPLE.parents[1])))
    assert out.returncode == 0, out.stderr
    assert "LOADED ['madengine.cli.commands.discover']" in out.stderr
