"""The madengine-cli application: wires commands together and maps errors to exit codes.

`main()` alone catches errors. It runs the app with `standalone_mode=False` so that Click's usage
errors (which Click would exit with 2, our "build failure") become exit 4, and so every MadError
is shown as a one-screen panel instead of a traceback (unless --verbose).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Collection
from typing import TYPE_CHECKING, Annotated

import typer

from madengine import __version__
from madengine.cli._fastparams import install as _install_fast_params
from madengine.cli.console import set_verbose
from madengine.cli.options import VerboseOpt
from madengine.errors import ExitCode

if TYPE_CHECKING:
    from madengine.errors import MadError

_install_fast_params()  # before any command parses its options: keeps Pydantic out of start-up

HELP = "Discover, build and run AI models from a MAD package, on this host or across a cluster."


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"madengine {__version__}")
        raise typer.Exit()


VersionOpt = Annotated[
    bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version and exit.")
]


def _global_options(version: VersionOpt = False, verbose: VerboseOpt = False) -> None:
    set_verbose(verbose)


#: Every command, in help order: the module that defines it and the function (or Typer group) it exports.
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("madengine.cli.commands.build", "build"),
    "run": ("madengine.cli.commands.run", "run"),
    "generate": ("madengine.cli.commands.generate", "generate_app"),
    "export-config": ("madengine.cli.commands.export_config", "export_config"),
    "compare": ("madengine.cli.commands.compare", "compare"),
    "report": ("madengine.cli.commands.report", "report"),
    "discover": ("madengine.cli.commands.discover", "discover"),
}


def _make_app(name: str, only: Collection[str] | None = None) -> typer.Typer:
    """The app with every command, or with just the commands in ``only`` (see :func:`commands_for`)."""
    app = typer.Typer(name=name, help=HELP, no_args_is_help=True, pretty_exceptions_enable=False,
                      rich_markup_mode=None,
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.callback()(_global_options)
    for command, (module, attribute) in COMMANDS.items():
        if only is not None and command not in only:
            continue
        target = getattr(importlib.import_module(module), attribute)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=command)
        else:
            app.command(command)(target)
    return app


def commands_for(argv: list[str], prog_name: str) -> list[str] | None:
    """The commands a command line needs: the one it names, none for ``--version``, else (help, a
    misspelt command, shell completion) every one.

    Importing and declaring every command's options is most of the start-up time of a command that
    runs one of them (`discover --json`, `--version`), and the only thing that lists them all is help.
    """
    if os.environ.get("_{}_COMPLETE".format(prog_name.replace("-", "_").upper())):
        return None
    for word in argv:
        if word in ("-h", "--help"):
            return None
        if word == "--version":
            return []
        if not word.startswith("-"):
            return [word] if word in COMMANDS else None
    return None


def __getattr__(name: str) -> typer.Typer:
    """``app`` (madengine-cli) and ``legacy_app`` (madengine) with every command, made on first use.

    `madengine` is ROCm madengine 2.x's one command (MAD's Quick Start: `madengine run --tags ...`): the
    same commands as madengine-cli, under the name the hub's docs use.
    """
    if name in ("app", "legacy_app"):
        built = _make_app("madengine-cli" if name == "app" else "madengine")
        globals()[name] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _accept_click_completion_style(prog_name: str) -> None:
    """Accept Click 8's `bash_source` spelling; Typer only understands `source_bash`."""
    var = "_{}_COMPLETE".format(prog_name.replace("-", "_").upper())
    shell, _, instruction = os.environ.get(var, "").partition("_")
    if shell in ("bash", "zsh", "fish", "powershell", "pwsh") and instruction in ("source", "complete"):
        os.environ[var] = f"{instruction}_{shell}"
    instruction, _, shell = os.environ.get(var, "").partition("_")
    if instruction == "complete":
        _expand_completion_tags(shell)


def _expand_completion_tags(shell: str) -> None:
    """Complete `--tags a b<TAB>` (the guide's form) as `--tags a --tags b<TAB>`, as it will be parsed.

    The shell hands over the command line in COMP_WORDS/COMP_CWORD (bash) or _TYPER_COMPLETE_ARGS
    (zsh, fish); the words before the one being completed are expanded like argv, and the word being
    completed is a tag too when it follows tags and is not an option.
    """
    import shlex

    def split_arg_string(line: str) -> list[str]:
        """Shell words, as Click splits them: an unfinished quote ends the last word."""
        lex = shlex.shlex(line, posix=True)
        lex.whitespace_split, lex.commenters = True, ""
        words: list[str] = []
        try:
            words.extend(lex)
        except ValueError:
            words.append(lex.token)
        return words

    def expand(head: list[str], incomplete: str) -> list[str]:
        words = expand_multi_value_tags(head)
        taking = False
        for word in head:
            taking = (taking and word != "--" and not word.startswith("-")) or word in ("--tags", "-t")
        if taking and head and head[-1] not in ("--tags", "-t") and not incomplete.startswith("-"):
            words.append("--tags")
        return words

    if shell == "bash" and "COMP_WORDS" in os.environ:
        cwords = split_arg_string(os.environ["COMP_WORDS"])
        cword = int(os.environ.get("COMP_CWORD", "0") or 0)
        if cword < 1 or not cwords:
            return
        incomplete = cwords[cword] if cword < len(cwords) else ""
        head = expand(cwords[1:cword], incomplete)
        os.environ["COMP_WORDS"] = shlex.join([cwords[0], *head, incomplete])
        os.environ["COMP_CWORD"] = str(len(head) + 1)
    elif shell in ("zsh", "fish") and os.environ.get("_TYPER_COMPLETE_ARGS"):
        line = os.environ["_TYPER_COMPLETE_ARGS"]
        cwords = split_arg_string(line)
        incomplete = cwords.pop() if len(cwords) > 1 and not line.endswith(" ") else ""
        head = expand(cwords[1:], incomplete)
        os.environ["_TYPER_COMPLETE_ARGS"] = shlex.join([*cwords[:1], *head, *([incomplete] if incomplete else [])]) \
            + ("" if incomplete else " ")


def expand_multi_value_tags(argv: list[str]) -> list[str]:
    """`--tags a b` (the guide's form) → `--tags a --tags b`: Click options take one value each.

    Only commands without positional arguments take --tags, so the words that follow `--tags`
    up to the next option are all tags.
    """
    out: list[str] = []
    pending: str | None = None  # a --tags/-t still waiting for its first value
    taking = False
    for word in argv:
        if taking and word != "--" and not word.startswith("-"):
            out += ["--tags", word]
            pending = None
            continue
        if pending:
            out.append(pending)  # no value followed: let Click report it
            pending = None
        taking = word in ("--tags", "-t")
        if taking:
            pending = word
        else:
            out.append(word)
    if pending:
        out.append(pending)
    return out


def invoke(typer_app: typer.Typer, argv: list[str] | None, prog_name: str) -> int:
    """Run a Typer app and turn every outcome into a documented exit code."""
    _accept_click_completion_style(prog_name)
    argv = expand_multi_value_tags(list(sys.argv[1:] if argv is None else argv))
    from madengine.errors import MadError

    try:
        result = typer_app(args=argv, prog_name=prog_name, standalone_mode=False)
    except MadError as err:
        _report(err)
        return int(err.exit_code)
    except typer.exceptions.TyperException as err:  # Click's usage errors, vendored by Typer
        renamed = _renamed_option(err)
        if renamed is not None:
            _report(renamed)
            return int(renamed.exit_code)
        err.show()  # type: ignore[attr-defined]
        # A bare `madengine-cli` shows the help: that is not an error.
        no_args = type(err).__name__ == "NoArgsIsHelpError"
        return int(ExitCode.OK if no_args else ExitCode.INVALID_INPUT)
    except RecursionError:
        from madengine.errors import InvalidInputError

        # Input nested deeper than any real file (json, yaml and the context merge all recurse).
        _report(InvalidInputError("An input file or option is nested too deeply",
                                  hint="check the JSON/YAML files and the -c context given; "
                                       "run again with --verbose to see which one"))
        return int(ExitCode.INVALID_INPUT)
    except (typer.Abort, KeyboardInterrupt):
        from madengine.cli.console import err_console

        err_console.print("[yellow]Interrupted.[/] Finished results were kept.")
        return 130
    except Exception as err:  # noqa: BLE001 - the last resort: a short message, traceback with -v
        _report_unexpected(err)
        return int(ExitCode.FAILURE)
    return result if isinstance(result, int) else int(ExitCode.OK)


#: Options of the original distributed CLI that madengine-cli spells differently (guide: Breaking Changes).
RENAMED_OPTIONS = {"--clean-cache": "--clean-docker-cache"}


def _renamed_option(err: Exception) -> MadError | None:
    """A usage error about a renamed option → an error that names the new spelling (exit 4)."""
    from madengine.errors import InvalidInputError

    old = getattr(err, "option_name", None)
    new = RENAMED_OPTIONS.get(str(old))
    if new is None:
        return None
    context = getattr(err, "ctx", None)
    if context is None or not any(new in param.opts for param in context.command.params):
        return None  # this command has no such option under either name: Click's message is right
    command = context.command_path
    return InvalidInputError(f"{old} is now {new}", hint=f"use {new} (same meaning: rebuild without Docker's cache)",
                             example=f"{command} --tags dummy {new}")


def _report(err: Exception) -> None:
    from madengine.cli.console import err_console, settings
    from madengine.cli.render import common as render

    if settings.verbose:
        detail = getattr(err, "detail", None)
        if detail:
            err_console.print(detail, markup=False, highlight=False)
        _print_traceback()
    err_console.print(render.error_panel(err))


def _report_unexpected(err: Exception) -> None:
    from madengine.cli.console import err_console, settings

    if settings.verbose:
        _print_traceback()
    err_console.print(f"[bold red]❌ Unexpected error:[/] {type(err).__name__}: {err}", highlight=False)
    if not settings.verbose:
        err_console.print("💡 Run again with --verbose for the full traceback.")


def _print_traceback() -> None:
    from rich.traceback import Traceback

    from madengine.cli.console import err_console

    err_console.print(Traceback(show_locals=False))


def _main(prog_name: str) -> int:
    argv = sys.argv[1:]
    return invoke(_make_app(prog_name, commands_for(argv, prog_name)), argv, prog_name)


def main() -> None:
    sys.exit(_main("madengine-cli"))


def legacy_main() -> None:
    sys.exit(_main("madengine"))
