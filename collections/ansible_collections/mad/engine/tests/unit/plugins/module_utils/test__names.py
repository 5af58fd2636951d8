"""File names per model (issue 16 item 12): different model names never share a log, run directory,
sysenv snapshot or rows file (`a/b` and `a_b`; every non-Latin name used to be `model`)."""

from __future__ import annotations

from ansible_collections.mad.engine.plugins.module_utils._execute import file_stem, log_path
from ansible_collections.mad.engine.plugins.module_utils._request import rows_path

NAMES = ["a/b", "a_b", "a b", "модель", "模型", "モデル", "ü", "é", "dummy", "pyt_bert-large.v2"]


def test_different_names_get_different_files() -> None:
    assert len({log_path("/out", name, "docker/x.Dockerfile") for name in NAMES}) == len(NAMES)
    assert len({rows_path("/out", name) for name in NAMES}) == len(NAMES)
    assert len({file_stem(name) for name in NAMES}) == len(NAMES)


def test_safe_names_keep_their_upstream_file_names() -> None:
    assert log_path("/out", "dummy", "docker/dummy.ubuntu.Dockerfile") == "/out/dummy_dummy.ubuntu.run.live.log"
    assert file_stem("pyt_bert-large.v2") == "pyt_bert-large.v2"
    assert file_stem("a/b").startswith("a_b-") and file_stem("модель").startswith("model-")
    assert file_stem("a/b") == file_stem("a/b")  # stable across runs and hosts
