"""The madengine-cli guide (../shared/docs/madengine-cli-guide.md), section by section, without Docker.

Each test names the guide section whose promise it checks. Everything goes through the real entry
points: `madengine-cli` / `madengine` / `python -m madengine.distributed_cli` as subprocesses where the
guide shows a shell command, `invoke()` in-process elsewhere. What needs the engine (builds, runs,
pushes, timeouts, parallel builds, terminal rendering of a build) is in tests/integration/test_guide.py.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from ansible_collections.mad.engine.plugins.module_utils._secrets import mask_secrets
from rich.console import Console

from madengine.cli.app import app, invoke

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "MAD"
CLI = [sys.executable, "-c", "from madengine.cli.app import main; main()"]
LEGACY = [sys.executable, "-c", "from madengine.cli.app import legacy_main; legacy_main()"]
DISTRIBUTED = [sys.executable, "-m", "madengine.distributed_cli"]
CTX = '{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}'
SPINNER = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, out, err


def plain_env(**extra: str) -> dict[str, str]:
    """The environment of a CI job: output piped, no colour asked for, nothing from this shell leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_MADENGINE", "FORCE_COLOR", "MAD_DIR",
                                                                        "MODEL_DIR", "COLUMNS", "TTY_"))}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", **extra)
    return env


def sh(argv: list[str], *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv, *args], cwd=cwd, env=plain_env(**env), capture_output=True, text=True,
                          timeout=60)


def assert_plain(text: str) -> None:
    """Nothing a log file should not hold: no escape sequences, carriage returns or spinner frames."""
    assert "\x1b[" not in text
    assert "\r" not in text
    assert not SPINNER & set(text), "spinner frames in captured output"


def flat(text: str) -> str:
    """Text without panel borders and line wrapping, for substring checks."""
    return " ".join(text.replace("│", " ").split())


# ------------------------------------------------------------------------ Development & Testing
GUIDE_HELP = [["--version"], ["--help"], ["build", "--help"], ["run", "--help"], ["generate", "--help"],
              ["export-config", "--help"], ["generate", "ansible", "--help"], ["generate", "k8s", "--help"],
              # not in the guide's list, but every command and subcommand answers --help
              ["discover", "--help"], ["compare", "--help"], ["report", "--help"]]


@pytest.mark.parametrize("args", GUIDE_HELP, ids=lambda a: " ".join(a))
def test_cli_testing_commands_exit_0(args: list[str]) -> None:
    """Development & Testing → CLI Testing: `madengine-cli --version`, `--help` of every (sub)command."""
    done = sh(CLI, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    if args == ["--version"]:
        assert re.fullmatch(r"madengine \d+\.\d+\.\d+\S*", done.stdout.strip())
    else:
        assert done.stdout.startswith("Usage: madengine-cli")
    assert_plain(done.stdout + done.stderr)


def test_discovery_validation_commands(tmp_path: Path) -> None:
    """MAD Model Discovery → Discovery Validation, from inside the MAD package: `madengine discover …`."""
    mad = tmp_path / "MAD"
    shutil.copytree(EXAMPLE, mad)
    listed = sh(LEGACY, "discover", cwd=mad)
    assert listed.returncode == 0, listed.stderr
    for name in ("dummy", "dummy2/dummy_2", "dummy3/dummy_3"):
        assert name in listed.stdout
    for tag, name in (("dummy", "dummy"), ("dummy2:dummy_2", "dummy2/dummy_2"),
                      ("dummy3:dummy_3:batch_size=256", "dummy3/dummy_3")):
        done = sh(LEGACY, "discover", "--tags", tag, "--json", cwd=mad)
        assert done.returncode == 0, done.stderr
        assert name in [m["name"] for m in json.loads(done.stdout)]
    params = json.loads(sh(LEGACY, "discover", "--json", "--tags", "dummy3:dummy_3:batch_size=256",
                           cwd=mad).stdout)[0]
    assert params["args"].endswith("--batch_size 256")


def test_configuration_validation_error_is_one_screen_with_example(capsys) -> None:
    """Development & Testing: `madengine-cli build --tags dummy  # Should show context requirement error`;
    Troubleshooting → Context Validation Errors; Output → Example Error Output (one screen, example usage,
    no traceback without --verbose)."""
    done = sh(CLI, "build", "--tags", "dummy", cwd=EXAMPLE, COLUMNS="100")
    assert done.returncode == 4
    assert done.stdout == ""
    err = done.stderr
    assert_plain(err)
    assert len(err.splitlines()) <= 24, err  # one screen
    assert "❌" in err and "Additional context is required for build-only operations" in flat(err)
    assert "💡 Example usage:" in err
    assert "madengine-cli build --tags dummy \\" in err
    assert """--additional-context '{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}'""" in err
    assert "--additional-context-file" in flat(err)  # the Solution names both ways
    assert "Traceback" not in err


def test_verbose_adds_a_rich_traceback_without_locals() -> None:
    """Global Options `--verbose, -v`: detailed output and Rich tracebacks (locals stay off)."""
    for flags in (["--verbose", "build"], ["build", "-v"]):
        done = sh(CLI, *flags, "--tags", "dummy", cwd=EXAMPLE, COLUMNS="100")
        assert done.returncode == 4
        assert "Traceback (most recent call last)" in done.stderr
        assert "require_build_context" in done.stderr  # where it was raised
        assert not re.search(r"─ locals ─", done.stderr)
        assert "💡 Example usage:" in done.stderr  # the panel still ends it


def test_unexpected_error_is_exit_1_with_hint_and_traceback_only_verbose(capsys, monkeypatch) -> None:
    """Exit Codes: 1 = unexpected errors; Error Handling: stack traces in verbose mode only."""
    import madengine.discover
    from madengine.cli.console import settings

    monkeypatch.setattr(settings, "verbose", False)  # process-wide: an earlier in-process --verbose sets it

    def boom(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(madengine.discover, "discover_models", boom)
    code, _, err = cli(capsys, "discover", "--mad-dir", str(EXAMPLE))
    assert code == 1
    assert "Unexpected error" in err and "disk on fire" in err and "--verbose" in err
    assert "Traceback" not in err
    code, _, err = cli(capsys, "discover", "--mad-dir", str(EXAMPLE), "--verbose")
    assert code == 1 and "Traceback" in err


# ------------------------------------------------------------------------ Command Reference
GUIDE_OPTIONS = {
    ("build",): ["--tags", "-t", "--registry", "-r", "--additional-context", "-c", "--additional-context-file",
                 "-f", "--clean-docker-cache", "--manifest-output", "-m", "--summary-output", "-s", "--live-output",
                 "-l", "--output", "-o", "--ignore-deprecated", "--data-config", "--tools-config",
                 "--sys-env-details", "--force-mirror-local", "--disable-skip-gpu-arch", "--verbose", "-v"],
    ("run",): ["--tags", "-t", "--manifest-file", "-m", "--registry", "-r", "--timeout", "--keep-alive",
               "--keep-model-dir", "--skip-model-run", "--live-output", "-l", "--clean-docker-cache",
               "--manifest-output", "--additional-context", "-c", "--additional-context-file", "-f",
               "--summary-output", "-s", "--output", "-o", "--ignore-deprecated", "--data-config", "--tools-config",
               "--sys-env-details", "--force-mirror-local", "--disable-skip-gpu-arch", "--verbose", "-v"],
    ("generate", "ansible"): ["--manifest-file", "-m", "--execution-config", "-e", "--output", "-o"],
    ("generate", "k8s"): ["--manifest-file", "-m", "--execution-config", "-e", "--namespace", "-n"],
    ("export-config",): ["--tags", "-t", "--output", "-o", "--additional-context", "-c",
                         "--additional-context-file", "-f", "--ignore-deprecated", "--data-config", "--tools-config",
                         "--sys-env-details", "--force-mirror-local", "--disable-skip-gpu-arch"],
}
GUIDE_DEFAULTS = {
    ("build",): {"manifest_output": "build_manifest.json", "output": "perf.csv", "data_config": "data.json",
                 "tools_config": "scripts/common/tools.json", "sys_env_details": True},
    ("run",): {"timeout": -1, "output": "perf.csv", "manifest_output": "build_manifest.json",
               "sys_env_details": True},
    ("generate", "ansible"): {"manifest_file": "build_manifest.json", "execution_config": "execution_config.json",
                              "output": "madengine_distributed.yml"},
    ("generate", "k8s"): {"manifest_file": "build_manifest.json", "execution_config": "execution_config.json",
                          "namespace": "madengine"},
    ("export-config",): {"output": "execution_config.json", "data_config": "data.json",
                         "tools_config": "scripts/common/tools.json", "sys_env_details": True},
}


def _command(path: tuple[str, ...]):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


@pytest.mark.parametrize("path", list(GUIDE_OPTIONS), ids=" ".join)
def test_command_reference_options_and_defaults(path: tuple[str, ...]) -> None:
    """Command Reference: every option (long and short form) and default the guide lists."""
    command = _command(path)
    opts = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    missing = [opt for opt in GUIDE_OPTIONS[path] if opt not in opts]
    assert not missing, f"madengine-cli {' '.join(path)} lacks {missing}"
    defaults = {param.name: param.default for param in command.params}
    for name, value in GUIDE_DEFAULTS[path].items():
        default = defaults[name]
        assert (str(default) if isinstance(default, Path) else default) == value, name


def test_global_options_version_and_verbose() -> None:
    """Command Reference → Global Options: `--verbose, -v` and `--version`, available for all commands."""
    root = typer.main.get_command(app)
    opts = {opt for param in root.params for opt in param.opts}
    assert {"--verbose", "-v", "--version"} <= opts
    for path in [(name,) for name in root.commands if name != "generate"] + [("generate", "ansible"),
                                                                             ("generate", "k8s")]:
        command_opts = {opt for param in _command(path).params for opt in param.opts}
        assert {"--verbose", "-v"} <= command_opts, path


# ------------------------------------------------------------------------ Configuration Files
@pytest.mark.parametrize("vendor", ["AMD", "NVIDIA", "INTEL"])
@pytest.mark.parametrize("guest_os", ["UBUNTU", "CENTOS", "ROCKY"])
def test_required_context_fields_accept_the_guide_values(capsys, tmp_path, vendor, guest_os) -> None:
    """Configuration Files → Required Fields for Build Operations: gpu_vendor AMD/NVIDIA/INTEL,
    guest_os UBUNTU/CENTOS/ROCKY (export-config validates the context exactly as build does)."""
    code, _, err = cli(capsys, "export-config", "--mad-dir", str(EXAMPLE), "--tags", "dummy", "-c",
                       json.dumps({"gpu_vendor": vendor, "guest_os": guest_os}), "--output",
                       str(tmp_path / "x.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "x.json").read_text())["context"]["gpu_vendor"] == vendor


def test_context_files_from_the_guide_are_accepted(capsys, tmp_path) -> None:
    """Configuration Files: context.json, dev-context.json and prod-context.json as the guide writes them,
    through `--additional-context-file` (Export Configuration: `export-config --additional-context-file`)."""
    files = {
        "context.json": {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "custom_option": "value"},
        "dev-context.json": {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "debug_mode": True, "log_level": "DEBUG"},
        "prod-context.json": {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "optimization_level": "high",
                              "memory_limit": "16GB", "timeout_multiplier": 2.0},
    }
    for name, context in files.items():
        path = tmp_path / name
        path.write_text(json.dumps(context, indent=2))
        out = tmp_path / f"{name}.exec.json"
        code, _, err = cli(capsys, "export-config", "--mad-dir", str(EXAMPLE), "--tags", "dummy", "dummy2:dummy_2",
                           "--additional-context-file", str(path), "--output", str(out))
        assert code == 0, err
        config = json.loads(out.read_text())
        assert {k: config["context"][k] for k in context} == context
        assert [m["name"] for m in config["models"]] == ["dummy", "dummy2/dummy_2"]
    code, _, err = cli(capsys, "export-config", "--mad-dir", str(EXAMPLE), "--tags", "dummy", "-c",
                       '{"gpu_vendor": "AMD", "guest_os": "WINDOWS"}', "--output", str(tmp_path / "bad.json"))
    assert code == 4 and "guest_os" in err


def test_guide_example_data_and_tools_files_are_accepted(capsys, tmp_path) -> None:
    """Configuration Files → data.json / tools.json: the guide's own examples (keys no model refers to)
    are read without complaint by `--data-config` / `--tools-config`."""
    data = tmp_path / "prod-data.json"
    data.write_text(json.dumps({"data_sources": {"default": "/path/to/datasets", "cache": "/tmp/model_cache"},
                                "preprocessing": {"enabled": True, "batch_size": 32}}))
    tools = tmp_path / "prod-tools.json"
    tools.write_text(json.dumps({"docker": {"buildkit": True, "cache_type": "registry"},
                                 "compilers": {"optimization": "O3"}}))
    out = tmp_path / "production_config.json"
    code, _, err = cli(capsys, "export-config", "--mad-dir", str(EXAMPLE), "--tags", "dummy", "-c", CTX,
                       "--data-config", str(data), "--tools-config", str(tools), "--output", str(out))
    assert code == 0, err
    assert [m["name"] for m in json.loads(out.read_text())["models"]] == ["dummy"]


# ------------------------------------------------------------------------ Output & User Experience
def test_configuration_panel_masks_secrets_and_highlights_json() -> None:
    """Output → Information Panels: the configuration panel (settings, then the context as syntax
    highlighted JSON), with secrets masked."""
    from madengine.cli.render.common import config_panel

    context = {"gpu_vendor": "AMD", "guest_os": "UBUNTU",
               "docker_env_vars": {"HF_TOKEN": "hf-secret-value", "NCCL_DEBUG": "INFO"}}
    settings = {"tags": "dummy", "registry": "127.0.0.1:5000", "timeout": "3600 s", "output": "perf.csv"}
    buf = io.StringIO()
    Console(file=buf, width=100, force_terminal=True, color_system="256").print(
        config_panel("Run configuration", settings, mask_secrets(context)))
    text = buf.getvalue()
    assert "hf-secret-value" not in text and "******" in text
    assert "📋 Run configuration" in text
    assert re.search(r"\x1b\[(\d+;)*(3[0-7]|38;5;\d+)m\"gpu_vendor\"", text)  # JSON keys are coloured
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    for key, value in settings.items():
        assert re.search(rf"{key}\s+{re.escape(value)}", plain)
    assert '"NCCL_DEBUG": "INFO"' in plain


def test_workflow_summary_table_renders_both_phases() -> None:
    """Output → Summary Files / Workflow Summary: combined build + run results after a full workflow."""
    from madengine.cli.render.common import workflow_table
    from madengine.results import workflow_summary

    build = {"successful_builds": [{"model": "a"}], "failed_builds": [{"model": "b"}], "failed_pushes": [],
             "skipped_models": [], "wall_time": 3.0}
    run = {"successful_runs": [{"model": "a", "status": "SUCCESS"}], "failed_runs": [], "skipped_runs": [],
           "total_execution_time": 1.5}
    buf = io.StringIO()
    Console(file=buf, width=100).print(workflow_table(workflow_summary(build, run)))
    text = buf.getvalue()
    assert "Workflow summary" in text
    assert re.search(r"Build\s+│\s+❌ failed\s+│\s+1 image\(s\) built, 1 model\(s\) failed", text)
    assert re.search(r"Run\s+│\s+✅ success\s+│\s+1 succeeded, 0 failed, 0 skipped", text)
    assert re.search(r"Overall\s+│\s+❌ failed", text)
    # A failed push fails the build phase too (it is exit 2).
    pushed = workflow_summary({**build, "failed_builds": [], "failed_pushes": [{"docker_image": "x"}]}, run)
    assert pushed["overall_success"] is False


def test_progress_bars_count_images_and_host_model_cells() -> None:
    """Output → Progress Tracking: on a terminal, a bar over the images to build and one over the runs
    (hosts × models in a cluster run: one cell per host and model)."""
    from madengine.cli.render.build import BuildDisplay
    from madengine.cli.render.run import RunDisplay

    def terminal() -> tuple[Console, io.StringIO]:
        buf = io.StringIO()
        return Console(file=buf, width=140, force_terminal=True, color_system=None), buf

    err, buf = terminal()
    with BuildDisplay(Console(file=io.StringIO()), err) as display:
        for image, models in (("ci-a_x", "a"), ("ci-b_x", "b, c")):
            display(image, "queued", models)
        for image in ("ci-a_x", "ci-b_x"):
            display(image, "start", "docker build ...")
            display(image, "done", "1.00s")
        assert display.progress is not None and display.overall is not None
        overall = display.progress.tasks[display.overall]
        assert (overall.total, overall.completed) == (2, 2)
        display.progress.refresh()
    assert re.search(r"images\s+━+\s+2/2", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue()))
    err, buf = terminal()
    cells = [f"{host} · {model}" for host in ("node1", "node2") for model in ("a", "b")]
    with RunDisplay(Console(file=io.StringIO()), err, len(cells)) as display:
        for cell in cells:
            display("start", cell, {"image": "img"})
            display("running", cell, {})
            display("done", cell, {"rows": [{"status": "SUCCESS"}]})
        assert display.progress is not None and display.overall is not None
        overall = display.progress.tasks[display.overall]
        assert (overall.total, overall.completed) == (4, 4)
        display.progress.refresh()
    assert re.search(r"models\s+━+\s+4/4", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue()))


def test_dumb_terminal_gets_plain_lines_not_a_spinner(monkeypatch) -> None:
    """Output degrades cleanly on a terminal that cannot redraw (TERM=dumb): plain lines, no Progress."""
    from madengine.cli.render.build import BuildDisplay
    from madengine.cli.render.run import RunDisplay

    monkeypatch.setenv("TERM", "dumb")
    buf = io.StringIO()
    err = Console(file=buf, width=100, force_terminal=True)
    with BuildDisplay(Console(file=io.StringIO()), err) as build_display:
        assert build_display.progress is None
        build_display("ci-a_x", "queued", "a")
        build_display("ci-a_x", "start", "docker build ...")
        build_display("ci-a_x", "built", "1.00s")
    with RunDisplay(Console(file=io.StringIO()), err, 1) as run_display:
        assert run_display.progress is None
        run_display("start", "a", {"image": "ci-a_x"})
        run_display("done", "a", {"rows": [{"status": "SUCCESS"}]})
    lines = re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue()).splitlines()
    assert lines == ["🔨 a: building ci-a_x", "✅ a: built ci-a_x in 1.00s", "▶ a: starting (ci-a_x)", "✅ a: SUCCESS"]


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}], ids=["piped", "piped+NO_COLOR"])
def test_piped_output_is_plain(tmp_path, env) -> None:
    """Output degrades cleanly in CI logs (stdout/stderr not a terminal) and with NO_COLOR: tables and
    messages stay, escape codes and spinners go. (Build and run: tests/integration/test_guide.py.)"""
    table = sh(CLI, "discover", "--mad-dir", str(EXAMPLE), **env)
    assert table.returncode == 0
    assert "Discovered models" in table.stdout and "dummy2/dummy_2" in table.stdout
    assert "scripts/dummy3/run.sh" in table.stdout  # a CI log is 120 columns wide: cells are not cut
    exported = sh(CLI, "export-config", "--mad-dir", str(EXAMPLE), "--tags", "dummy", "-c", CTX, "--output",
                  str(tmp_path / "e.json"), **env)
    assert exported.returncode == 0 and "✅ Wrote" in exported.stderr
    error = sh(CLI, "build", "--mad-dir", str(EXAMPLE), "--tags", "dummy", **env)
    assert error.returncode == 4 and "💡 Example usage:" in error.stderr
    for done in (table, exported, error):
        assert_plain(done.stdout + done.stderr)


def test_json_outputs_stay_pure_json(tmp_path) -> None:
    """Output: `--json` (discover, compare) prints JSON only, even with colour forced and a narrow terminal."""
    upstream = REPO / "tests" / "fixtures" / "upstream"
    env = {"FORCE_COLOR": "1", "COLUMNS": "30"}
    discovered = sh(CLI, "discover", "--json", "--mad-dir", str(EXAMPLE), **env)
    assert discovered.returncode == 0
    assert {m["name"] for m in json.loads(discovered.stdout)} >= {"dummy", "dummy2/dummy_2", "dummy3/dummy_3"}
    compared = sh(CLI, "compare", str(upstream / "perf.csv"), "--baseline", str(upstream / "perf_baseline.csv"),
                  "--json", **env)
    assert compared.returncode == 5  # the fixture has regressions: the CI gate still holds with --json
    assert json.loads(compared.stdout)["regressions"] == 2
    assert compared.stdout == sh(CLI, "compare", str(upstream / "perf.csv"), "--baseline",
                                 str(upstream / "perf_baseline.csv"), "--format", "json", **env).stdout
    for done in (discovered, compared):
        assert "\x1b[" not in done.stdout


# ------------------------------------------------------------------------ Best Practices
def test_every_remote_step_of_the_ansible_role_has_a_timeout() -> None:
    """Best Practices → Set appropriate timeouts: on cluster hosts (Ansible), every task that touches the
    host has a `timeout:`, so a hung pull, sync or run cannot hang the play (the run task's timeout is the
    model's --timeout plus a margin; tests/cluster covers a remote model timeout for real)."""
    import yaml

    role = REPO / "collections" / "ansible_collections" / "mad" / "engine" / "roles" / "run_models"
    local_only = ("set_fact", "include_tasks", "import_tasks", "debug", "meta", "assert", "fail")

    def tasks(items: list[dict]) -> list[dict]:
        found = []
        for item in items or []:
            nested = [key for key in ("block", "rescue", "always") if key in item]
            found += [t for key in nested for t in tasks(item[key])] if nested else [item]
        return found

    checked = []
    for path in sorted((role / "tasks").glob("*.yml")):
        for task in tasks(yaml.safe_load(path.read_text())):
            action = next(key for key in task if "." in key or key in local_only)
            if action.rsplit(".", 1)[-1] in local_only:
                continue
            checked.append(task["name"])
            assert "timeout" in task, f"{path.name}: task {task['name']!r} ({action}) has no timeout"
    assert len(checked) >= 6


# ------------------------------------------------------------------------ Migration Guide
def test_distributed_cli_maps_onto_madengine_cli_with_one_deprecation_line() -> None:
    """Migration Guide: `python -m madengine.distributed_cli build|run …` still works, runs the same code
    (same output and exit code as madengine-cli) after one deprecation line naming madengine-cli."""
    for args in (["build", "--tags", "dummy"], ["run", "--manifest-file", "no_such_manifest.json"],
                 ["discover", "--tags", "dummy", "--json"], ["generate", "k8s", "--manifest-file", "nope.json"]):
        old = sh(DISTRIBUTED, *args, cwd=EXAMPLE)
        new = sh(CLI, *args, cwd=EXAMPLE)
        assert old.returncode == new.returncode, args
        note, _, rest = old.stderr.partition("\n")
        assert "deprecated" in note and f"madengine-cli {args[0]}" in note
        assert "deprecated" not in rest
        assert rest == new.stderr and old.stdout == new.stdout
    assert sh(DISTRIBUTED, "run", "--manifest-file", "x.json", cwd=EXAMPLE).returncode == 4
    helped = sh(DISTRIBUTED, "--help")
    assert helped.returncode == 0 and "build" in helped.stdout and "run" in helped.stdout


def test_distributed_cli_translates_the_original_spellings() -> None:
    """Migration Guide → Backward Compatibility: the original CLI's `full` command and option names."""
    from madengine.distributed_cli import translate

    assert translate(["full", "--tags", "a", "b", "--data-config-file-name", "d.json",
                      "--tools-json-file-name=t.json", "--ignore-deprecated-flag"]) == [
        "run", "--tags", "a", "b", "--data-config", "d.json", "--tools-config=t.json", "--ignore-deprecated"]
    assert translate(["generate", "ansible", "--output", "full"]) == ["generate", "ansible", "--output", "full"]


@pytest.mark.parametrize("argv", [CLI + ["build"], CLI + ["run"], DISTRIBUTED + ["build"]],
                         ids=["build", "run", "distributed_cli build"])
def test_clean_cache_is_rejected_naming_clean_docker_cache(argv: list[str]) -> None:
    """Migration Guide → Breaking Changes: `--clean-cache` is now `--clean-docker-cache`."""
    done = sh(argv, "--tags", "dummy", "--clean-cache", cwd=EXAMPLE)
    assert done.returncode == 4
    assert "--clean-cache is now --clean-docker-cache" in done.stderr
    assert f"{argv[-1]} --tags dummy --clean-docker-cache" in done.stderr  # the example to copy
    assert_plain(done.stderr)


# ------------------------------------------------------------------------ Shell Completion
@pytest.mark.parametrize(("shell", "needle"), [
    ("bash", "complete -o default -F _madengine_cli_completion madengine-cli"),
    ("zsh", "compdef _madengine_cli_completion madengine-cli"),
    ("fish", "complete --command madengine-cli"),
])
def test_completion_scripts_for_each_shell(shell: str, needle: str) -> None:
    """Shell Completion: `_MADENGINE_CLI_COMPLETE=<shell>_source madengine-cli` emits the script to eval."""
    done = sh(CLI, _MADENGINE_CLI_COMPLETE=f"{shell}_source")
    assert done.returncode == 0, done.stderr
    assert needle in done.stdout
    assert "_MADENGINE_CLI_COMPLETE=complete_" + shell in done.stdout


def _completion_exe() -> str:
    exe = shutil.which("madengine-cli") or str(Path(sys.executable).with_name("madengine-cli"))
    assert Path(exe).exists(), "the madengine-cli console script is not installed"
    return exe


def bash_complete(words: list[str], cwd: Path, **env: str) -> list[str]:
    """Complete the last word of `words` the way bash does: eval the generated script, then call the
    function it registered with COMP_WORDS/COMP_CWORD set, and print COMPREPLY."""
    exe = _completion_exe()
    script = (
        f'eval "$(_MADENGINE_CLI_COMPLETE=bash_source {exe})"\n'
        f"COMP_WORDS=({' '.join(_bash_quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        f"_madengine_cli_completion {exe}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], cwd=cwd, env=plain_env(**env),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def _bash_quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def test_bash_completion_commands_options_and_tags(tmp_path) -> None:
    """Shell Completion (bash, driven for real): commands, subcommands, options, and `--tags <TAB>` from the
    models discovered in the MAD package of the current directory."""
    mad = tmp_path / "MAD"
    shutil.copytree(EXAMPLE, mad)
    commands = bash_complete(["madengine-cli", ""], mad)
    assert {"build", "run", "generate", "export-config", "discover", "compare", "report"} <= set(commands)
    assert bash_complete(["madengine-cli", "ex"], mad) == ["export-config"]
    assert set(bash_complete(["madengine-cli", "generate", ""], mad)) == {"ansible", "k8s", "slurm"}
    assert bash_complete(["madengine-cli", "build", "--tag"], mad) == ["--tags"]
    assert "--manifest-file" in bash_complete(["madengine-cli", "run", "--man"], mad)
    tags = bash_complete(["madengine-cli", "run", "--tags", ""], mad)
    assert {"dummy", "dummies", "dummy2/dummy_2", "dummy3/dummy_3", "dummy2:all", "all"} <= set(tags)
    assert set(bash_complete(["madengine-cli", "build", "--tags", "dummy2"], mad)) >= {"dummy2/dummy_2", "dummy2:all"}
    # Short option and a second tag after the first one.
    assert "dummy_multi" in bash_complete(["madengine-cli", "build", "-t", "dummy", "dummy_m"], mad)


def test_bash_completion_falls_back_to_file_paths_for_file_options(tmp_path) -> None:
    """Shell Completion: file options complete file paths. The generated function answers nothing for
    them, and the script registers `complete -o default`, so bash completes the path itself."""
    mad = tmp_path / "MAD"
    shutil.copytree(EXAMPLE, mad)
    (mad / "context.json").write_text(CTX)
    for words in (["madengine-cli", "build", "--additional-context-file", "cont"],
                  ["madengine-cli", "run", "--manifest-file", "bu"],
                  ["madengine-cli", "generate", "ansible", "--execution-config", ""]):
        assert bash_complete(words, mad) == [], words
    exe = _completion_exe()
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                           f'eval "$(_MADENGINE_CLI_COMPLETE=bash_source {exe})"; complete -p madengine-cli'],
                          env=plain_env(), capture_output=True, text=True, timeout=30)
    assert "complete -o default -F _madengine_cli_completion madengine-cli" in done.stdout


def test_bash_tab_completes_in_an_interactive_shell(tmp_path) -> None:
    """Shell Completion, as a user sees it: an interactive bash with the guide's eval line completes
    `--tag<TAB>` to `--tags` and a file option's path to the file."""
    mad = tmp_path / "MAD"
    shutil.copytree(EXAMPLE, mad)
    (mad / "context.json").write_text(CTX)
    exe = _completion_exe()
    shell = _Interactive(mad, plain_env(PS1="$ ", TERM="dumb", INPUTRC="/dev/null", HOME=str(tmp_path),
                                        PATH=f"{Path(exe).parent}:{os.environ['PATH']}"))
    try:
        shell.send('eval "$(_MADENGINE_CLI_COMPLETE=bash_source madengine-cli)"; echo ready\n', "ready\r\n$ ")
        shell.send("madengine-cli build --additional-context-file cont\t", "context.json ")
        shell.send("\x15madengine-cli build --tag\t", "--tags ")
    finally:
        shell.close()


class _Interactive:
    """`bash -i` on a pseudo-terminal: type keys, wait until the screen shows what is expected."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(["bash", "--norc", "--noprofile", "-i"], stdin=slave, stdout=slave,
                                     stderr=slave, cwd=cwd, env=env, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def send(self, keys: str, expect: str, timeout: float = 20) -> None:
        start = len(self.seen)
        os.write(self.master, keys.encode())
        deadline = time.monotonic() + timeout
        while expect.encode() not in self.seen[start:]:
            left = deadline - time.monotonic()
            assert left > 0, f"{expect!r} did not appear after {keys!r}: {self.seen[start:]!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.mark.parametrize(("shell", "extra"), [
    ("zsh", {}), ("fish", {"_TYPER_COMPLETE_FISH_ACTION": "get-args"}),
])
def test_zsh_and_fish_completion_protocol(shell: str, extra: dict[str, str]) -> None:
    """Shell Completion (zsh, fish): the answers their scripts ask for, for an option and for tags; zsh
    gets `_files` for a file option."""
    exe = _completion_exe()

    def complete(line: str) -> str:
        done = subprocess.run([exe], cwd=EXAMPLE, env=plain_env(_MADENGINE_CLI_COMPLETE=f"complete_{shell}",
                                                                _TYPER_COMPLETE_ARGS=line, **extra),
                              capture_output=True, text=True, timeout=30)
        return done.stdout

    assert "--tags" in complete("madengine-cli build --ta")
    assert "dummy2/dummy_2" in complete("madengine-cli run --tags dummy2")
    if shell == "zsh":
        assert complete("madengine-cli build --additional-context-file ").strip() == "_files"


def test_tags_completion_is_fast_on_a_5000_model_tree(tmp_path) -> None:
    """Shell Completion: `--tags <TAB>` stays fast on a 5,000-model MAD package (root, directory and
    dynamic models), well under what a user would notice as a hang."""
    mad = tmp_path / "big"
    models = [{"name": f"model_{i:04d}", "url": "", "dockerfile": "docker/base", "scripts": "scripts/m/run.sh",
               "n_gpus": "-1", "owner": "perf@example.com", "training_precision": "fp16",
               "tags": [f"family_{i % 50}", "pyt"], "args": "", "timeout": -1} for i in range(4000)]
    mad.mkdir()
    (mad / "models.json").write_text(json.dumps(models))
    for d in range(9):
        folder = mad / "scripts" / f"group{d}"
        folder.mkdir(parents=True)
        (folder / "models.json").write_text(json.dumps([
            {"name": f"m{j}", "dockerfile": "../../docker/base", "scripts": "run.sh", "n_gpus": "1",
             "tags": [f"group{d}_tag"], "args": ""} for j in range(100)]))
    dynamic = mad / "scripts" / "generated"
    dynamic.mkdir(parents=True)
    (dynamic / "get_models_json.py").write_text(
        "def list_models(params):\n"
        "    return [{'name': f'gen{i}', 'dockerfile': '../../docker/base', 'scripts': 'run.sh',\n"
        "             'n_gpus': '1', 'tags': ['generated'], 'args': ''} for i in range(100)]\n")
    discovered = json.loads(sh(CLI, "discover", "--json", cwd=mad).stdout)
    assert len(discovered) == 5000
    exe = _completion_exe()
    start = time.monotonic()
    done = subprocess.run([exe], cwd=mad, capture_output=True, text=True, timeout=30, env=plain_env(
        _MADENGINE_CLI_COMPLETE="complete_bash", COMP_WORDS="madengine-cli run --tags family_1", COMP_CWORD="3"))
    elapsed = time.monotonic() - start
    offered = done.stdout.split()
    assert {"family_1", "family_10", "family_19"} <= set(offered) and len(offered) == 11
    assert elapsed < 3.0, f"completion took {elapsed:.2f}s on 5,000 models"
    offered = bash_complete(["madengine-cli", "run", "--tags", "group3/m9"], mad)
    assert set(offered) == {"group3/m9", *(f"group3/m9{j}" for j in range(10))}
    assert "generated/gen42" in bash_complete(["madengine-cli", "run", "--tags", "generated/gen4"], mad)
