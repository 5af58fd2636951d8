"""Model: schema validation, normalisation, to_dict/from_dict, and the CustomModel import paths."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from madengine.errors import ExitCode, InvalidInputError
from madengine.model import MODEL_FIELDS, Model, model_from_raw, relocate_path

REPO = Path(__file__).resolve().parents[2]


def build(raw, **kw) -> Model:
    kw.setdefault("where", "models.json")
    kw.setdefault("index", 0)
    return model_from_raw(raw, **kw)


# ------------------------------------------------------------------------------------------ normalising
def test_minimal_model_gets_defaults():
    m = build({"name": "m"})
    assert m.name == "m"
    assert m.tags == [] and m.skip_gpu_arch == []
    assert m.n_gpus == 1
    assert m.timeout is None
    assert (m.dockerfile, m.scripts, m.args, m.url, m.owner) == ("", "", "", "", "")
    assert (m.multiple_results, m.data, m.cred, m.dockercontext) == (None, None, None, None)
    assert m.deprecated is False
    assert (m.source, m.dir, m.params, m.extra) == ("root", None, {}, {})


def test_full_model_normalised():
    m = build({
        "name": "m", "tags": "a, b,,c", "dockerfile": "docker/x", "scripts": "scripts/x/run.sh",
        "args": "--k v", "n_gpus": "-1", "timeout": "7200", "multiple_results": "perf.csv",
        "data": "tiny", "cred": "example", "skip_gpu_arch": "gfx908, gfx90a", "is_deprecated": True,
        "url": "u", "owner": "o", "training_precision": "fp16",
        "additional_docker_run_options": "--shm-size 1g",
        "dockercontext": "docker",
    })
    assert m.tags == ["a", "b", "c"]
    assert m.n_gpus == -1
    assert m.timeout == 7200
    assert m.skip_gpu_arch == ["gfx908", "gfx90a"]
    assert m.deprecated is True
    assert m.multiple_results == "perf.csv" and m.data == "tiny" and m.cred == "example"
    assert m.additional_docker_run_options == "--shm-size 1g"
    assert m.dockercontext == "docker"


@pytest.mark.parametrize(("value", "expected"),
                         [("1", 1), (" 8 ", 8), ("-1", -1), (4, 4), (-1, -1), ("0", 0)])
def test_n_gpus_string_or_int(value, expected):
    assert build({"name": "m", "n_gpus": value}).n_gpus == expected


def test_timeout_int_minus_one_and_null():
    assert build({"name": "m", "timeout": 30}).timeout == 30
    assert build({"name": "m", "timeout": -1}).timeout == -1
    assert build({"name": "m", "timeout": None}).timeout is None


def test_empty_optional_strings_become_none():
    m = build({"name": "m", "multiple_results": "", "data": "", "cred": "", "dockercontext": ""})
    assert (m.multiple_results, m.data, m.cred, m.dockercontext) == (None, None, None, None)


def test_deprecated_either_key():
    assert build({"name": "m", "deprecated": True}).deprecated is True
    assert build({"name": "m", "is_deprecated": True}).deprecated is True
    assert build({"name": "m", "deprecated": False, "is_deprecated": False}).deprecated is False


def test_relocate_for_a_scripts_dir():
    m = build({"name": "m", "dockerfile": "../../docker/dummy", "scripts": "run.sh", "dockercontext": "ctx"},
              dir="dummy2", source="dir", relocate=True)
    assert m.name == "dummy2/m"
    assert m.dockerfile == "docker/dummy"
    assert m.scripts == "scripts/dummy2/run.sh"
    assert m.dockercontext == "ctx"  # relative to the MAD root (ROCm), issue 14 item 4
    assert m.short_name == "m"


def test_relocate_root_only_normalises():
    m = build({"name": "m", "dockerfile": "./docker//x", "scripts": "scripts/a/../b/run.sh"}, relocate=True)
    assert (m.name, m.dockerfile, m.scripts) == ("m", "docker/x", "scripts/b/run.sh")


def test_relocate_path_keeps_absolute_and_empty():
    assert relocate_path("/abs/run.sh", "scripts/d") == "/abs/run.sh"
    assert relocate_path("", "scripts/d") == ""
    assert relocate_path("x/../y", None) == "y"


# ------------------------------------------------------------------------------------------ schema errors
@pytest.mark.parametrize(("raw", "field"), [
    ({"name": "m", "n_gpus": "two"}, "n_gpus"),
    ({"name": "m", "n_gpus": 1.5}, "n_gpus"),
    ({"name": "m", "n_gpus": -2}, "n_gpus"),
    ({"name": "m", "tags": ["a", 3]}, "tags"),
    ({"name": "m", "tags": 3}, "tags"),
    ({"name": "m", "timeout": "soon"}, "timeout"),
    ({"name": "m", "deprecated": "yes"}, "deprecated"),
    ({"name": "m", "args": ["--x"]}, "args"),
    ({"name": "m", "dockerfile": 1}, "dockerfile"),
    ({"name": "m", "skip_gpu_arch": {"a": 1}}, "skip_gpu_arch"),
])
def test_schema_error_names_file_model_and_field(raw, field):
    with pytest.raises(InvalidInputError) as info:
        build(raw, where="scripts/d/models.json", index=3)
    err = info.value
    assert err.exit_code == ExitCode.INVALID_INPUT
    assert "scripts/d/models.json" in err.message
    assert "'m'" in err.message and "#3" in err.message
    assert f"field '{field}'" in err.message
    assert err.hint and field in err.hint
    assert err.example


def test_missing_name_uses_the_index():
    with pytest.raises(InvalidInputError) as info:
        build({"tags": ["x"]}, where="models.json", index=5)
    assert "models.json" in info.value.message
    assert "entry #5" in info.value.message
    assert "field 'name'" in info.value.message and "missing" in info.value.message


def test_empty_or_non_string_name():
    for bad in ("", 7):
        with pytest.raises(InvalidInputError) as info:
            build({"name": bad})
        assert "field 'name'" in info.value.message


def test_entry_that_is_not_an_object():
    with pytest.raises(InvalidInputError) as info:
        build(["name", "m"], where="models.json", index=2)
    assert "entry #2" in info.value.message and "not an object" in info.value.message


# ------------------------------------------------------------------------------------------ unknown keys
def test_unknown_keys_warned_once_per_key_and_kept(caplog):
    warned: set[str] = set()
    with caplog.at_level(logging.WARNING, logger="madengine"):
        a = build({"name": "a", "gpu_type": "mi300", "notes": "x"}, where="models.json", warned=warned)
        b = build({"name": "b", "gpu_type": "mi250"}, where="models.json", index=1, warned=warned)
    assert a.extra == {"gpu_type": "mi300", "notes": "x"}
    assert b.extra == {"gpu_type": "mi250"}
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "'gpu_type'" in m]) == 1
    assert len([m for m in messages if "'notes'" in m]) == 1
    assert all("models.json" in m for m in messages)
    assert a.to_dict()["gpu_type"] == "mi300"


def test_no_warning_without_a_warned_set(caplog):
    with caplog.at_level(logging.WARNING, logger="madengine"):
        m = build({"name": "a", "gpu_type": "mi300"}, warned=None)
    assert m.extra == {"gpu_type": "mi300"}
    assert caplog.records == []


def test_reserved_keys_are_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="madengine"):
        m = build({"name": "a", "source": "evil"}, warned=set())
    assert m.source == "root" and "source" not in m.extra
    assert any("reserved" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ to/from dict
def sample() -> Model:
    return build({"name": "m", "tags": ["a"], "dockerfile": "../../docker/x", "scripts": "run.sh",
                  "n_gpus": "2", "timeout": 60, "multiple_results": "p.csv", "skip_gpu_arch": ["gfx908"],
                  "custom_key": {"nested": [1, 2]}},
                 dir="d", source="dynamic", relocate=True)


def test_to_dict_has_every_field_and_source_and_is_json():
    m = sample()
    m.params = {"batch_size": "8"}
    d = m.to_dict()
    for name in MODEL_FIELDS:
        if name != "extra":
            assert name in d
    assert "extra" not in d
    assert d["source"] == "dynamic" and d["dir"] == "d" and d["params"] == {"batch_size": "8"}
    assert d["custom_key"] == {"nested": [1, 2]}
    assert d["name"] == "d/m" and d["dockerfile"] == "docker/x" and d["scripts"] == "scripts/d/run.sh"
    assert json.loads(json.dumps(d)) == d


def test_from_dict_round_trips():
    m = sample()
    m.params = {"batch_size": "8"}
    again = Model.from_dict(m.to_dict())
    assert again == m
    assert Model.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert again.to_dict() == m.to_dict()


def test_from_dict_round_trips_defaults_and_root():
    m = build({"name": "plain"})
    assert Model.from_dict(m.to_dict()) == m


def test_to_dict_copies_lists():
    m = sample()
    d = m.to_dict()
    d["tags"].append("x")
    assert m.tags == ["a"]


@pytest.mark.parametrize("bad", [{"source": "elsewhere"}, {"params": {"a": 1}}, {"dir": 3}, {"n_gpus": "x"}])
def test_from_dict_rejects_bad_records(bad):
    d = {**sample().to_dict(), **bad}
    with pytest.raises(InvalidInputError):
        Model.from_dict(d, where="build_manifest.json")


def test_from_dict_rejects_non_mapping():
    with pytest.raises(InvalidInputError):
        Model.from_dict(["x"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ CustomModel
def test_custom_model_both_import_paths_are_the_same_class():
    from madengine.tools.discover_models import CustomModel as A
    from madengine.utils.discover_models import CustomModel as B

    assert A is B


def test_custom_model_kwargs_to_dict_and_defaults():
    from madengine.tools.discover_models import CustomModel

    m = CustomModel(name="m", tags=["a"], n_gpus="-1", my_extra=3)
    assert m.name == "m" and m.n_gpus == "-1" and m.my_extra == 3
    assert m.to_dict() == {"name": "m", "tags": ["a"], "n_gpus": "-1", "my_extra": 3}
    assert m.args == "" and m.dockerfile == ""  # readable defaults, not reported by to_dict
    assert m.update_model() is None


def test_custom_model_positional_upstream_order():
    from madengine.tools.discover_models import CustomModel

    m = CustomModel("m", "docker/x", None, "run.sh")
    assert (m.name, m.dockerfile, m.scripts) == ("m", "docker/x", "run.sh")
    with pytest.raises(TypeError):
        CustomModel("m", name="again")


def test_custom_model_subclass_class_attributes_and_update():
    from madengine.tools.discover_models import CustomModel

    class Mine(CustomModel):
        dockerfile = "docker/mine"
        helper_constant = "not a field"

        def update_model(self):
            self.args += " --late"

    m = Mine(name="m")
    m.update_model()
    d = m.to_dict()
    assert d == {"dockerfile": "docker/mine", "name": "m", "args": " --late"}
    assert "helper_constant" not in d


def test_custom_model_private_attributes_not_reported():
    from madengine.tools.discover_models import CustomModel

    m = CustomModel(name="m")
    m._cache = object()
    assert m.to_dict() == {"name": "m"}


def test_custom_model_import_is_cheap():
    code = ("import sys; import madengine.tools.discover_models, madengine.utils.discover_models; "
            "heavy = [m for m in ('fastjsonschema', 'madengine.discover', 'madengine.model', 'json', "
            "'inspect', 'rich', 'madengine.cli') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == ""


def test_core_never_imports_rich_or_cli():
    code = ("import sys; import madengine.discover, madengine.tags, madengine.model; "
            "print(','.join(m for m in sys.modules "
            "if m == 'rich' or m.startswith(('rich.', 'madengine.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == ""


def test_model_from_raw_sets_every_field_in_order_like_the_constructor():
    """model_from_raw fills the instance directly (no __init__): it must set exactly the dataclass fields."""
    import dataclasses

    m = build({"name": "m", "tags": ["a"], "n_gpus": "2", "timeout": 60, "skip_gpu_arch": ["gfx908"],
               "distributed": {"nnodes": 2}}, source="dir", dir="d", relocate=True)
    assert list(vars(m)) == list(MODEL_FIELDS)
    expected = Model(name="d/m", tags=["a"], n_gpus=2, timeout=60, skip_gpu_arch=["gfx908"], source="dir", dir="d",
                     extra={"distributed": {"nnodes": 2}})
    assert m == expected
    assert dataclasses.replace(m, args="--x").args == "--x"
    assert dataclasses.asdict(m) == dataclasses.asdict(expected)


def test_model_lists_are_not_shared_with_the_raw_object():
    raw = {"name": "m", "tags": ["a"], "skip_gpu_arch": ["gfx908"]}
    m = build(raw)
    m.tags.append("b")
    m.skip_gpu_arch.clear()
    assert raw == {"name": "m", "tags": ["a"], "skip_gpu_arch": ["gfx908"]}
