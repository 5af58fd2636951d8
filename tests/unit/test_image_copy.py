"""--image-transfer copy on the controller: which images, tarballs cached by image ID, clear errors.

A fake Docker SDK client stands in for the engine here; tests/cluster/test_run_inventory.py ships real
tarballs to the loopback nodes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from madengine.errors import ExitCode, InvalidInputError, RunError
from madengine.execute import image_copy
from madengine.execute.image_copy import images_for, save_images, tagged
from madengine.manifest import BuiltImage, Manifest
from madengine.model import Model


def manifest() -> Manifest:
    """Two models sharing one image, a third in its own."""
    image = BuiltImage(docker_image="ci-dummy_dummy", dockerfile="docker/dummy.Dockerfile")
    other = BuiltImage(docker_image="ci-other", dockerfile="docker/other.Dockerfile")
    models = {key: Model(name=key, dockerfile="docker/dummy", scripts="scripts/dummy/run.sh")
              for key in ("ci-dummy_dummy", "ci-dummy_two", "ci-other")}
    return Manifest(built_images={"ci-dummy_dummy": image, "ci-other": other}, built_models=models,
                    model_images={"ci-dummy_dummy": "ci-dummy_dummy", "ci-dummy_two": "ci-dummy_dummy",
                                  "ci-other": "ci-other"})


class FakeAPI:
    def __init__(self, images: dict[str, str], fail_save: bool = False) -> None:
        self.images = images  # ref -> image ID
        self.fail_save = fail_save
        self.saved: list[str] = []

    def inspect_image(self, ref: str) -> dict[str, Any]:
        if ref not in self.images:
            raise docker.errors.NotFound(f"reference does not exist: {ref}")
        return {"Id": self.images[ref]}

    def get_image(self, ref: str, chunk_size: int) -> Any:
        self.saved.append(ref)
        yield b"tar-of-" + ref.encode()
        if self.fail_save:
            raise docker.errors.APIError("disk full on the engine")


    # The engine's multi-name `docker save` endpoint (GET /images/get?names=a&names=b), as the SDK calls it.
    def _url(self, path: str) -> str:
        return path

    def get(self, url: str, params: list[tuple[str, str]], stream: bool) -> Any:
        names = [value for key, value in params if key == "names"]
        self.saved.append("+".join(names))

        class Response:
            def iter_content(self, chunk_size: int) -> Any:
                yield b"tar-of-" + "+".join(names).encode()

        return Response()

    def _raise_for_status(self, response: Any) -> None:
        return None


class FakeClient:
    def __init__(self, api: FakeAPI) -> None:
        self.api = api


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    fake = FakeAPI({"ci-dummy_dummy:latest": "sha256:" + "1" * 64})
    monkeypatch.setattr(image_copy, "connect", lambda: FakeClient(fake))
    return fake


def test_images_for_the_planned_models_once_per_image() -> None:
    assert images_for(manifest(), ["ci-dummy_dummy", "ci-dummy_two"]) == {"ci-dummy_dummy": "ci-dummy_dummy"}
    assert images_for(manifest(), ["ci-other", "ci-dummy_two"]) == {"ci-other": "ci-other",
                                                                     "ci-dummy_dummy": "ci-dummy_dummy"}
    assert images_for(manifest(), []) == {}


def test_tagged() -> None:
    assert tagged("ci-x") == "ci-x:latest"  # a bare name would save every tag of the repository
    assert tagged("ci-x:v1") == "ci-x:v1" and tagged("127.0.0.1:5000/ci-x") == "127.0.0.1:5000/ci-x:latest"
    assert tagged("repo@sha256:ab") == "repo@sha256:ab"


def test_saved_once_per_image_id_then_reused(api: FakeAPI, tmp_path: Path) -> None:
    shown: list[str] = []
    first = save_images({"ci-dummy_dummy": "ci-dummy_dummy"}, tmp_path, on_image=shown.append)
    path = tmp_path / ("1" * 32 + "-ci-dummy_dummy_latest.tar")
    assert first == {"ci-dummy_dummy": {"path": str(path), "id": "sha256:" + "1" * 64}}
    assert path.read_bytes() == b"tar-of-ci-dummy_dummy:latest" and shown == ["ci-dummy_dummy"]
    assert save_images({"ci-dummy_dummy": "ci-dummy_dummy"}, tmp_path) == first
    assert api.saved == ["ci-dummy_dummy:latest"]  # the second run reused the tarball
    # A rebuild (another ID under the same tag) gets its own tarball.
    api.images["ci-dummy_dummy:latest"] = "sha256:" + "2" * 64
    assert save_images({"ci-dummy_dummy": "ci-dummy_dummy"}, tmp_path)["ci-dummy_dummy"]["id"].endswith("2" * 64)
    assert len(api.saved) == 2


def test_two_names_of_one_image_share_one_tarball_that_holds_both(api: FakeAPI, tmp_path: Path) -> None:
    # Cards sharing a build have a tag each: one tarball carries every name, so one load gives them all.
    api.images["ci-twin:latest"] = api.images["ci-dummy_dummy:latest"]
    saved = save_images({"ci-dummy_dummy": "ci-dummy_dummy", "ci-twin": "ci-twin"}, tmp_path)
    assert saved["ci-dummy_dummy"] == saved["ci-twin"]
    assert api.saved == ["ci-dummy_dummy:latest+ci-twin:latest"]
    assert Path(saved["ci-twin"]["path"]).read_bytes() == b"tar-of-ci-dummy_dummy:latest+ci-twin:latest"
    again = save_images({"ci-dummy_dummy": "ci-dummy_dummy", "ci-twin": "ci-twin"}, tmp_path)
    assert again == saved and len(api.saved) == 1  # cached by ID and names


def test_old_tarballs_are_pruned(api: FakeAPI, tmp_path: Path) -> None:
    old = tmp_path / ("9" * 64 + ".tar")
    old.write_bytes(b"x")
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    save_images({"ci-dummy_dummy": "ci-dummy_dummy"}, tmp_path)
    assert not old.exists() and len(list(tmp_path.iterdir())) == 1


def test_an_image_missing_here_is_exit_4(api: FakeAPI, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="image ci-gone:latest is not in the local Docker engine") as err:
        save_images({"ci-gone": "ci-gone"}, tmp_path)
    assert err.value.exit_code == ExitCode.INVALID_INPUT and "--registry" in (err.value.hint or "")


def test_a_failed_save_leaves_no_tarball(api: FakeAPI, tmp_path: Path) -> None:
    api.fail_save = True
    with pytest.raises(RunError, match="disk full"):
        save_images({"ci-dummy_dummy": "ci-dummy_dummy"}, tmp_path)
    assert list(tmp_path.iterdir()) == []
