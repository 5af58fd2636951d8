# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""The unit tests mirror the plugin tree: plugins/module_utils/_x.py is tested in module_utils/test__x.py."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGINS = HERE.parents[2] / "plugins"


def test_every_module_util_has_its_own_unit_test():
    utils = sorted(p.name for p in (PLUGINS / "module_utils").glob("_*.py") if p.name != "__init__.py")
    assert utils, PLUGINS
    missing = [u for u in utils if not (HERE / "module_utils" / f"test_{u}").is_file()]
    assert not missing, f"module_utils without tests/unit/plugins/module_utils/test_<name>: {missing}"
