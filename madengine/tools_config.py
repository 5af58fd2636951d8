"""Which tools config (tools.json) a run uses: the given one, else madengine's default.

The MAD hub has no ``scripts/common/tools.json``; a context asking for ``rocprof`` (or another of ROCm's
usual tool names) then uses the default shipped in the package (``madengine/data/tools.json``).
"""

from __future__ import annotations

from pathlib import Path

#: The tools config shipped with madengine.
DEFAULT_TOOLS_CONFIG_FILE = Path(__file__).resolve().parent / "data" / "tools.json"


def effective_tools_config(path: Path | str | None) -> Path:
    """``path`` when that file exists, else the packaged default."""
    if path and Path(path).is_file():
        return Path(path)
    return DEFAULT_TOOLS_CONFIG_FILE


def tools_config_name(path: Path | str) -> str:
    """How messages name a tools config: its path, or ``madengine's default tools config (<path>)``."""
    if Path(path) == DEFAULT_TOOLS_CONFIG_FILE:
        return f"madengine's default tools config ({DEFAULT_TOOLS_CONFIG_FILE})"
    return str(path)
