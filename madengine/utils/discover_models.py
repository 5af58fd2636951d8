"""Alias of :mod:`madengine.tools.discover_models` for MAD packages that import from ``madengine.utils``.

``from madengine.utils.discover_models import CustomModel`` keeps working unchanged.
"""

from madengine.tools.discover_models import CUSTOM_MODEL_FIELDS, CustomModel

__all__ = ["CUSTOM_MODEL_FIELDS", "CustomModel"]
