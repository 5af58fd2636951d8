"""`madengine discover` / `madengine-cli discover`: list the models a tag selection resolves to."""

from __future__ import annotations

import json
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
        # One model a line: json's C encoder (indent= would use the slow pure-Python one).
        body = ",\n".join("  " + json.dumps(m.to_dict()) for m in models)
        sys.stdout.write(f"[\n{body}\n]\n" if models else "[]\n")
        sys.stdout.flush()
        return
    from madengine.cli.render import common as render

    console.print(render.models_table(models))
