"""Detect the GPUs of the host madengine runs on (vendor, count, architecture).

The logic lives in the mad.engine collection (``plugins/module_utils/_facts.py``), where the
``mad.engine.host_facts`` module uses it on cluster hosts; this module re-exports it so local and
remote runs see a host the same way.
"""

from __future__ import annotations

from ansible_collections.mad.engine.plugins.module_utils._facts import (
    COMMAND_TIMEOUT,
    DEV_DRI,
    HostInfo,
    detect_host,
)

__all__ = ["COMMAND_TIMEOUT", "DEV_DRI", "HostInfo", "detect_host"]
