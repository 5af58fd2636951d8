# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Make a manifest image present on a host: by digest when known, honest about `changed`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._engine import ENGINE_DOWN_REASONS, EngineClient, EngineError


def pinned_reference(image: Mapping[str, Any]) -> str:
    """The reference to run for a manifest image entry: `repo@digest` when pushed, else the local tag."""
    registry_image = str(image.get("registry_image") or "")
    digest = str(image.get("image_digest") or "")
    if registry_image and digest:
        repo = registry_image.split("@", 1)[0]
        last = repo.rsplit("/", 1)[-1]
        if ":" in last:  # drop a tag: the digest pins the content
            repo = repo[: len(repo) - len(last)] + last.split(":", 1)[0]
        return f"{repo}@{digest}"
    return registry_image or str(image.get("docker_image") or "")


def has_digest(inspect: Mapping[str, Any] | None, digest: str) -> bool:
    return bool(inspect) and any(d.endswith("@" + digest) for d in inspect.get("RepoDigests") or [])


def is_present(inspect: Mapping[str, Any] | None, digest: str = "", image_id: str = "") -> bool:
    """Whether an image inspect result is the wanted image: present, with the repo `digest` and the
    `image_id` when given (a tag alone may name an older build)."""
    return (inspect is not None and (not digest or has_digest(inspect, digest))
            and (not image_id or inspect.get("Id") == image_id))


def present_images(engine: EngineClient, images: Iterable[Mapping[str, Any]]) -> list[str]:
    """The names of `images` ({name, digest, id}) that the engine already has, with their repo digest and
    image ID when given.

    An image the engine cannot look up (an invalid reference) counts as missing: mad.engine.image then
    fails for that image alone. Raises EngineError only when the engine itself is gone.
    """
    present = []
    for image in images:
        name = str(image["name"])
        try:
            inspect = engine.image_inspect(name)
        except EngineError as e:
            if e.reason in ENGINE_DOWN_REASONS:
                raise
            continue
        if is_present(inspect, str(image.get("digest") or ""), str(image.get("id") or "")):
            present.append(name)
    return present


def ensure_image(engine: EngineClient, ref: str, digest: str = "", auth: Mapping[str, Any] | None = None,
                 check_mode: bool = False) -> dict[str, Any]:
    """Pull `ref` unless the engine already has it (with `digest`, when given).

    Returns {changed, image, id, digest}; raises EngineError ("pull failed", "registry auth failed",
    or "digest mismatch" when the pulled content is not the recorded digest).
    """
    inspect = engine.image_inspect(ref)
    if is_present(inspect, digest):
        return {"changed": False, "image": ref, "id": inspect.get("Id", ""), "digest": digest}
    if check_mode:
        return {"changed": True, "image": ref, "id": "", "digest": digest}
    inspect = engine.image_pull(ref, auth=auth)
    if digest and not has_digest(inspect, digest):
        raise EngineError("digest mismatch", f"pulled {ref} but its digests {inspect.get('RepoDigests')} "
                                             f"do not include {digest}")
    return {"changed": True, "image": ref, "id": inspect.get("Id", ""), "digest": digest}


def load_image(engine: EngineClient, ref: str, tar_path: str, check_mode: bool = False,
               image_id: str = "") -> dict[str, Any]:
    """Load `ref` from a `docker save` tarball on this host unless the engine already has it (with
    `image_id`, when given: the tag of an older build is replaced).

    For hosts without a registry; a loaded image has no repo digest, so none is checked.
    Returns {changed, image, id, digest, loaded}; raises EngineError ("image load failed", also when the
    tarball does not hold `ref`, or not as `image_id`).
    """
    inspect = engine.image_inspect(ref)
    if is_present(inspect, image_id=image_id):
        return {"changed": False, "image": ref, "id": inspect.get("Id", ""), "digest": "", "loaded": []}
    if check_mode:
        return {"changed": True, "image": ref, "id": "", "digest": "", "loaded": []}
    loaded = engine.image_load(tar_path)
    inspect = engine.image_inspect(ref)
    if inspect is None:
        raise EngineError("image load failed", f"{tar_path} was loaded ({', '.join(loaded) or 'nothing'}) "
                                               f"but the engine has no image {ref}")
    if not is_present(inspect, image_id=image_id):
        raise EngineError("image load failed", f"{tar_path} was loaded but {ref} is image {inspect.get('Id')}, "
                                               f"not {image_id}")
    return {"changed": True, "image": ref, "id": inspect.get("Id", ""), "digest": "", "loaded": loaded}
