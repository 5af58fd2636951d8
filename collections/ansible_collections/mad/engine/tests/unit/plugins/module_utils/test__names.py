"""File names per model (issue 16 item 12): different model names never share a log, run directory,
sysenv snapshot or rows file (`a/b` and `a_b`; every non-Latin name used to be `model`), while a card of
the hub keeps upstream's file names (`vllm/pyt_vllm_x` -> `vllm_pyt_vllm_x_<dockerfile>.run.live.log`)."""

from __future__ import annotations

from ansible_collections.mad.engine.plugins.module_utils._execute import file_stem, file_stems, log_path
from ansible_collections.mad.engine.plugins.module_utils._request import rows_path

NAMES = ["a/b", "a_b", "a b", "модель", "模型", "モデル", "ü", "é", "dummy", "pyt_bert-large.v2", "x/y_z", "x_y/z"]


def test_different_names_of_one_run_get_different_files() -> None:
    stems = file_stems(NAMES)
    assert len({log_path("/out", name, "docker/x.Dockerfile", stems[name]) for name in NAMES}) == len(NAMES)
    assert len({rows_path("/out", name, stems[name]) for name in NAMES}) == len(NAMES)
    assert len(set(stems.values())) == len(NAMES)
    assert stems["a_b"] == "a_b" and stems["a/b"].startswith("a_b-")  # the root card keeps its name


def test_hub_cards_keep_their_upstream_file_names() -> None:
    assert log_path("/out", "dummy", "docker/dummy.ubuntu.Dockerfile") == "/out/dummy_dummy.ubuntu.run.live.log"
    assert log_path("/out", "vllm/pyt_vllm_x", "docker/vllm.Dockerfile") == "/out/vllm_pyt_vllm_x_vllm.run.live.log"
    assert file_stems(["vllm/pyt_vllm_x", "dummy"]) == {"vllm/pyt_vllm_x": "vllm_pyt_vllm_x", "dummy": "dummy"}
    assert file_stem("pyt_bert-large.v2") == "pyt_bert-large.v2"
    assert file_stem("модель").startswith("model-") and file_stem("модель") != file_stem("模型")
    assert file_stem("a/b", ["a_b"]) == file_stem("a/b", ["a_b", "c"])  # stable across runs and hosts
