"""``--image-transfer copy``: ``docker save`` the images a cluster run needs, for hosts without a registry.

The mad.engine.run_models role copies each tarball to ``<workdir>/images/`` on a host that lacks the image
and loads it there (mad.engine.image ``load_from``); a host that already has it gets neither.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from madengine.build import connect
from madengine.errors import InvalidInputError, RunError
from madengine.manifest import Manifest

_CHUNK = 1 << 20


def images_for(manifest: Manifest, keys: Iterable[str]) -> dict[str, str]:
    """{built_images key: local image name} of the images the ``built_models`` ``keys`` run in."""
    wanted = set(keys)
    out: dict[str, str] = {}
    for entry in manifest.entries():
        if entry.key in wanted:
            out.setdefault(manifest.model_images.get(entry.key, entry.key), entry.image.docker_image)
    return out


def tarball_name(image_key: str) -> str:
    """A file name for the image's tarball (the same on the controller and the hosts)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", image_key) + ".tar"


def save_images(images: dict[str, str], dest: Path,
                on_image: Callable[[str], None] = lambda name: None) -> dict[str, str]:
    """``docker save`` each image into ``dest``; returns {built_images key: tarball path}.

    Raises InvalidInputError when the local engine does not have an image (copy ships what was built
    here), RunError when saving fails. A tarball appears only complete (written aside, then renamed).
    """
    import docker

    client = connect()
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    for key, name in images.items():
        on_image(name)
        path = dest / tarball_name(key)
        partial = path.with_suffix(".tar.partial")
        try:
            with partial.open("wb") as handle:
                for chunk in client.api.get_image(name, chunk_size=_CHUNK):
                    handle.write(chunk)
            os.replace(partial, path)
        except docker.errors.ImageNotFound:
            partial.unlink(missing_ok=True)
            raise InvalidInputError(
                f"--image-transfer copy: image {name} is not in the local Docker engine",
                hint="copy ships images built on this machine: build them here first, or push them with "
                     "--registry and let the hosts pull",
                example="madengine-cli run --inventory cluster.yml --tags dummy --image-transfer copy") from None
        except (docker.errors.APIError, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise RunError(f"--image-transfer copy: saving image {name} to {path} failed: {exc}") from None
        out[key] = str(path)
    return out
