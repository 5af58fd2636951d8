# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Attribute descriptions shared by the mad.engine modules."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and predict whether it would change the target.
  diff_mode:
    description: Shows the changes it makes in diff mode.
"""

    ACTIONGROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/mad.engine.madengine) in C(module_defaults) to set defaults (for example
      C(docker_host)) for every mad.engine module at once.
    support: full
    membership:
      - mad.engine.madengine
"""

    FACTS = r"""
options: {}
attributes:
  facts:
    description: Sets host facts.
    support: full
"""
