# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import json
import shlex

import pytest
from ansible_collections.mad.engine.plugins.module_utils._data import DataError, DataPlan, plan_data


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "datasets" / "tiny"
    path.mkdir(parents=True)
    return str(path)


def test_local_is_bound_read_only(dataset):
    plan = plan_data("tiny", {"tiny": {"local": dataset, "size": "1M"}}, "/mad", None)
    assert plan.provider == "local"
    assert plan.binds == [f"{dataset}:/data/tiny:ro"]
    assert plan.env == {"MAD_DATANAME": "tiny", "MAD_DATAHOME": "/data/tiny"}
    assert plan.commands == []
    assert plan.host_path == dataset
    assert plan.row_data() == {
        "dataname": "tiny",
        "data_provider_type": "local",
        "data_size": "1M",
        "data_download_duration": "",
    }


@pytest.mark.parametrize(
    "entry",
    [
        lambda p: {"local": p, "readwrite": True},
        lambda p: {"local": {"path": p, "readwrite": "true"}},
    ],
)
def test_local_readwrite(dataset, entry):
    plan = plan_data("tiny", {"tiny": entry(dataset)}, "/mad", None)
    assert plan.binds == [f"{dataset}:/data/tiny:rw"]
    assert plan.readwrite is True


def test_local_relative_path_is_under_mad_dir(tmp_path, dataset):
    plan = plan_data("tiny", {"tiny": {"local": {"path": "datasets/tiny"}}}, str(tmp_path), None)
    assert plan.host_path == dataset


def test_local_missing_path_is_a_data_error(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(DataError, match=f"^data source tiny not found: {missing}$") as info:
        plan_data("tiny", {"tiny": {"local": missing}}, "/mad", None)
    assert isinstance(info.value, ValueError)


def test_local_ignores_mirror(dataset, tmp_path):
    plan = plan_data("tiny", {"tiny": {"local": dataset}}, "/mad", str(tmp_path / "mirror"))
    assert plan.binds == [f"{dataset}:/data/tiny:ro"]
    assert plan.mirrored is False


def test_unknown_dataname():
    with pytest.raises(
        DataError, match="data source huge is not defined in the data config \\(known: tiny\\)"
    ):
        plan_data("huge", {"tiny": {"local": "/x"}}, "/mad", None)


def test_entry_without_provider():
    with pytest.raises(DataError, match="names no provider"):
        plan_data("tiny", {"tiny": {"size": "1"}}, "/mad", None)


def test_aws_syncs_into_the_container():
    plan = plan_data(
        "imagenet",
        {"imagenet": {"aws": {"path": "s3://bucket/imagenet", "region": "us-east-2"}}},
        "/mad",
        None,
    )
    assert plan.provider == "aws"
    assert plan.binds == []
    assert plan.commands == [
        "mkdir -p /data/imagenet",
        "aws --region us-east-2 s3 sync s3://bucket/imagenet /data/imagenet",
    ]
    assert plan.env["MAD_DATAHOME"] == "/data/imagenet"


def test_force_mirror_local_binds_the_mirror_rw(tmp_path):
    mirror = str(tmp_path / "mirror")
    plan = plan_data("imagenet", {"imagenet": {"aws": {"path": "s3://bucket/imagenet"}}}, "/mad", mirror)
    assert plan.binds == [f"{mirror}/imagenet:/data/imagenet:rw"]
    assert plan.host_path == f"{mirror}/imagenet"
    assert plan.host_dirs == [f"{mirror}/imagenet"]
    assert plan.mirrored and plan.readwrite
    assert plan.commands[-1] == "aws s3 sync s3://bucket/imagenet /data/imagenet"


def test_custom_script_runs_in_datahome_with_quoting():
    config = {
        "weird": {
            "custom": {"path": "scripts/common/data/get it.sh", "args": "--x '; rm -rf /'"},
            "home": "/data/my data",
        }
    }
    plan = plan_data("weird", config, "/mad", None)
    assert plan.provider == "custom"
    assert plan.commands == [
        "mkdir -p '/data/my data'",
        "( cd '/data/my data' && bash '/myworkspace/scripts/common/data/get it.sh' '/data/my data' --x "
        "'; rm -rf /' )",
    ]
    assert shlex.split(plan.commands[1])[-3:] == ["--x", "; rm -rf /", ")"]


def test_custom_wins_over_local_like_upstream(dataset):
    plan = plan_data("tiny", {"tiny": {"local": dataset, "custom": "scripts/get.sh"}}, "/mad", None)
    assert plan.provider == "custom"


def test_missing_local_falls_through_to_the_next_provider(tmp_path):
    config = {"tiny": {"local": str(tmp_path / "nope"), "aws": "s3://b/tiny"}}
    assert plan_data("tiny", config, "/mad", None).provider == "aws"


def test_minio_with_and_without_endpoint():
    plan = plan_data(
        "m", {"m": {"minio": {"path": "bucket/m", "endpoint": "http://127.0.0.1:9000"}}}, "/mad", None
    )
    assert plan.commands[-1] == "aws --endpoint-url http://127.0.0.1:9000 s3 sync s3://bucket/m /data/m"
    plan = plan_data("m", {"m": {"minio": {"path": "s3://bucket/m"}}}, "/mad", None)
    assert plan.commands[-1] == 'aws --endpoint-url "$MINIO_ENDPOINT" s3 sync s3://bucket/m /data/m'


def test_nas_from_a_host_path_is_copied(dataset):
    plan = plan_data("tiny", {"tiny": {"nas": {"path": dataset}}}, "/mad", None)
    assert plan.binds == [f"{dataset}:/mnt/madengine_nas/tiny:ro"]
    assert plan.commands == ["mkdir -p /data/tiny", "cp -a /mnt/madengine_nas/tiny/. /data/tiny/"]


def test_nas_over_ssh_uses_rsync():
    plan = plan_data(
        "tiny",
        {"tiny": {"nas": {"path": "/export/tiny", "host": "nas1", "user": "mad", "port": 2222}}},
        "/mad",
        None,
    )
    assert plan.commands[-1] == (
        "rsync -a -e 'ssh -p 2222 -o BatchMode=yes' mad@nas1:/export/tiny/ /data/tiny/"
    )


def test_nas_missing_host_path(tmp_path):
    with pytest.raises(DataError, match="data source tiny not found"):
        plan_data("tiny", {"tiny": {"nas": {"path": str(tmp_path / "gone")}}}, "/mad", None)


def test_plan_is_json_and_round_trips(dataset):
    plan = plan_data("tiny", {"tiny": {"local": dataset}}, "/mad", None)
    data = json.loads(json.dumps(plan.to_dict()))
    assert DataPlan.from_dict(data) == plan


def test_bind_paths_with_colons_are_rejected(tmp_path):
    odd = tmp_path / "a:b"
    odd.mkdir()
    with pytest.raises(DataError, match="contains ':'"):
        plan_data("tiny", {"tiny": {"local": str(odd)}}, "/mad", None)


def test_injected_exists_keeps_planning_pure():
    plan = plan_data("tiny", {"tiny": {"local": "/nowhere/tiny"}}, "/mad", None, exists=lambda p: True)
    assert plan.binds == ["/nowhere/tiny:/data/tiny:ro"]
