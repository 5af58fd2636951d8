"""`python -m madengine.distributed_cli build|run …`: the original distributed CLI's entry point.

Kept for scripts written against it; it maps onto madengine-cli (same code, same options and exit
codes) after a one-line deprecation note on stderr. The original CLI's spellings that madengine-cli
names differently are translated here; `--clean-cache` is not (the guide lists it as a breaking change,
and madengine-cli rejects it naming `--clean-docker-cache`).
"""

from __future__ import annotations

import sys

# The original CLI's command spellings: `full` was `run` with tags, the generators were single words.
_COMMANDS = {"full": ["run"], "generate-ansible": ["generate", "ansible"], "generate-k8s": ["generate", "k8s"]}
# Its option spellings (inherited from `madengine run`), by the madengine-cli option they mean.
_OPTIONS = {"--data-config-file-name": "--data-config", "--tools-json-file-name": "--tools-config",
            "--ignore-deprecated-flag": "--ignore-deprecated"}


def translate(args: list[str]) -> list[str]:
    """The original CLI's arguments → madengine-cli's (commands, then option names; values untouched)."""
    if args and args[0] in _COMMANDS:
        args = _COMMANDS[args[0]] + args[1:]
    out = []
    for word in args:
        name, eq, value = word.partition("=")
        out.append(_OPTIONS[name] + eq + value if name in _OPTIONS else word)
    return out


def main(argv: list[str] | None = None) -> int:
    from madengine.cli.app import app, invoke

    args = translate(list(sys.argv[1:] if argv is None else argv))
    command = next((word for word in args if not word.startswith("-")), "")
    new = " ".join(["madengine-cli", command] if command else ["madengine-cli"])
    print(f"⚠️  python -m madengine.distributed_cli is deprecated: use `{new}` instead "
          "(same options and exit codes).", file=sys.stderr)
    return invoke(app, args, "madengine-cli")


if __name__ == "__main__":
    sys.exit(main())
