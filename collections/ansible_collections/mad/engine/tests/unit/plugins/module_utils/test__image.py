# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""_image: pinned references and `changed` as honest as the engine's answers (a scripted fake engine).

The module's argspec, auth header and failure messages are covered in tests/unit/plugins/modules/test_image.py,
a real pull in molecule/nodes and tests/integration/test_collection.py.
"""

from __future__ import annotations

import pytest
from ansible_collections.mad.engine.plugins.module_utils._engine import EngineError
from ansible_collections.mad.engine.plugins.module_utils._image import (
    ensure_image,
    has_digest,
    load_image,
    pinned_reference,
    present_images,
)

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "127.0.0.1:5000/ci-x"


class FakeEngine:
    """image_inspect / image_pull / image_load over a dict of present images."""

    def __init__(self, present=None, pulls=None, loads=None):
        self.present = dict(present or {})
        self.pulls = dict(pulls or {})  # ref -> the inspect the engine has after pulling it
        self.loads = dict(loads or {})  # tarball -> {ref: inspect}
        self.calls = []

    def image_inspect(self, ref):
        self.calls.append(("inspect", ref))
        return self.present.get(ref)

    def image_pull(self, ref, auth=None):
        self.calls.append(("pull", ref, auth))
        self.present[ref] = self.pulls[ref]
        return self.pulls[ref]

    def image_load(self, path):
        self.calls.append(("load", path))
        self.present.update(self.loads[path])
        return sorted(self.loads[path])


def inspect(*digests):
    return {"Id": "sha256:" + "01" * 32, "RepoDigests": [f"{REPO}@{d}" for d in digests]}


@pytest.mark.parametrize("image, expected", [
    ({"registry_image": f"{REPO}:latest", "image_digest": DIGEST}, f"{REPO}@{DIGEST}"),
    ({"registry_image": f"{REPO}@{DIGEST}", "image_digest": DIGEST}, f"{REPO}@{DIGEST}"),
    ({"registry_image": "127.0.0.1:5000/ns/ci-x:v1", "image_digest": DIGEST}, f"127.0.0.1:5000/ns/ci-x@{DIGEST}"),
    ({"registry_image": "127.0.0.1:5000/ci-x", "image_digest": DIGEST}, f"{REPO}@{DIGEST}"),
    ({"registry_image": f"{REPO}:latest", "image_digest": None, "docker_image": "ci-x"}, f"{REPO}:latest"),
    ({"registry_image": None, "docker_image": "ci-x"}, "ci-x"),
    ({}, ""),
])
def test_pinned_reference(image, expected):
    assert pinned_reference(image) == expected


def test_has_digest():
    assert has_digest(inspect(DIGEST), DIGEST)
    assert not has_digest(inspect(OTHER), DIGEST)
    assert not has_digest(None, DIGEST)
    assert not has_digest({"Id": "x", "RepoDigests": None}, DIGEST)


def test_present_image_is_not_pulled():
    engine = FakeEngine(present={REPO: inspect(DIGEST)})
    result = ensure_image(engine, REPO, DIGEST)
    assert result == {"changed": False, "image": REPO, "id": inspect()["Id"], "digest": DIGEST}
    assert [c[0] for c in engine.calls] == ["inspect"]


def test_present_without_the_digest_is_pulled_again():
    engine = FakeEngine(present={REPO: inspect(OTHER)}, pulls={REPO: inspect(OTHER, DIGEST)})
    auth = {"username": "u", "password": "p", "serveraddress": "127.0.0.1:5000"}
    result = ensure_image(engine, REPO, DIGEST, auth)
    assert result["changed"] is True and result["digest"] == DIGEST
    assert ("pull", REPO, auth) in engine.calls


def test_check_mode_predicts_without_pulling():
    engine = FakeEngine()
    result = ensure_image(engine, REPO, DIGEST, check_mode=True)
    assert result == {"changed": True, "image": REPO, "id": "", "digest": DIGEST}
    assert [c[0] for c in engine.calls] == ["inspect"]


def test_pull_without_digest_takes_what_comes():
    engine = FakeEngine(pulls={"ci-x": {"Id": "sha256:" + "02" * 32}})
    result = ensure_image(engine, "ci-x")
    assert result == {"changed": True, "image": "ci-x", "id": "sha256:" + "02" * 32, "digest": ""}


def test_pulled_content_with_another_digest_fails():
    engine = FakeEngine(pulls={REPO: inspect(OTHER)})
    with pytest.raises(EngineError) as info:
        ensure_image(engine, REPO, DIGEST)
    assert info.value.reason == "digest mismatch" and DIGEST in str(info.value)


def test_load_only_when_missing():
    engine = FakeEngine(present={"ci-x": inspect()})
    assert load_image(engine, "ci-x", "/t/ci-x.tar")["changed"] is False
    assert not [c for c in engine.calls if c[0] == "load"]

    engine = FakeEngine(loads={"/t/ci-x.tar": {"ci-x": inspect()}})
    assert load_image(engine, "ci-x", "/t/ci-x.tar", check_mode=True)["changed"] is True
    assert not [c for c in engine.calls if c[0] == "load"]
    result = load_image(engine, "ci-x", "/t/ci-x.tar")
    assert result == {"changed": True, "image": "ci-x", "id": inspect()["Id"], "digest": "", "loaded": ["ci-x"]}


def test_load_that_does_not_give_the_image_fails():
    engine = FakeEngine(loads={"/t/other.tar": {"ci-other": inspect()}})
    with pytest.raises(EngineError) as info:
        load_image(engine, "ci-x", "/t/other.tar")
    assert info.value.reason == "image load failed" and "ci-other" in str(info.value)


class _InspectFails(FakeEngine):
    def __init__(self, present, errors):
        super().__init__(present)
        self.errors = errors

    def image_inspect(self, ref):
        if ref in self.errors:
            raise self.errors[ref]
        return super().image_inspect(ref)


def test_present_images_by_digest_and_id() -> None:
    engine = FakeEngine({f"{REPO}@{DIGEST}": {"Id": "sha256:1", "RepoDigests": [f"{REPO}@{DIGEST}"]},
                         "ci-old": {"Id": "sha256:old", "RepoDigests": []},
                         "ci-new": {"Id": "sha256:new", "RepoDigests": []}})
    images = [{"name": f"{REPO}@{DIGEST}", "digest": DIGEST}, {"name": "ci-old", "id": "sha256:new"},
              {"name": "ci-new", "id": "sha256:new"}, {"name": "ci-missing"}]
    # ci-old has the tag, but from an older build: it must be loaded again.
    assert present_images(engine, images) == [f"{REPO}@{DIGEST}", "ci-new"]


def test_present_images_a_bad_reference_is_missing_but_a_dead_engine_raises() -> None:
    engine = _InspectFails({"ci-a": {"Id": "sha256:1"}}, {"BAD REF": EngineError("invalid reference", "bad")})
    assert present_images(engine, [{"name": "BAD REF"}, {"name": "ci-a"}]) == ["ci-a"]
    engine = _InspectFails({}, {"ci-a": EngineError("engine unreachable", "no socket")})
    with pytest.raises(EngineError, match="no socket"):
        present_images(engine, [{"name": "ci-a"}])


def test_load_image_replaces_an_older_build_under_the_same_tag() -> None:
    engine = FakeEngine({"ci-x": {"Id": "sha256:old"}}, loads={"/t.tar": {"ci-x": {"Id": "sha256:new"}}})
    result = load_image(engine, "ci-x", "/t.tar", image_id="sha256:new")  # type: ignore[arg-type]
    assert result["changed"] is True and result["id"] == "sha256:new"
    again = load_image(engine, "ci-x", "/t.tar", image_id="sha256:new")  # type: ignore[arg-type]
    assert again["changed"] is False
    wrong = FakeEngine({}, loads={"/t.tar": {"ci-x": {"Id": "sha256:other"}}})
    with pytest.raises(EngineError, match="not sha256:new"):
        load_image(wrong, "ci-x", "/t.tar", image_id="sha256:new")  # type: ignore[arg-type]
