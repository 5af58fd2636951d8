"""Shell completion helpers: `--tags <TAB>` offers the discovered model names, tags and dirs."""

from __future__ import annotations

import logging
import os

import typer


def complete_tags(ctx: typer.Context, incomplete: str) -> list[str]:
    """Complete a tag from the MAD package that `--mad-dir` (or MAD_DIR, or the cwd) points to."""
    from madengine.discover import discover_models, resolve_mad_dir
    from madengine.errors import MadError

    logging.getLogger("madengine").disabled = True  # completion must never print warnings
    try:
        mad_dir = resolve_mad_dir(ctx.params.get("mad_dir") or os.environ.get("MAD_DIR")
                                  or os.environ.get("MODEL_DIR"))
        models = discover_models(mad_dir, None)
    except (MadError, OSError):
        return []
    words: dict[str, None] = {"all": None}
    for model in models:
        words[model.name] = None
        if model.dir:
            words[f"{model.dir}:all"] = None
        for tag in model.tags:
            words[tag] = None
    return [w for w in words if w.startswith(incomplete)]
