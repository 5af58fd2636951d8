"""`madengine discover` / `madengine-cli discover`: list the models a tag selection resolves to."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from madengine.cli.console import console, set_verbose
from madengine.cli.options import MadDirOpt, TagsOpt, VerboseOpt


def discover(
    tags: TagsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the models as a JSON list, nothing else.")] = False,
    mad_dir: MadDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """List the models discovered in the MAD package (all of them, or those the tags select)."""
    set_verbose(verbose)
    from madengine.discover import discover_models, resolve_mad_dir
    from madengine.tags import split_tags

    models = discover_models(resolve_mad_dir(mad_dir), split_tags(tags or []))
    if as_json:
        # Plain write, not console.print: Rich would wrap or highlight, and --json must stay pure JSON.
        from madengine.jsonfile import json_lines_array

        sys.stdout.write(json_lines_array(m.to_dict() for m in models))
        sys.stdout.flush()
        return
    from madengine.cli.render import common as render

    console.print(render.models_table(models))
