"""`python -m madengine.distributed_cli build|run …`: the original distributed CLI's entry point.

Kept for scripts written against it; it maps onto madengine-cli (same code, same options and exit
codes) after a one-line deprecation note on stderr.
"""

from __future__ import annotations

import sys

# The original CLI spelled the generators as single words.
_ALIASES = {"generate-ansible": ["generate", "ansible"], "generate-k8s": ["generate", "k8s"]}


def main(argv: list[str] | None = None) -> int:
    from madengine.cli.app import app, invoke

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _ALIASES:
        args = _ALIASES[args[0]] + args[1:]
    print("madengine.distributed_cli is deprecated: use `madengine-cli "
          f"{' '.join(args[:1]) or '--help'} …` (same options).", file=sys.stderr)
    return invoke(app, args, "madengine-cli")


if __name__ == "__main__":
    sys.exit(main())
