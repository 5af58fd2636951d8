"""Discovery against the real MAD hub's conventions (issue 14 items 4, 7, 9, 10; issue 16 item 12).

Generators that misbehave (os._exit, writes to fd 1, endless loops) run in the worker process; nested
card folders; known ROCm card keys. Trees are written in tmp_path; no docker needed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from madengine.discover import discover_models
from madengine.errors import ExitCode, InvalidInputError

REPO = Path(__file__).resolve().parents[2]
REALMAD = Path("/work/shared/realmad")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    from madengine.tools.discover_models import CustomModel

    def list_models():
        return [CustomModel(name="ok", tags=["good"], dockerfile="../../docker/x", scripts="run.sh")]
"""


def tree(tmp_path: Path, generators: dict[str, str]) -> Path:
    root = tmp_path / "MAD"
    write(root / "models.json", json.dumps([{"name": "rootcard", "tags": ["r"]}]))
    write(root / "scripts" / "good" / "get_models_json.py", GOOD)
    for name, body in generators.items():
        write(root / "scripts" / name / "get_models_json.py", body)
    return root


def cli(root: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "collections")]), **(env or {}))
    return subprocess.run([sys.executable, "-c", "from madengine.cli.app import main; main()", "discover",
                           "--json", "--mad-dir", str(root), *args],
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def test_os_exit_in_a_generator_names_the_file(tmp_path):
    root = tree(tmp_path, {"quitter": "import os\nos._exit(0)\n"})
    with pytest.raises(InvalidInputError) as info:
        discover_models(root, ["all"])
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert info.value.message.startswith("scripts/quitter/get_models_json.py: ended the discovery process")
    # Tags that do not need it still work; a simple tag matched elsewhere skips it with a warning.
    assert [m.name for m in discover_models(root, ["good/all", "rootcard"])] == ["good/ok", "rootcard"]
    assert [m.name for m in discover_models(root, ["good"])] == ["good/ok"]
    with pytest.raises(InvalidInputError, match="quitter"):
        discover_models(root, ["quitter/all"])


def test_generator_writing_to_fd1_keeps_json_clean(tmp_path):
    body = """
        import os, sys
        os.write(1, b"RAW FD1 NOISE\\n")
        print("print noise")

        def list_models():
            sys.stdout.write("more noise\\n")
            os.write(1, b"[not json\\n")
            return [{"name": "loud", "tags": ["t"]}]
    """
    root = tree(tmp_path, {"noisy": body})
    done = cli(root, "--tags", "noisy/all")
    assert done.returncode == 0, done.stderr
    assert [m["name"] for m in json.loads(done.stdout)] == ["noisy/loud"]
    assert "NOISE" not in done.stdout and "RAW FD1 NOISE" in done.stderr


def test_hung_generator_exits_4_naming_the_file_after_the_timeout(tmp_path):
    root = tree(tmp_path, {"hang": "import time\nwhile True:\n    time.sleep(0.05)\n"})
    start = time.monotonic()
    done = cli(root, "--tags", "all", env={"MADENGINE_GENERATOR_TIMEOUT": "2"})
    took = time.monotonic() - start
    assert done.returncode == 4
    flat = " ".join(done.stderr.split())
    assert "scripts/hang/get_models_json.py" in flat and "did not finish within 2 s" in flat
    assert done.stdout == ""
    assert 2 <= took < 20
    # The hung generator is not needed by this tag: no wait at all.
    start = time.monotonic()
    done = cli(root, "--tags", "good/all", env={"MADENGINE_GENERATOR_TIMEOUT": "2"})
    assert done.returncode == 0 and time.monotonic() - start < 10
    assert [m["name"] for m in json.loads(done.stdout)] == ["good/ok"]


def test_hung_list_models_with_other_generators_after_it(tmp_path, monkeypatch, caplog):
    """The worker is replaced after a hang; the generators queued behind the hung one still answer."""
    hang = "import time\n\ndef list_models():\n    time.sleep(3600)\n"
    root = tree(tmp_path, {"a_hang": hang, "z_last": GOOD.replace('"ok"', '"last"')})
    monkeypatch.setenv("MADENGINE_GENERATOR_TIMEOUT", "1")
    with caplog.at_level(logging.WARNING, logger="madengine"):
        models = discover_models(root, ["good"])  # a simple tag: the hung generator is skipped
    assert [m.name for m in models] == ["good/ok", "z_last/last"]
    assert any("a_hang/get_models_json.py: did not finish within 1 s" in r.getMessage() for r in caplog.records)


def test_nested_card_folders_and_their_tags(tmp_path):
    root = tmp_path / "MAD"
    card = {"name": "inf", "tags": ["private"], "dockerfile": "../../../docker/d", "scripts": "run.sh"}
    write(root / "scripts" / "MAD-private" / "inference" / "models.json", json.dumps([card]))
    write(root / "scripts" / "MAD-private" / "train" / "get_models_json.py", GOOD.replace('"good"', '"private"'))
    write(root / "scripts" / "MAD-private" / "inference" / "sub" / "run.sh", "echo\n")  # not a card dir
    write(root / "scripts" / "top" / "models.json", json.dumps([{"name": "t", "tags": ["private"]}]))
    models = discover_models(root, ["private"])
    assert [m.name for m in models] == ["MAD-private/inference/inf", "MAD-private/train/ok", "top/t"]
    inf = models[0]
    assert (inf.dir, inf.short_name, inf.dockerfile, inf.scripts) == (
        "MAD-private/inference", "inf", "docker/d", "scripts/MAD-private/inference/run.sh")
    for tag in ("MAD-private/inference/inf", "MAD-private/inference:inf", "MAD-private/inference/all", "inf"):
        assert [m.name for m in discover_models(root, [tag])] == ["MAD-private/inference/inf"], tag
    (m,) = discover_models(root, ["MAD-private/inference:inf:bs=2"])
    assert m.args == " --bs 2"


def test_rocm_card_keys_are_known_and_unknown_keys_warn_once(tmp_path, caplog):
    root = tmp_path / "MAD"
    cards = [{"name": f"c{i}", "tags": ["t"], "distributed": {"launcher": "torchrun", "nnodes": 2},
              "env_vars": {"MODEL_NAME": "x", "JSON": '{"a": [1, 2]}'}, "slurm": {"nodes": 2}, "nnodes": "2",
              "mystery": i} for i in range(5)]
    write(root / "scripts" / "a" / "models.json", json.dumps(cards))
    write(root / "scripts" / "b" / "models.json", json.dumps(cards))
    with caplog.at_level(logging.WARNING, logger="madengine"):
        models = discover_models(root, ["a/all", "b/all"])
    assert len(models) == 10
    assert models[0].extra["env_vars"] == {"MODEL_NAME": "x", "JSON": '{"a": [1, 2]}'}
    assert models[0].to_dict()["distributed"] == {"launcher": "torchrun", "nnodes": 2}
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if any(k in m for k in ("'distributed'", "'env_vars'", "'slurm'", "'nnodes'"))]
    assert len([m for m in messages if "'mystery'" in m]) == 1


def test_bad_env_vars_value_names_card_and_field(tmp_path):
    root = tmp_path / "MAD"
    write(root / "models.json", json.dumps([{"name": "m", "env_vars": ["A=1"]}]))
    with pytest.raises(InvalidInputError) as info:
        discover_models(root, None)
    assert "field 'env_vars'" in info.value.message and "'m'" in info.value.message


def test_generator_dockercontext_dot_is_the_mad_root(tmp_path):
    body = """
        from madengine.tools.discover_models import CustomModel

        def list_models():
            return [CustomModel(name="p", tags=["p"], dockerfile="../../docker/primus", scripts="run.sh",
                                dockercontext=".")]
    """
    root = tree(tmp_path, {"primus": body})
    (m,) = discover_models(root, ["p"])
    assert m.dockercontext == "." and m.dockerfile == "docker/primus"


@pytest.mark.skipif(not REALMAD.is_dir(), reason="the real MAD hub cards (/work/shared/realmad) are absent")
def test_real_hub_cards_discover_without_unknown_key_warnings(caplog):
    with caplog.at_level(logging.WARNING, logger="madengine"):
        models = discover_models(REALMAD, ["all"])
    assert len(models) == 108
    assert not [r for r in caplog.records if "unknown key" in r.getMessage()]
    (deepseek,) = discover_models(REALMAD, ["pyt_vllm_deepseek-r1"])
    assert deepseek.name == "vllm/pyt_vllm_deepseek-r1"
