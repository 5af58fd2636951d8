"""Jinja2 templates shipped in the package (``madengine/templates/``), for the generators.

Input: a template name relative to ``madengine/templates`` and plain data. Output: text. Nothing is
written here; the generators (:mod:`madengine.k8s`, ``generate ansible``) decide where text goes.

Two environments, both with ``StrictUndefined`` (a missing variable is an error, never an empty
string), no autoescaping, ``trim_blocks``/``lstrip_blocks`` and a kept trailing newline:

* the *standard* one, ``{{ }}`` / ``{% %}`` / ``{# #}``, for everything that is not a playbook;
* the *Ansible* one, ``[[ ]]`` / ``[% %]`` / ``[# #]``, for templates whose output Ansible reads again
  (playbooks, vars files): there ``{{ var }}`` in the template source is plain text that reaches the
  output unchanged, so ``{{ }}`` always means Ansible and render time never mixes with run time.

Templates under ``ansible/`` (and any name ending in ``.ansible.j2``) use the Ansible environment,
``*.html.j2`` an autoescaping one (:func:`html_environment`); :func:`render` picks it from the name.
Data that Ansible must not template (model args, env values) goes through the ``to_ansible_yaml``
filter, which tags strings holding ``{{``/``{%``/``{#`` as ``!unsafe``.

Filters (both environments): ``to_yaml`` (block YAML, multi-line strings as ``|`` literals),
``yaml_scalar`` (one value as inline YAML), ``to_json``, ``shell_quote``, ``dirname`` (POSIX) and
``to_ansible_yaml``.
Jinja2 and the templates load on first use (``importlib.resources``), keeping ``--help`` fast.
"""

from __future__ import annotations

import functools
import json
import posixpath
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

TEMPLATE_PACKAGE = "madengine"
TEMPLATE_DIR = "templates"
#: Delimiters of the Ansible environment: anything but ``{{ }}``/``{% %}``, which Ansible owns.
ANSIBLE_DELIMITERS = {
    "block_start_string": "[%", "block_end_string": "%]",
    "variable_start_string": "[[", "variable_end_string": "]]",
    "comment_start_string": "[#", "comment_end_string": "#]",
}


def is_ansible_template(name: str) -> bool:
    """Whether template ``name`` renders with the Ansible delimiters (see the module docstring)."""
    return name.startswith("ansible/") or name.endswith(".ansible.j2")


def template_text(name: str) -> str:
    """The source of a shipped template (or any file under ``madengine/templates``), as text.

    Raises FileNotFoundError for an unknown name.
    """
    from importlib.resources import files

    node = files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIR)
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise FileNotFoundError(f"bad template name {name!r}")
        node = node.joinpath(part)
    if not node.is_file():
        raise FileNotFoundError(f"template {name!r} is not shipped in {TEMPLATE_PACKAGE}/{TEMPLATE_DIR}")
    return node.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- YAML
class _Unsafe(str):
    """A string Ansible must not template: dumped with the ``!unsafe`` tag."""


def _yaml_dumper() -> type:
    import yaml

    class Dumper(yaml.SafeDumper):
        """SafeDumper that never emits aliases and writes multi-line strings as literal blocks."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

    def str_representer(dumper: Any, data: str) -> Any:
        style = "|" if "\n" in data and _literal_ok(data) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    def unsafe_representer(dumper: Any, data: _Unsafe) -> Any:
        return dumper.represent_scalar("!unsafe", str(data), style="'")

    Dumper.add_representer(str, str_representer)
    Dumper.add_representer(_Unsafe, unsafe_representer)
    return Dumper


def _literal_ok(text: str) -> bool:
    """Whether ``text`` can be a ``|`` block that survives re-indenting by the templates' ``indent``.

    Not when PyYAML would add an indentation indicator (a leading space or newline) or keep-chomping
    (several trailing newlines), nor when a line has trailing blanks or unprintable characters (PyYAML
    would quote it anyway): those strings are written quoted, which is just as valid.
    """
    if text[:1] in (" ", "\n") or text.endswith("\n\n"):
        return False
    return not any(line != line.rstrip() for line in text.split("\n")) and all(
        ch == "\n" or ch == "\t" or (ch.isprintable() and ch != "\ufeff") for ch in text)


@functools.lru_cache(maxsize=1)
def _dumper() -> type:
    return _yaml_dumper()


def to_yaml(value: Any, *, sort_keys: bool = False) -> str:
    """``value`` as block-style YAML without a trailing newline (``{}``/``[]`` for empty ones).

    Key order is kept unless ``sort_keys``; multi-line strings become ``|`` literal blocks.
    """
    import yaml

    text = yaml.dump(value, Dumper=_dumper(), default_flow_style=False, sort_keys=sort_keys,
                     allow_unicode=True, width=10_000, explicit_end=False)
    if text.endswith("\n...\n"):  # a bare scalar document
        text = text[: -len("...\n")]
    return text[:-1] if text.endswith("\n") else text


def yaml_scalar(value: Any) -> str:
    """One scalar (string, number, bool, null) as inline YAML: ``dummy``, ``'0123'``, ``"a: b"``."""
    import yaml

    if isinstance(value, (dict, list, tuple)):
        raise TypeError("yaml_scalar takes a scalar; use to_yaml for collections")
    text = yaml.dump(value, Dumper=yaml.SafeDumper, default_flow_style=True, allow_unicode=True,
                     width=10_000, explicit_end=False)
    text = text.rstrip("\n")
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    if "\n" in text:  # a multi-line string: one line, JSON-escaped (JSON strings are YAML)
        return json.dumps(str(value))
    return text


def mark_unsafe(value: Any) -> Any:
    """A copy of ``value`` where every string holding Jinja markers is an ``!unsafe`` string."""
    if isinstance(value, str):
        return _Unsafe(value) if _has_marker(value) else value
    if isinstance(value, dict):
        return {k: mark_unsafe(v) for k, v in value.items()}  # keys are never templated
    if isinstance(value, (list, tuple)):
        return [mark_unsafe(item) for item in value]
    return value


def _has_marker(text: str) -> bool:
    return any(marker in text for marker in ("{{", "{%", "{#"))


def to_ansible_yaml(value: Any) -> str:
    """Block YAML for an Ansible vars file: strings with ``{{``/``{%``/``{#`` are tagged ``!unsafe``,
    so data (model args, env values) is never templated by Ansible at run time."""
    return to_yaml(mark_unsafe(value))


def to_json(value: Any, indent: int | None = None) -> str:
    """JSON without HTML escaping (unlike Jinja's ``tojson``); also a valid inline YAML value."""
    return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=False)


FILTERS: dict[str, Callable[..., Any]] = {
    "to_yaml": to_yaml,
    "yaml_scalar": yaml_scalar,
    "to_json": to_json,
    "shell_quote": lambda value: shlex.quote(str(value)),
    "dirname": lambda value: posixpath.dirname(str(value)),
    "to_ansible_yaml": to_ansible_yaml,
}


# ------------------------------------------------------------------------------------ environments
def _loader() -> jinja2.BaseLoader:
    import jinja2

    class PackageLoader(jinja2.BaseLoader):
        """Templates from ``madengine/templates`` via importlib.resources (works from a wheel or zip)."""

        def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, None, Callable]:
            try:
                source = template_text(template)
            except FileNotFoundError:
                raise jinja2.TemplateNotFound(template) from None
            return source, None, lambda: True

    return PackageLoader()


def _make(**delimiters: str) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(loader=_loader(), undefined=jinja2.StrictUndefined, autoescape=False,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             **delimiters)
    env.filters.update(FILTERS)
    return env


@functools.lru_cache(maxsize=1)
def standard_environment() -> jinja2.Environment:
    """The ``{{ }}`` environment over the package templates (created once, on first use)."""
    return _make()


@functools.lru_cache(maxsize=1)
def ansible_environment() -> jinja2.Environment:
    """The ``[[ ]]``/``[% %]`` environment: output may hold Ansible's own ``{{ }}`` untouched."""
    return _make(**ANSIBLE_DELIMITERS)


def html_environment() -> jinja2.Environment:
    """A new ``{{ }}`` environment with HTML autoescaping, for ``*.html.j2`` templates (callers may add
    their own filters to it)."""
    env = _make()
    env.autoescape = True
    return env


def is_html_template(name: str) -> bool:
    return name.endswith((".html.j2", ".htm.j2"))


def environment_for(name: str) -> jinja2.Environment:
    """The environment a shipped template renders with: Ansible, HTML (autoescaped) or standard."""
    if is_ansible_template(name):
        return ansible_environment()
    if is_html_template(name):
        return html_environment()
    return standard_environment()


def render(name: str, /, **variables: Any) -> str:
    """Render the shipped template ``name`` with ``variables``.

    Raises jinja2.UndefinedError for a variable the template uses but was not given (StrictUndefined)
    and jinja2.TemplateNotFound for an unknown name.
    """
    return environment_for(name).get_template(name).render(**variables)


__all__ = ["ANSIBLE_DELIMITERS", "ansible_environment", "environment_for", "html_environment",
           "is_ansible_template", "is_html_template",
           "mark_unsafe", "render", "standard_environment", "template_text", "to_ansible_yaml", "to_json",
           "to_yaml", "yaml_scalar"]
