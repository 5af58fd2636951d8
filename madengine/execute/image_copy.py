"""``--image-transfer copy``: ``docker save`` the images a cluster run needs, for hosts without a registry.

The mad.engine.run_models role copies each tarball to the hosts that lack the image (by image ID: a host
with an older build under the same tag counts as lacking it), loads and removes it there. The tarballs
are kept in a cache on the controller (``cache_dir()``), one per image ID and names, so a run of unchanged
images saves nothing; entries unused for CACHE_DAYS are removed (no size cap: delete the dir to reclaim).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from madengine.build import connect
from madengine.cachedir import cache_home
from madengine.errors import BuildError, InvalidInputError, RunError
from madengine.manifest import Manifest

CACHE_DAYS = 7
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where the tarballs are kept: ``$XDG_CACHE_HOME/madengine/images`` (``~/.cache/...`` by default)."""
    return cache_home() / "images"


def images_for(manifest: Manifest, keys: Iterable[str]) -> dict[str, str]:
    """{built_images key: local image name} of the images the ``built_models`` ``keys`` run in."""
    wanted = set(keys)
    out: dict[str, str] = {}
    for entry in manifest.entries():
        if entry.key in wanted:
            out.setdefault(manifest.model_images.get(entry.key, entry.key), entry.image.docker_image)
    return out


def tagged(name: str) -> str:
    """``name`` with ``:latest`` when it has no tag: saving a bare repository name exports all its tags."""
    return name if "@" in name or ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def save_images(images: dict[str, str], cache: Path,
                on_image: Callable[[str], None] = lambda name: None) -> dict[str, dict[str, str]]:
    """``docker save`` each image into ``cache`` unless it holds that image ID under that name already.

    Returns {built_images key: {"path": tarball, "id": image ID}} (the role's run_models_image_tarballs).
    Raises InvalidInputError when the local engine does not have an image (copy ships what was built
    here), RunError when the engine is unreachable or saving fails. A tarball appears only complete.
    """
    import docker

    try:
        client = connect()
    except BuildError as e:
        raise RunError(f"--image-transfer copy needs the local Docker engine: {e.message}", hint=e.hint) from None
    cache.mkdir(parents=True, exist_ok=True)
    _prune(cache)
    ids: dict[str, str] = {}  # reference -> image ID
    for name in images.values():
        ref = tagged(name)
        if ref in ids:
            continue
        try:
            ids[ref] = str(client.api.inspect_image(ref)["Id"])
        except docker.errors.NotFound:
            raise InvalidInputError(
                f"--image-transfer copy: image {ref} is not in the local Docker engine",
                hint="copy ships images built on this machine: build them here first, or push them with "
                     "--registry and let the hosts pull",
                example="madengine-cli run --inventory cluster.yml --tags dummy --image-transfer copy") from None
        except docker.errors.APIError as exc:
            raise RunError(f"--image-transfer copy: inspecting image {ref} failed: {exc}") from None
    # One tarball per image ID, holding every name of it the run uses (cards sharing a build each have
    # their own tag): a host loads it once and has them all. By ID and names: a rebuild is a new file.
    names_of: dict[str, list[str]] = {}
    for ref, image_id in ids.items():
        names_of.setdefault(image_id, []).append(ref)
    paths: dict[str, Path] = {}
    for image_id, refs in names_of.items():
        refs.sort()
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", refs[0])
        if len(refs) > 1:
            label += f"+{len(refs) - 1}-" + hashlib.sha256("\0".join(refs).encode()).hexdigest()[:8]
        path = cache / f"{image_id.split(':')[-1][:32]}-{label}.tar"
        if path.is_file():
            os.utime(path)  # in use: not pruned
        else:
            for name in sorted({name for name in images.values() if tagged(name) in refs}):
                on_image(name)
            _save(client, refs, path)
        paths[image_id] = path
    return {key: {"path": str(paths[ids[tagged(name)]]), "id": ids[tagged(name)]} for key, name in images.items()}


def _save(client: Any, refs: list[str], path: Path) -> None:
    """``docker save refs... > path`` through the engine API (``GET /images/get?names=...``)."""
    import docker

    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        if len(refs) == 1:
            chunks = client.api.get_image(refs[0], chunk_size=_CHUNK)
        else:  # the SDK's get_image takes one name; the engine's endpoint takes several
            response = client.api.get(client.api._url("/images/get"), params=[("names", ref) for ref in refs],
                                       stream=True)
            client.api._raise_for_status(response)
            chunks = response.iter_content(chunk_size=_CHUNK)
        with partial.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(partial, path)
    except (docker.errors.APIError, OSError) as exc:
        raise RunError(f"--image-transfer copy: saving image {', '.join(refs)} to {path} failed: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)


def _prune(cache: Path) -> None:
    """Remove tarballs (and partial ones of dead runs) unused for CACHE_DAYS."""
    horizon = time.time() - CACHE_DAYS * 86400
    for path in cache.iterdir():
        try:
            if path.stat().st_mtime < horizon:
                path.unlink()
        except OSError:
            pass
