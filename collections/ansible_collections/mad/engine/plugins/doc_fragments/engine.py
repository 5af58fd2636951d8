# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""The options every mad.engine module shares: where the Docker engine is (ENGINE_ARGS in _engine.py)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The Docker engine to talk to on the target host, as C(unix:///path/to/docker.sock) or
        C(tcp://host:port).
      - If not given, the E(DOCKER_HOST) environment variable of the module is used, and then the
        standard socket.
      - The modules speak the Engine HTTP API with the Python standard library, so the target needs no
        docker SDK, no C(requests) and no docker CLI.
    type: str
    default: unix:///var/run/docker.sock
  api_timeout:
    description:
      - Seconds a single engine request may take before it fails.
      - Container runs are bounded by the model timeout instead; pulls and loads stream their
        progress, so this limits the silence between two progress messages.
    type: int
    default: 60
requirements:
  - Python 3 and a Docker engine on the target host (nothing else).
"""
