"""Additional context: parsing, merging, validation, build requirements, run resolution, masking."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from madengine.context import (
    parse_context,
    require_build_context,
    resolve_run_context,
    validate_context,
)
from madengine.errors import ExitCode, InvalidInputError
from madengine.hostinfo import HostInfo


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------- parsing


def test_parse_json_string() -> None:
    ctx = parse_context('{"gpu_vendor": "AMD", "guest_os": "UBUNTU", "timeout": 60}', None)
    assert ctx == {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "timeout": 60}


def test_parse_python_dict_literal_for_upstream_compatibility() -> None:
    ctx = parse_context("{'gpu_vendor': 'nvidia', 'docker_env_vars': {'DEBUG': True}}", None)
    assert ctx == {"gpu_vendor": "NVIDIA", "docker_env_vars": {"DEBUG": "true"}}


@pytest.mark.parametrize("text", [None, "", "   "])
def test_no_context_gives_empty_dict(text: str | None) -> None:
    assert parse_context(text, None) == {}


@pytest.mark.parametrize("text", ['["AMD"]', '"AMD"', "42", "null"])
def test_string_must_be_an_object(text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_context(text, None)
    assert "--additional-context must be a JSON object" in info.value.message


def test_malformed_string_names_option_line_and_column_and_hints_example() -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_context('{"gpu_vendor": "AMD",\n "guest_os": }', None)
    err = info.value
    assert err.exit_code == ExitCode.INVALID_INPUT
    assert "--additional-context" in err.message
    assert "line 2, column 14" in err.message
    assert err.hint is not None
    assert '\'{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}\'' in err.hint
    json.loads(err.hint.split("'")[1])  # the example in the hint is itself valid JSON


def test_file_only(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ctx.json", {"gpu_vendor": "amd", "guest_os": "rocky"})
    assert parse_context(None, path) == {"gpu_vendor": "AMD", "guest_os": "ROCKY"}


def test_file_then_string_merged_recursively_string_wins(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ctx.json", {
        "gpu_vendor": "AMD",
        "guest_os": "UBUNTU",
        "docker_env_vars": {"A": "file", "B": "file"},
        "docker_build_arg": {"BASE_DOCKER": "rocm/pytorch"},
        "custom": {"outer": {"x": 1, "y": 2}, "list": [1, 2]},
        "tools": [{"name": "rocprof"}],
    })
    text = json.dumps({
        "gpu_vendor": "NVIDIA",
        "docker_env_vars": {"B": "string", "C": 3},
        "custom": {"outer": {"y": 20, "z": 30}, "list": [9]},
        "tools": [{"name": "trace"}],
    })
    ctx = parse_context(text, path)
    assert ctx == {
        "gpu_vendor": "NVIDIA",
        "guest_os": "UBUNTU",
        "docker_env_vars": {"A": "file", "B": "string", "C": "3"},
        "docker_build_arg": {"BASE_DOCKER": "rocm/pytorch"},
        "custom": {"outer": {"x": 1, "y": 20, "z": 30}, "list": [9]},
        "tools": [{"name": "trace"}],
    }


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InvalidInputError) as info:
        parse_context(None, missing)
    assert str(missing) in info.value.message
    assert "not found" in info.value.message
    assert info.value.hint and "--additional-context-file" in info.value.hint


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_context(None, tmp_path)  # a directory cannot be read as a file
    assert f"Cannot read additional context file {tmp_path}" in info.value.message
    assert info.value.hint


def test_non_utf8_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "ctx.json"
    path.write_bytes(b'{"data": "\xff\xfe"}')
    with pytest.raises(InvalidInputError) as info:
        parse_context(None, path)
    assert str(path) in info.value.message and "UTF-8" in info.value.message


def test_malformed_file_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "ctx.json"
    path.write_text('{\n  "gpu_vendor": "AMD",\n  "guest_os": "UBUNTU",\n}\n')
    with pytest.raises(InvalidInputError) as info:
        parse_context('{"timeout": 5}', path)
    err = info.value
    assert str(path) in err.message
    assert "line 4, column 1" in err.message
    assert err.hint and "trailing commas" in err.hint


def test_file_must_hold_an_object(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ctx.json", [1, 2])
    with pytest.raises(InvalidInputError) as info:
        parse_context(None, path)
    assert f"{path} must contain a JSON object, got array" in info.value.message


def test_type_error_in_file_names_the_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ctx.json", {"timeout": "long"})
    with pytest.raises(InvalidInputError) as info:
        parse_context(None, path)
    assert f"Invalid 'timeout' in {path}" in info.value.message


def test_type_error_in_string_names_the_option(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ctx.json", {"timeout": 5})
    with pytest.raises(InvalidInputError) as info:
        parse_context('{"timeout": "long"}', path)
    assert "Invalid 'timeout' in --additional-context:" in info.value.message


# ---------------------------------------------------------------- validation


def test_case_normalisation() -> None:
    ctx = validate_context({"gpu_vendor": "nVidia", "guest_os": " centos "}, "x")
    assert ctx == {"gpu_vendor": "NVIDIA", "guest_os": "CENTOS"}


@pytest.mark.parametrize("vendor", ["AMD", "NVIDIA", "INTEL", "CPU", "amd", "cpu"])
def test_all_vendors_accepted(vendor: str) -> None:
    assert validate_context({"gpu_vendor": vendor}, "x")["gpu_vendor"] == vendor.upper()


@pytest.mark.parametrize(("key", "value", "expected_text"), [
    ("gpu_vendor", "APPLE", "one of AMD, NVIDIA, INTEL, CPU"),
    ("gpu_vendor", 1, "one of AMD, NVIDIA, INTEL, CPU"),
    ("guest_os", "DEBIAN", "one of UBUNTU, CENTOS, ROCKY"),
    ("guest_os", None, "one of UBUNTU, CENTOS, ROCKY"),
    ("docker_build_arg", ["A=1"], "an object mapping names to strings"),
    ("docker_build_arg", {"A": True}, "a string or number"),
    ("docker_build_arg", {"A": {"nested": 1}}, "a string or number"),
    ("docker_env_vars", "A=1", "an object mapping names to strings"),
    ("docker_env_vars", {"A": None}, "a string, number or boolean"),
    ("docker_env_vars", {"A": [1]}, "a string, number or boolean"),
    ("docker_mounts", ["/data"], "an object mapping container paths to host paths"),
    ("docker_mounts", {"data": "/host"}, "absolute container paths"),
    ("docker_mounts", {"/data": 5}, "a non-empty host path string"),
    ("docker_gpus", "1,,2", "ranges like"),
    ("docker_gpus", "3-1", "ranges like"),
    ("docker_gpus", -1, "ranges like"),
    ("docker_gpus", True, "ranges like"),
    ("docker_gpus", [0, 1], "ranges like"),
    ("docker_cpus", "all", "ranges like"),
    ("docker_cpus", "0-x", "ranges like"),
    ("docker_cpus", 1.5, "ranges like"),
    ("tools", {"name": "rocprof"}, "an array of"),
    ("tools", ["rocprof"], "objects like"),
    ("tools", [{"cmd": "x"}], "a non-empty string"),
    ("tools", [{"name": "rocprof", "cmd": ["a"]}], "a string"),
    ("tools", [{"name": "rocprof", "env_vars": {"A": None}}], "a string, number or boolean"),
    ("pre_scripts", "setup.sh", "an array of"),
    ("pre_scripts", [{"args": "-v"}], "a non-empty string"),
    ("post_scripts", [{"path": "x.sh", "args": ["-v"]}], "a string"),
    ("model_args", ["--bs", "32"], "a string"),
    ("timeout", "60", "an integer number of seconds >= -1"),
    ("timeout", True, "an integer number of seconds >= -1"),
    ("timeout", -2, "an integer number of seconds >= -1"),
    ("timeout", 1.5, "an integer number of seconds >= -1"),
    ("data", 3, "a string"),
])
def test_wrong_type_names_key_expected_given_and_source(key: str, value: Any, expected_text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_context({key: value}, "my-ctx.json")
    message = info.value.message
    assert message.startswith(f"Invalid '{key}")  # the key itself or a path below it
    assert "in my-ctx.json" in message
    assert expected_text in message
    assert "got " in message
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert info.value.example and f'"{key}"' in info.value.example


def test_error_names_nested_path_and_given_value() -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_context({"tools": [{"name": "a"}, {"name": "b", "env_vars": {"X": [1]}}]},
                         "--additional-context")
    assert info.value.message == (
        "Invalid 'tools[1].env_vars.X' in --additional-context: "
        "expected a string, number or boolean, got array [1]"
    )


def test_known_keys_are_normalised() -> None:
    given = {
        "docker_build_arg": {"BASE_DOCKER": "img", "JOBS": 8},
        "docker_env_vars": {"A": 1, "B": 2.5, "C": True, "D": False, "E": "x"},
        "docker_mounts": {"/data": "/mnt/data"},
        "docker_gpus": 2,
        "docker_cpus": " 0-3, 8 ",
        "tools": [{"name": "rocprof", "cmd": "rocprof --stats", "env_vars": {"N": 1}, "extra": [1]}],
        "pre_scripts": [{"path": "a.sh", "args": "-v"}],
        "post_scripts": [{"path": "b.sh"}],
        "model_args": "--bs 32",
        "timeout": -1,
        "data": "/data",
    }
    original = copy.deepcopy(given)
    ctx = validate_context(given, "x")
    assert ctx == {
        "docker_build_arg": {"BASE_DOCKER": "img", "JOBS": "8"},
        "docker_env_vars": {"A": "1", "B": "2.5", "C": "true", "D": "false", "E": "x"},
        "docker_mounts": {"/data": "/mnt/data"},
        "docker_gpus": "2",
        "docker_cpus": "0-3,8",
        "tools": [{"name": "rocprof", "cmd": "rocprof --stats", "env_vars": {"N": "1"}, "extra": [1]}],
        "pre_scripts": [{"path": "a.sh", "args": "-v"}],
        "post_scripts": [{"path": "b.sh"}],
        "model_args": "--bs 32",
        "timeout": -1,
        "data": "/data",
    }
    assert given == original  # a new dict; the input is not touched
    ctx["tools"][0]["extra"].append(2)
    assert given["tools"][0]["extra"] == [1]


@pytest.mark.parametrize(("value", "expected"), [("all", "all"), ("ALL", "all"), ("0,2-4", "0,2-4"),
                                                 ("0, 1", "0,1"), (0, "0")])
def test_docker_gpus_forms(value: Any, expected: str) -> None:
    assert validate_context({"docker_gpus": value}, "x") == {"docker_gpus": expected}


def test_unknown_keys_kept_untouched_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    given = {"gpu_vendor": "amd", "MAD_CONTAINER_IMAGE": "rocm/x:1", "custom": {"nested": [1, {"a": None}]}}
    with caplog.at_level(logging.DEBUG, logger="madengine.context"):
        ctx = validate_context(given, "x")
    assert ctx["MAD_CONTAINER_IMAGE"] == "rocm/x:1"
    assert ctx["custom"] == {"nested": [1, {"a": None}]}
    assert ctx["custom"] is not given["custom"]
    unknown_logs = [r for r in caplog.records if "unchecked" in r.getMessage()]
    assert len(unknown_logs) == 1
    assert unknown_logs[0].levelno == logging.DEBUG
    assert "MAD_CONTAINER_IMAGE, custom" in unknown_logs[0].getMessage()


def test_parse_context_logs_unknown_keys_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_json(tmp_path / "ctx.json", {"custom": 1})
    with caplog.at_level(logging.DEBUG, logger="madengine.context"):
        parse_context('{"custom": 2}', path)
    assert len([r for r in caplog.records if "unchecked" in r.getMessage()]) == 1


def test_validate_rejects_non_object() -> None:
    with pytest.raises(InvalidInputError, match="must be a JSON object"):
        validate_context(["gpu_vendor"], "x")  # type: ignore[arg-type]


# ---------------------------------------------------------------- build requirement


def test_build_context_present_passes() -> None:
    require_build_context({"gpu_vendor": "AMD", "guest_os": "UBUNTU"})


@pytest.mark.parametrize(("ctx", "missing"), [
    ({}, "gpu_vendor, guest_os"),
    ({"gpu_vendor": "AMD"}, "guest_os"),
    ({"guest_os": "UBUNTU", "gpu_vendor": ""}, "gpu_vendor"),
])
def test_build_context_missing(ctx: dict[str, Any], missing: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        require_build_context(ctx)
    err = info.value
    assert err.message.startswith("Additional context is required for build-only operations")
    assert f"missing: {missing}" in err.message
    assert err.exit_code == ExitCode.INVALID_INPUT
    assert err.example == (
        "madengine-cli build --tags dummy \\\n"
        "  --additional-context '{\"gpu_vendor\": \"AMD\", \"guest_os\": \"UBUNTU\"}'"
    )


def test_build_context_example_uses_command_name() -> None:
    with pytest.raises(InvalidInputError) as info:
        require_build_context({}, command="export-config")
    assert info.value.example is not None
    assert info.value.example.startswith("madengine-cli export-config --tags dummy \\\n")


# ---------------------------------------------------------------- run resolution


HOST = HostInfo(gpu_vendor="AMD", gpu_count=8, gpu_architecture="gfx942",
                render_devices=["/dev/dri/renderD128"])


class CountingDetect:
    def __init__(self, host: HostInfo = HOST) -> None:
        self.host = host
        self.calls = 0

    def __call__(self) -> HostInfo:
        self.calls += 1
        return self.host


def test_resolve_fills_everything_missing() -> None:
    detect = CountingDetect()
    ctx = resolve_run_context({"timeout": 5}, detect)
    assert ctx == {"timeout": 5, "gpu_vendor": "AMD", "gpu_count": 8, "gpu_architecture": "gfx942"}
    assert detect.calls == 1


def test_resolve_never_overrides_given_keys(caplog: pytest.LogCaptureFixture) -> None:
    detect = CountingDetect()
    given = {"gpu_vendor": "NVIDIA", "gpu_count": 2}
    with caplog.at_level(logging.WARNING, logger="madengine.context"):
        ctx = resolve_run_context(given, detect)
    assert ctx == {"gpu_vendor": "NVIDIA", "gpu_count": 2, "gpu_architecture": "gfx942"}
    assert given == {"gpu_vendor": "NVIDIA", "gpu_count": 2}
    assert detect.calls == 1
    assert any("NVIDIA" in r.getMessage() and "AMD" in r.getMessage() for r in caplog.records)


def test_resolve_keeps_given_empty_architecture() -> None:
    ctx = resolve_run_context({"gpu_architecture": "", "gpu_count": 0}, CountingDetect())
    assert ctx["gpu_architecture"] == "" and ctx["gpu_count"] == 0 and ctx["gpu_vendor"] == "AMD"


def test_resolve_does_not_detect_when_nothing_missing() -> None:
    def detect() -> HostInfo:
        raise AssertionError("detect must not be called")

    given = {"gpu_vendor": "CPU", "gpu_count": 0, "gpu_architecture": "", "x": {"y": 1}}
    ctx = resolve_run_context(given, detect)
    assert ctx == given
    assert ctx is not given and ctx["x"] is not given["x"]


@pytest.mark.parametrize(("given", "stored"), [("0, 2 - 4", "0,2-4"), (3, "3"), ("all", "all"), (" 1 ,3", "1,3")])
def test_docker_gpus_is_read_by_the_one_range_parser(given, stored) -> None:
    from ansible_collections.mad.engine.plugins.module_utils._runspec import parse_gpu_ranges, select_gpus

    ctx = validate_context({"docker_gpus": given}, "--additional-context")
    assert ctx["docker_gpus"] == stored
    # What the context accepts, the container side selects from the same way (and vice versa).
    if stored != "all":
        assert select_gpus(1, given, 8) == parse_gpu_ranges(stored)[:1]
