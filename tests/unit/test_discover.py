"""discover_models / resolve_mad_dir on MAD trees built in tmp_path, and on examples/MAD."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from madengine.discover import discover_models, resolve_mad_dir
from madengine.errors import ExitCode, InvalidInputError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "MAD"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def make_mad(root: Path, models: list | None = None, dirs: dict | None = None) -> Path:
    """A MAD tree: root models.json, and per dir either a list (models.json) or a str (get_models_json.py)."""
    root.mkdir(parents=True, exist_ok=True)
    if models is not None:
        (root / "models.json").write_text(json.dumps(models))
    (root / "scripts").mkdir(exist_ok=True)
    for name, content in (dirs or {}).items():
        if isinstance(content, str):
            write(root / "scripts" / name / "get_models_json.py", content)
        else:
            write(root / "scripts" / name / "models.json", json.dumps(content))
    return root


def names(models) -> list[str]:
    return [m.name for m in models]


ROOT_MODELS = [
    {"name": "dummy", "tags": ["dummies", "dummy"], "dockerfile": "docker/dummy",
     "scripts": "scripts/dummy/run.sh", "n_gpus": "1", "args": ""},
    {"name": "other", "tags": "misc, extra", "dockerfile": "docker/dummy", "scripts": "scripts/other/run.sh"},
]
DIR_MODELS = [
    {"name": "dummy_2", "tags": ["dummies", "dummy2"], "dockerfile": "../../docker/dummy",
     "scripts": "run.sh"},
]
DYNAMIC = """
    from madengine.tools.discover_models import CustomModel

    def list_models(params):
        bs = params.get("batch_size", "256")
        return [CustomModel(name="dummy_3", tags=["dummies", "dummy3"], dockerfile="../../docker/dummy",
                            scripts="run.sh", args=f"--batch_size {bs}")]
"""


@pytest.fixture
def mad(tmp_path: Path) -> Path:
    return make_mad(tmp_path / "MAD", ROOT_MODELS, {"dummy2": DIR_MODELS, "dummy3": DYNAMIC})


# ------------------------------------------------------------------------------------------ sources
def test_every_source_in_discovery_order(mad):
    models = discover_models(mad, None)
    assert names(models) == ["dummy", "other", "dummy2/dummy_2", "dummy3/dummy_3"]
    assert [m.source for m in models] == ["root", "root", "dir", "dynamic"]
    assert [m.dir for m in models] == [None, None, "dummy2", "dummy3"]
    assert models[1].tags == ["misc", "extra"]


def test_empty_tag_list_is_everything(mad):
    assert names(discover_models(mad, [])) == names(discover_models(mad, ["all"]))


def test_dir_models_paths_resolved_against_the_dir(mad):
    (m,) = discover_models(mad, ["dummy2:dummy_2"])
    assert m.name == "dummy2/dummy_2"
    assert m.dockerfile == "docker/dummy"
    assert m.scripts == "scripts/dummy2/run.sh"


def test_dynamic_models_paths_resolved_against_the_dir(mad):
    (m,) = discover_models(mad, ["dummy3/dummy_3"])
    assert m.name == "dummy3/dummy_3"
    assert (m.dockerfile, m.scripts, m.args) == ("docker/dummy", "scripts/dummy3/run.sh", "--batch_size 256")


def test_root_paths_unchanged(mad):
    (m,) = discover_models(mad, ["dummy"])
    assert (m.dockerfile, m.scripts) == ("docker/dummy", "scripts/dummy/run.sh")


def test_dynamic_dicts_objects_and_dockercontext(tmp_path):
    script = """
        class Plain:
            def __init__(self):
                self.name = "obj"
                self.tags = ["t"]
                self.dockercontext = "ctx"
                self._private = 1

        def list_models():
            return [{"name": "as_dict", "tags": "t, u", "scripts": "sub/run.py"}, Plain()]
    """
    root = make_mad(tmp_path / "MAD", None, {"dyn": script})
    models = discover_models(root, ["t"])
    assert names(models) == ["dyn/as_dict", "dyn/obj"]
    assert models[0].tags == ["t", "u"] and models[0].scripts == "scripts/dyn/sub/run.py"
    assert models[1].dockercontext == "ctx"  # relative to the MAD root (ROCm), not to scripts/dyn
    assert "_private" not in models[1].extra


def test_tree_with_only_scripts_dir(tmp_path):
    root = make_mad(tmp_path / "MAD", None, {"d": DIR_MODELS})
    assert names(discover_models(root, None)) == ["d/dummy_2"]


def test_dirs_without_models_are_skipped(mad):
    write(mad / "scripts" / "common" / "tools.json", "{}")
    (mad / "scripts" / "__pycache__").mkdir()
    assert "common" not in {m.dir for m in discover_models(mad, None)}


# ------------------------------------------------------------------------------------------ tags
def test_simple_tag_matches_name_and_tags(mad):
    assert names(discover_models(mad, ["dummies"])) == ["dummy", "dummy2/dummy_2", "dummy3/dummy_3"]
    assert names(discover_models(mad, ["extra"])) == ["other"]


@pytest.mark.parametrize("tag", ["dummy2:dummy_2", "dummy2/dummy_2"])
def test_dir_model_tag(mad, tag):
    assert names(discover_models(mad, [tag])) == ["dummy2/dummy_2"]


@pytest.mark.parametrize("tag", ["dummy3:all", "dummy3/all"])
def test_dir_all(tmp_path, tag):
    script = DYNAMIC.replace('return [', 'return [CustomModel(name="first", tags=[]), ')
    root = make_mad(tmp_path / "MAD", ROOT_MODELS, {"dummy3": script})
    assert names(discover_models(root, [tag])) == ["dummy3/first", "dummy3/dummy_3"]


def test_params_reach_list_models_and_args(mad):
    (m,) = discover_models(mad, ["dummy3:dummy_3:batch_size=512:in=32"])
    assert m.params == {"batch_size": "512", "in": "32"}
    # The script saw the params (its own args), and the tag appended them too (as upstream does).
    assert m.args == "--batch_size 512 --batch_size 512 --in 32"


def test_params_and_bare_flag_on_simple_tag(mad):
    (m,) = discover_models(mad, ["dummy:batch_size=8:fast"])
    assert m.args == " --batch_size 8 --fast"
    assert m.params == {"batch_size": "8"}


def test_param_on_a_dir_name_tag_is_a_param(mad):
    # `dummy2` is a dir and also a tag of dummy_2: `dummy2:k=v` is the tag with a param.
    (m,) = discover_models(mad, ["dummy2:k=v"])
    assert m.name == "dummy2/dummy_2" and m.args == " --k v"


def test_comma_separated_tags(mad):
    assert names(discover_models(mad, ["dummy,dummy2:dummy_2"])) == ["dummy", "dummy2/dummy_2"]


def test_order_is_tag_order_then_discovery_order(tmp_path):
    root = make_mad(tmp_path / "MAD",
                    [{"name": "r1", "tags": ["b"]}, {"name": "r2", "tags": ["a", "b"]}],
                    {"zeta": [{"name": "z", "tags": ["a", "b"]}], "alpha": [{"name": "x", "tags": ["b"]}]})
    assert names(discover_models(root, ["a", "b"])) == ["r2", "zeta/z", "r1", "alpha/x"]
    assert names(discover_models(root, None)) == ["r1", "r2", "alpha/x", "zeta/z"]


def test_duplicate_selection_runs_once_with_warning(mad, caplog):
    with caplog.at_level(logging.WARNING, logger="madengine"):
        models = discover_models(mad, ["dummy", "dummies", "all"])
    assert names(models) == ["dummy", "dummy2/dummy_2", "dummy3/dummy_3", "other"]
    warnings = [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()]
    assert any("'dummy'" in w for w in warnings)
    # dummy twice (again by dummies, again by all), dummy_2 and dummy_3 once each (again by all).
    assert len(warnings) == 4
    assert sum("'dummy'" in w for w in warnings) == 2


def test_same_model_with_different_args_is_not_a_duplicate(mad, caplog):
    with caplog.at_level(logging.WARNING, logger="madengine"):
        models = discover_models(mad, ["dummy", "dummy:batch_size=2"])
    assert [m.args for m in models] == ["", " --batch_size 2"]
    assert not [r for r in caplog.records if "more than once" in r.getMessage()]


def test_unknown_tag_suggests_close_matches(mad):
    with pytest.raises(InvalidInputError) as info:
        discover_models(mad, ["dumy"])
    err = info.value
    assert err.exit_code == ExitCode.INVALID_INPUT
    assert "'dumy'" in err.message
    assert "did you mean" in err.hint and "'dummy'" in err.hint
    assert err.example


def test_short_name_selects_the_dir_card(mad, caplog):
    """Issue 14 item 7: a tag matching no card or tag selects the dir card whose short name it is."""
    with caplog.at_level(logging.WARNING, logger="madengine"):
        (m,) = discover_models(mad, ["dummy_2:bs=4"])
    assert m.name == "dummy2/dummy_2" and m.args.endswith("--bs 4")
    assert not [r for r in caplog.records if "short name" in r.getMessage()]


def test_short_name_in_several_dirs_selects_all_and_says_so(tmp_path, caplog):
    card = {"name": "same", "tags": ["x"], "dockerfile": "../../docker/d", "scripts": "run.sh"}
    root = make_mad(tmp_path / "MAD", [{"name": "rootcard", "tags": ["r"]}], {"a": [card], "b": [card]})
    with caplog.at_level(logging.WARNING, logger="madengine"):
        models = discover_models(root, ["same"])
    assert names(models) == ["a/same", "b/same"]
    (warning,) = [r.getMessage() for r in caplog.records if "short name" in r.getMessage()]
    assert "a/same" in warning and "b/same" in warning
    # A root card or tag of that name wins over short names.
    root2 = make_mad(tmp_path / "MAD2", [{"name": "same"}], {"a": [card]})
    assert names(discover_models(root2, ["same"])) == ["same"]


def test_unknown_tag_without_any_close_match(mad):
    with pytest.raises(InvalidInputError) as info:
        discover_models(mad, ["qqqqqqqq"])
    assert "qqqqqqqq" in info.value.message
    assert "madengine discover" in info.value.hint


def test_unknown_dir_in_dir_name(mad):
    with pytest.raises(InvalidInputError) as info:
        discover_models(mad, ["dumm2/dummy_2"])
    assert "'dumm2'" in info.value.message
    assert "'dummy2/dummy_2'" in info.value.hint


def test_unknown_model_in_known_dir(mad):
    with pytest.raises(InvalidInputError) as info:
        discover_models(mad, ["dummy2:dummy_22"])
    assert "'dummy_22'" in info.value.message and "scripts/dummy2" in info.value.message
    assert "'dummy2/dummy_2'" in info.value.hint


def test_a_later_unknown_tag_fails_the_whole_selection(mad):
    with pytest.raises(InvalidInputError):
        discover_models(mad, ["dummy", "nope"])


# ------------------------------------------------------------------------------------------ dynamic scripts
CALL_LOG_SCRIPT = """
    import json, pathlib
    from madengine.utils.discover_models import CustomModel

    LOG = pathlib.Path(__file__).parent / "calls.log"

    class Lazy(CustomModel):
        def update_model(self):
            with LOG.open("a") as f:
                f.write("update " + self.name + "\\n")
            self.args = "--updated"
            self.name = "renamed_is_ignored"

    def list_models({signature}):
        with LOG.open("a") as f:
            f.write("list " + json.dumps({received}, sort_keys=True) + "\\n")
        return [Lazy(name="a", tags=["lazy"]), Lazy(name="b", tags=["lazy"]), CustomModel(name="c")]
"""


def calls(root: Path, dir_: str = "dyn") -> list[str]:
    path = root / "scripts" / dir_ / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize(("signature", "received"), [("params", "params"), ("**params", "params")])
def test_list_models_receives_tag_params(tmp_path, signature, received):
    script = CALL_LOG_SCRIPT.format(signature=signature, received=received)
    root = make_mad(tmp_path / "MAD", None, {"dyn": script})
    (m,) = discover_models(root, ["dyn:a:batch_size=512:in=32"])
    assert m.params == {"batch_size": "512", "in": "32"}
    assert calls(root)[0] == 'list {"batch_size": "512", "in": "32"}'


def test_zero_arg_list_models_gets_no_params(tmp_path):
    script = CALL_LOG_SCRIPT.format(signature="", received="'no params'")
    root = make_mad(tmp_path / "MAD", None, {"dyn": script})
    (m,) = discover_models(root, ["dyn:a:bs=1"])
    assert m.args == "--updated --bs 1"
    assert calls(root)[0] == 'list "no params"'


def test_no_tags_calls_list_models_with_empty_params(tmp_path):
    root = make_mad(tmp_path / "MAD", None, {"dyn": CALL_LOG_SCRIPT.format(signature="p", received="p")})
    discover_models(root, None)
    assert calls(root)[0] == "list {}"


def test_list_models_called_once_per_distinct_params(tmp_path):
    root = make_mad(tmp_path / "MAD", None, {"dyn": CALL_LOG_SCRIPT.format(signature="p", received="p")})
    models = discover_models(root, ["dyn:a:bs=1", "dyn:b:bs=1", "lazy:bs=1", "dyn:a:bs=2", "dyn:c", "lazy"])
    lists = [c for c in calls(root) if c.startswith("list")]
    assert lists == ['list {"bs": "1"}', 'list {"bs": "2"}', "list {}"]
    assert [(m.name, m.args) for m in models] == [
        ("dyn/a", "--updated --bs 1"), ("dyn/b", "--updated --bs 1"), ("dyn/a", "--updated --bs 2"),
        ("dyn/c", ""), ("dyn/a", "--updated"), ("dyn/b", "--updated")]


def test_update_model_only_for_selected_models_and_fields_reread(tmp_path):
    root = make_mad(tmp_path / "MAD", None, {"dyn": CALL_LOG_SCRIPT.format(signature="p", received="p")})
    (m,) = discover_models(root, ["dyn:b"])
    assert [c for c in calls(root) if c.startswith("update")] == ["update b"]
    assert m.args == "--updated"
    assert m.name == "dyn/b"  # renaming in update_model() has no effect
    assert m.tags == ["lazy"]


def test_update_model_called_once_when_selected_twice(tmp_path, caplog):
    root = make_mad(tmp_path / "MAD", None, {"dyn": CALL_LOG_SCRIPT.format(signature="p", received="p")})
    with caplog.at_level(logging.WARNING, logger="madengine"):
        discover_models(root, ["dyn:a", "lazy"])
    assert [c for c in calls(root) if c.startswith("update")] == ["update a", "update b"]


def test_both_sources_in_one_dir_is_an_error(mad):
    write(mad / "scripts" / "dummy2" / "get_models_json.py", "def list_models():\n    return []\n")
    with pytest.raises(InvalidInputError) as info:
        discover_models(mad, None)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert "scripts/dummy2" in info.value.message
    assert "models.json" in info.value.message and "get_models_json.py" in info.value.message


@pytest.mark.parametrize("body", [
    "x = 1 / 0\ndef list_models():\n    return []\n",
    "def helper():\n    return 1 / 0\n\ndef list_models():\n    return [helper()]\n",
])
def test_crashing_script(tmp_path, body):
    root = make_mad(tmp_path / "MAD", None, {"bad": body})
    with pytest.raises(InvalidInputError) as info:
        discover_models(root, None)
    err = info.value
    assert err.exit_code == ExitCode.INVALID_INPUT
    assert "scripts/bad/get_models_json.py" in err.message
    assert err.message.endswith("ZeroDivisionError: division by zero")
    assert err.detail and err.detail.startswith("Traceback")
    assert "get_models_json.py" in err.detail and "1 / 0" in err.detail
    assert "discover.py" not in err.detail  # the traceback starts in the script


def test_crashing_update_model(tmp_path):
    script = """
        from madengine.tools.discover_models import CustomModel

        class M(CustomModel):
            def update_model(self):
                raise RuntimeError("cannot reach the model zoo")

        def list_models():
            return [M(name="m")]
    """
    root = make_mad(tmp_path / "MAD", None, {"bad": script})
    with pytest.raises(InvalidInputError) as info:
        discover_models(root, None)
    assert info.value.message == "scripts/bad/get_models_json.py: RuntimeError: cannot reach the model zoo"
    assert "update_model" in info.value.detail


def test_script_syntax_error_and_sys_exit(tmp_path):
    root = make_mad(tmp_path / "MAD", None, {"bad": "def list_models(:\n    pass\n"})
    with pytest.raises(InvalidInputError) as info:
        discover_models(root, None)
    assert "SyntaxError" in info.value.message and "line 1" in info.value.message
    root2 = make_mad(tmp_path / "MAD2", None, {"bad": "import sys\nsys.exit(3)\n"})
    with pytest.raises(InvalidInputError) as info:
        discover_models(root2, None)
    assert "SystemExit: 3" in info.value.message


def test_script_without_list_models_or_bad_return(tmp_path):
    root = make_mad(tmp_path / "MAD", None, {"bad": "X = 1\n"})
    with pytest.raises(InvalidInputError, match="list_models"):
        discover_models(root, None)
    root2 = make_mad(tmp_path / "MAD2", None, {"bad": "def list_models():\n    return None\n"})
    with pytest.raises(InvalidInputError, match="returned NoneType"):
        discover_models(root2, None)


def test_dynamic_model_schema_error_names_the_script(tmp_path):
    root = make_mad(tmp_path / "MAD", None,
                    {"bad": "def list_models():\n    return [{'name': 'm', 'n_gpus': 'many'}]\n"})
    with pytest.raises(InvalidInputError) as info:
        discover_models(root, None)
    assert "scripts/bad/get_models_json.py" in info.value.message
    assert "'m'" in info.value.message and "field 'n_gpus'" in info.value.message


def test_scripts_import_siblings_and_leave_no_trace(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as without PYTHONDONTWRITEBYTECODE
    dirs = {}
    for name in ("one", "two"):
        dirs[name] = ("from helpers import NAME\n\n"
                      "def list_models():\n    return [{'name': NAME}]\n")
    root = make_mad(tmp_path / "MAD", None, dirs)
    write(root / "scripts" / "one" / "helpers.py", "NAME = 'from_one'\n")
    write(root / "scripts" / "two" / "helpers.py", "NAME = 'from_two'\n")
    path_before, modules_before = list(sys.path), set(sys.modules)
    assert names(discover_models(root, None)) == ["one/from_one", "two/from_two"]
    assert sys.path == path_before
    assert sys.dont_write_bytecode is False
    assert {m for m in set(sys.modules) - modules_before if "helpers" in m or "_madengine_mad_" in m} == set()
    assert not list(root.rglob("__pycache__"))  # the MAD tree is read, never written


# ------------------------------------------------------------------------------------------ file errors
def test_malformed_root_json_reports_line_and_column(tmp_path):
    root = tmp_path / "MAD"
    write(root / "models.json", '[\n  {"name": "a",}\n]\n')
    with pytest.raises(InvalidInputError) as info:
        discover_models(root, None)
    err = info.value
    assert err.exit_code == ExitCode.INVALID_INPUT
    assert err.message.startswith("models.json: malformed JSON at line 2, column 16")
    assert err.hint


def test_malformed_dir_json_names_the_file(mad):
    write(mad / "scripts" / "dummy2" / "models.json", "[{\"name\": \"x\"}\n")
    with pytest.raises(InvalidInputError) as info:
        discover_models(mad, None)
    assert "scripts/dummy2/models.json" in info.value.message
    assert "line 2, column 1" in info.value.message


def test_models_json_must_be_a_list(tmp_path):
    root = tmp_path / "MAD"
    write(root / "models.json", '{"name": "a"}')
    with pytest.raises(InvalidInputError, match="expected a JSON list"):
        discover_models(root, None)


def test_schema_error_in_dir_models_json(mad):
    write(mad / "scripts" / "dummy2" / "models.json",
          json.dumps([{"name": "ok"}, {"name": "bad", "tags": [1]}]))
    with pytest.raises(InvalidInputError) as info:
        discover_models(mad, ["all"])
    msg = info.value.message
    assert "scripts/dummy2/models.json" in msg and "'bad'" in msg and "#1" in msg and "field 'tags'" in msg
    assert info.value.hint


def test_unknown_keys_warned_once_per_key_and_passed_through(tmp_path, caplog):
    root = make_mad(tmp_path / "MAD",
                    [{"name": "a", "gpu": "x"}, {"name": "b", "gpu": "y"}],
                    {"d": [{"name": "c", "gpu": "z"}]})
    with caplog.at_level(logging.WARNING, logger="madengine"):
        models = discover_models(root, None)
    assert [m.extra for m in models] == [{"gpu": "x"}, {"gpu": "y"}, {"gpu": "z"}]
    assert models[0].to_dict()["gpu"] == "x"
    warnings = [r.getMessage() for r in caplog.records if "'gpu'" in r.getMessage()]
    assert len(warnings) == 1  # once per key, not once per card or per file (issue 14 item 10)
    assert warnings[0].startswith("models.json")


def test_duplicate_model_names_are_warned(tmp_path, caplog):
    root = make_mad(tmp_path / "MAD", [{"name": "a"}, {"name": "a", "args": "--x"}])
    with caplog.at_level(logging.WARNING, logger="madengine"):
        models = discover_models(root, None)
    assert len(models) == 2
    assert any("defined twice" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ resolve_mad_dir
def test_resolve_explicit_wins(mad, tmp_path, monkeypatch):
    other = make_mad(tmp_path / "other", [{"name": "x"}])
    monkeypatch.setenv("MAD_DIR", str(other))
    monkeypatch.setenv("MODEL_DIR", str(other))
    assert resolve_mad_dir(mad) == mad.resolve()
    assert resolve_mad_dir(str(mad)) == mad.resolve()


def test_resolve_mad_dir_env_over_model_dir(mad, tmp_path, monkeypatch):
    other = make_mad(tmp_path / "other", [{"name": "x"}])
    monkeypatch.setenv("MAD_DIR", str(mad))
    monkeypatch.setenv("MODEL_DIR", str(other))
    assert resolve_mad_dir(None) == mad.resolve()
    monkeypatch.delenv("MAD_DIR")
    assert resolve_mad_dir(None) == other.resolve()


def test_resolve_falls_back_to_cwd(mad, monkeypatch):
    monkeypatch.delenv("MAD_DIR", raising=False)
    monkeypatch.delenv("MODEL_DIR", raising=False)
    monkeypatch.chdir(mad)
    assert resolve_mad_dir(None) == mad.resolve()


def test_resolve_rejects_missing_and_non_mad_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("MAD_DIR", raising=False)
    monkeypatch.delenv("MODEL_DIR", raising=False)
    with pytest.raises(InvalidInputError) as info:
        resolve_mad_dir(tmp_path / "nope")
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert "does not exist" in info.value.message and "--mad-dir" in info.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError) as info:
        resolve_mad_dir(tmp_path / "empty")
    assert "not a MAD package" in info.value.message and "--mad-dir" in info.value.hint
    monkeypatch.setenv("MAD_DIR", str(tmp_path / "empty"))
    with pytest.raises(InvalidInputError, match="MAD_DIR"):
        resolve_mad_dir(None)
    with pytest.raises(InvalidInputError):
        discover_models(tmp_path / "empty", None)


# ------------------------------------------------------------------------------------------ examples/MAD
def test_example_package_all_three_sources():
    models = discover_models(resolve_mad_dir(EXAMPLE), None)
    by_name = {m.name: m for m in models}
    assert {"dummy", "dummy2/dummy_2", "dummy3/dummy_3"} <= set(by_name)
    assert {m.source for m in models} == {"root", "dir", "dynamic"}
    assert by_name["dummy"].tags == ["dummies", "dummy"] and by_name["dummy"].n_gpus == 1
    assert by_name["dummy3/dummy_3"].args == "--batch_size 256"
    assert by_name["dummy_multi"].multiple_results
    assert by_name["dummy_fail"].tags == ["failing"]
    for m in models:
        assert list(EXAMPLE.glob(m.dockerfile + ".*Dockerfile")), m.name
        assert (EXAMPLE / m.scripts).is_file(), m.name
    assert not list(EXAMPLE.rglob("__pycache__"))


def test_example_package_tags():
    assert names(discover_models(EXAMPLE, ["dummies"])) == ["dummy", "dummy2/dummy_2", "dummy3/dummy_3"]
    (m,) = discover_models(EXAMPLE, ["dummy3:dummy_3:batch_size=512"])
    assert m.params == {"batch_size": "512"} and m.args.startswith("--batch_size 512")
    assert names(discover_models(EXAMPLE, ["failing"])) == ["dummy_fail"]


def test_example_package_side_files():
    data = json.loads((EXAMPLE / "data.json").read_text())
    for entry in data.values():
        assert (EXAMPLE / entry["local"]).is_dir()
    used = {m.data for m in discover_models(EXAMPLE, None) if m.data}
    assert used <= set(data)
    tools = json.loads((EXAMPLE / "scripts" / "common" / "tools.json").read_text())["tools"]
    assert "time_wrapper" in tools
    for tool in tools.values():
        for script in tool.get("pre_scripts", []) + tool.get("post_scripts", []):
            assert (EXAMPLE / script["path"]).is_file()
    creds = json.loads((EXAMPLE / "credential.json").read_text())
    assert creds["example"]["username"] == "demo"
    first = (EXAMPLE / "docker" / "dummy.Dockerfile").read_text().splitlines()
    assert not first[0].startswith("# CONTEXT")
    assert any(line.startswith("FROM $BASE_DOCKER") for line in first)


def test_script_output_goes_to_stderr_not_stdout(tmp_path, capfd):
    script = ("print('hello from import')\n\n"
              "def list_models():\n    print('listing')\n    return [{'name': 'm'}]\n")
    root = make_mad(tmp_path / "MAD", None, {"noisy": script})
    assert names(discover_models(root, None)) == ["noisy/m"]
    out, err = capfd.readouterr()
    assert out == ""
    assert "hello from import" in err and "listing" in err


_PROBE = ("import os, sys\n\n"
          "def list_models(params):\n"
          "    fd = int(params.get('fd', '-1'))\n"
          "    return [{'name': 'probe', 'owner': 'forked' if 'madengine.discover' in sys.modules else 'exec',\n"
          "             'url': os.readlink(f'/proc/self/fd/{fd}') if os.path.exists(f'/proc/self/fd/{fd}') else '',\n"
          "             'args': repr(sys.stdin.read())}]\n")


def test_worker_is_a_fork_that_holds_none_of_this_process_files(tmp_path):
    """No interpreter start-up for the worker: it is a fork (it has madengine.discover loaded), yet it
    holds none of this process's open files (their descriptors are /dev/null there), reads an empty
    stdin, and writes nothing into the MAD tree."""
    root = make_mad(tmp_path / "MAD", None, {"probe": _PROBE})
    with open(tmp_path / "held.txt", "w") as held:
        (m,) = discover_models(root, [f"probe:fd={held.fileno()}"])
    assert (m.owner, m.url) == ("forked", "/dev/null")
    assert m.args.startswith("'' ")  # stdin read at once as empty (the worker's is /dev/null)
    assert not list(root.rglob("__pycache__"))


def test_forked_worker_looks_like_a_fresh_one_to_a_generator(tmp_path, monkeypatch, capfd):
    """What a fork would inherit and a fresh worker has not: the caller's argv, its own modules (a
    `helpers` that would shadow the generator's sibling), its log handlers, a log file on the
    descriptor the worker's answer pipe might get."""
    import logging

    script = ("import logging, sys\nfrom helpers import WHO\n\n"
              "def list_models():\n"
              "    logging.getLogger('gen').warning('generator says hello')\n"
              "    return [{'name': 'm', 'owner': WHO, 'args': ' '.join(sys.argv)}]\n")
    root = make_mad(tmp_path / "MAD", None, {"x": script})
    write(root / "scripts" / "x" / "helpers.py", "WHO = 'the sibling'\n")
    caller = tmp_path / "caller"
    write(caller / "helpers.py", "WHO = 'the caller'\n")
    monkeypatch.syspath_prepend(str(caller))
    import helpers  # noqa: F401 - the caller's own module of that name

    monkeypatch.setattr(sys, "argv", ["madengine", "discover", "--tags", "all"])
    handler = logging.FileHandler(tmp_path / "app.log")
    logging.getLogger().addHandler(handler)
    try:
        (m,) = discover_models(root, ["all"])
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        sys.modules.pop("helpers", None)
    assert (m.owner, m.args) == ("the sibling", "-c")
    assert "generator says hello" in capfd.readouterr().err
    assert "generator says hello" not in (tmp_path / "app.log").read_text()


def test_discovery_turns_the_collector_back_on_when_the_package_is_refused(tmp_path):
    import gc

    root = make_mad(tmp_path / "MAD", None, {"x": "def list_models():\n    return []\n"})
    write(root / "scripts" / "x" / "models.json", "[]")
    with pytest.raises(InvalidInputError, match="has both"):
        discover_models(root, ["all"])
    assert gc.isenabled()


def test_listing_and_updates_for_all_each_get_the_whole_timeout(tmp_path, monkeypatch):
    """`all` asks for the updates with the listing, as a request of its own: a generator whose listing
    and updates each fit the timeout is not refused for their sum."""
    script = ("import time\nfrom madengine.tools.discover_models import CustomModel\n\n"
              "class M(CustomModel):\n    def update_model(self):\n        time.sleep(0.35)\n\n"
              "def list_models():\n    time.sleep(0.7)\n"
              "    return [M(name='m1', tags=['t']), M(name='m2', tags=['t'])]\n")
    root = make_mad(tmp_path / "MAD", None, {"slow": script})
    monkeypatch.setenv("MADENGINE_GENERATOR_TIMEOUT", "1")
    assert [m.name for m in discover_models(root, ["all"])] == ["slow/m1", "slow/m2"]


def test_an_answer_larger_than_a_pipe_read_after_its_deadline_is_taken_whole(tmp_path, monkeypatch):
    """Two workers: while this process waits on one, the other's big answer (more than a pipe holds)
    is half written when its deadline has passed; it is read on, not called a hang."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    big = ("def list_models():\n"
           "    return [{'name': f'm{i}', 'url': 'x' * 200} for i in range(1500)]\n")
    slow = ("import time\nfrom madengine.tools.discover_models import CustomModel\n\n"
            "class M(CustomModel):\n    def update_model(self):\n        time.sleep(0.7)\n\n"
            "def list_models():\n    time.sleep(0.7)\n    return [M(name='m')]\n")
    root = make_mad(tmp_path / "MAD", None, {"a": big, "b": big, "c": slow})
    monkeypatch.setenv("MADENGINE_GENERATOR_TIMEOUT", "1")
    assert len(discover_models(root, ["c/m", "all"])) == 3001


def test_under_python_o_the_worker_is_a_fresh_interpreter_that_keeps_asserts(tmp_path):
    script = "def list_models():\n    assert False, 'the generator checks this'\n    return []\n"
    root = make_mad(tmp_path / "MAD", None, {"a": script})
    code = ("import sys\nfrom madengine.discover import discover_models\n"
            "try:\n    discover_models(sys.argv[1], ['all'])\nexcept Exception as exc:\n    print(exc)\n")
    for flags in (["-O"], []):  # -O first: its worker must not cache code without the assert
        out = subprocess.run([sys.executable, *flags, "-c", code, str(root)], capture_output=True, text=True,
                             timeout=60, check=False, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c")})
        assert "AssertionError: the generator checks this" in out.stdout, (flags, out.stdout, out.stderr)


_PID_PROBE = ("import os\nfrom madengine.tools.discover_models import CustomModel\n\n"
              "class M(CustomModel):\n"
              "    def update_model(self):\n        self.args = str(os.getpid())\n\n"
              "def list_models():\n    return [M(name='m', tags=['probe'], owner=str(os.getpid()))]\n")


@pytest.mark.parametrize("tags", [["all"], ["probe"]])
def test_generators_are_spread_over_workers_and_each_stays_in_its_own(tmp_path, monkeypatch, tags):
    """Two CPUs, three generators: two forked workers; a generator's update_model() runs in the worker
    that listed it (in the listing's request for `all`, in a request of its own for a tag)."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    root = make_mad(tmp_path / "MAD", None, {name: _PID_PROBE for name in ("a", "b", "c")})
    models = discover_models(root, tags)
    assert [m.name for m in models] == ["a/m", "b/m", "c/m"]
    listed = [m.owner for m in models]
    assert [m.args for m in models] == listed  # updated where listed
    assert listed[0] == listed[2] != listed[1] and str(os.getpid()) not in listed


def test_worker_is_a_fresh_interpreter_while_another_thread_runs(tmp_path):
    """A fork copies locks other threads may hold: with a second thread alive, discovery execs."""
    import threading

    root = make_mad(tmp_path / "MAD", None, {"probe": _PROBE})
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        (m,) = discover_models(root, ["probe"])
    finally:
        stop.set()
        other.join()
    assert m.owner == "exec" and m.args == "''"


def test_keyword_only_list_models_gets_the_params_it_names(tmp_path):
    script = ("def list_models(*, batch_size='1'):\n"
              "    return [{'name': 'm', 'args': '--bs ' + batch_size}]\n")
    root = make_mad(tmp_path / "MAD", None, {"kw": script})
    (m,) = discover_models(root, ["kw:m:batch_size=4:other=x"])
    assert m.args == "--bs 4 --batch_size 4 --other x"
