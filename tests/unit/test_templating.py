"""The shared Jinja2 machinery (madengine.templating): environments, filters, Ansible escaping."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import jinja2
import pytest
import yaml

from madengine import templating
from madengine.templating import (
    ansible_environment,
    is_ansible_template,
    render,
    standard_environment,
    template_text,
    to_ansible_yaml,
    to_yaml,
    yaml_scalar,
)

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "madengine" / "templates"

TRICKY = [
    "plain",
    "",
    "yes",
    "0123",
    "1e3",
    "null",
    "a: b",
    "- item",
    "#not a comment",
    "  leading spaces",
    "trailing space ",
    "line one\nline two\n",
    "line one\nline two",
    "  indented first\nsecond\n",
    "trailing space \nnext\n",
    "tab\there\nx",
    "quote ' and \" and \\ back",
    "unicode: héllo ✓ 🚀",
    "{{ not_ansible }}",
    "\n\nleading newlines",
    "ends with blank lines\n\n\n",
    "bell\x07char",
]


def test_environments_are_strict_and_distinct():
    assert standard_environment().undefined is jinja2.StrictUndefined
    assert ansible_environment().undefined is jinja2.StrictUndefined
    assert standard_environment().variable_start_string == "{{"
    assert ansible_environment().variable_start_string == "[["
    assert ansible_environment().block_start_string == "[%"
    assert standard_environment() is standard_environment()  # created once


def test_missing_variable_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        render("k8s/namespace.yaml.j2", namespace="x")
    with pytest.raises(jinja2.UndefinedError):
        ansible_environment().from_string("a: [[ missing ]]\n").render()


def test_unknown_and_escaping_names():
    with pytest.raises(jinja2.TemplateNotFound):
        render("k8s/nope.j2")
    with pytest.raises(FileNotFoundError):
        template_text("../templating.py")


def test_ansible_template_selection():
    assert is_ansible_template("ansible/playbook.yml.j2")
    assert is_ansible_template("x/vars.ansible.j2")
    assert not is_ansible_template("k8s/job.yaml.j2")


def test_shipped_templates_load_through_importlib_resources():
    shipped = sorted(p.relative_to(TEMPLATES).as_posix() for p in (TEMPLATES / "k8s").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)
    assert "k8s/job.yaml.j2" in shipped
    for name in shipped:
        assert template_text(name) == (TEMPLATES / name).read_text(encoding="utf-8")
        if name.endswith(".j2"):
            templating.environment_for(name).get_template(name)  # parses


def test_pyproject_ships_the_templates_in_the_wheel():
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["madengine"]
    assert "templates/**/*" in patterns


@pytest.mark.parametrize("value", TRICKY)
def test_to_yaml_round_trips_inside_a_template(value):
    template = standard_environment().from_string(
        "outer:\n  inner:\n    - {{ value | to_yaml | indent(6) }}\n  scalar: {{ value | yaml_scalar }}\n"
        "  mapping:\n    {{ {'k': value, 'n': [value]} | to_yaml | indent(4) }}\n")
    text = template.render(value=value)
    data = yaml.safe_load(text)
    assert data == {"outer": {"inner": [value], "scalar": value, "mapping": {"k": value, "n": [value]}}}, text


def test_to_yaml_uses_literal_blocks_for_scripts():
    text = to_yaml({"run.sh": "#!/bin/bash\necho hi\n"})
    assert text == "run.sh: |\n  #!/bin/bash\n  echo hi"
    assert to_yaml({}) == "{}" and to_yaml([]) == "[]"
    with pytest.raises(TypeError):
        yaml_scalar({"a": 1})


SAMPLE_PLAYBOOK = textwrap.dedent("""\
    [# A playbook template: render-time data in [[ ]], Ansible's run-time expressions in {{ }}. #]
    - name: Run [[ title ]]
      hosts: "{{ target_hosts | default('all') }}"
      gather_facts: false
      vars:
        models:
          [[ models | to_ansible_yaml | indent(6) ]]
        registry_password: "{{ lookup('ansible.builtin.env', 'MAD_REGISTRY_PASSWORD') }}"
      tasks:
    [% for m in models %]
        - name: Show [[ m.name ]] on {{ inventory_hostname }}
          ansible.builtin.debug:
            msg: "{{ item }} [[ m.name ]] {{ 40 + 2 }}"
          loop: "{{ models | map(attribute='name') | list }}"
    [% endfor %]
    """)


def test_ansible_delimiters_keep_runtime_expressions():
    models = [{"name": "dummy", "args": "--x {{ lookup('pipe', 'id') }}"}, {"name": "dummy2/dummy_2", "args": ""}]
    text = ansible_environment().from_string(SAMPLE_PLAYBOOK).render(title="madengine", models=models)
    play = yaml.load(text, Loader=_UnsafeLoader)
    assert isinstance(play, list) and len(play) == 1
    play = play[0]
    assert play["name"] == "Run madengine"
    assert play["hosts"] == "{{ target_hosts | default('all') }}"
    assert play["vars"]["registry_password"] == "{{ lookup('ansible.builtin.env', 'MAD_REGISTRY_PASSWORD') }}"
    assert play["vars"]["models"] == models
    assert [t["name"] for t in play["tasks"]] == ["Show dummy on {{ inventory_hostname }}",
                                                  "Show dummy2/dummy_2 on {{ inventory_hostname }}"]
    assert play["tasks"][0]["ansible.builtin.debug"]["msg"] == "{{ item }} dummy {{ 40 + 2 }}"
    assert "[[" not in text and "[%" not in text and "[#" not in text


def test_ansible_templates_template_runtime_expressions_but_never_data():
    """Through Ansible's own loader and Templar: `{{ }}` of the template runs, `{{ }}` in data does not."""
    pytest.importorskip("ansible")
    from ansible.parsing.yaml.loader import AnsibleLoader
    from ansible.template import Templar, is_trusted_as_template, trust_as_template

    models = [{"name": "dummy", "args": "--x {{ 40 + 2 }}"}]
    text = ansible_environment().from_string(SAMPLE_PLAYBOOK).render(title="t", models=models)
    # A playbook file read by Ansible is trusted as a template, except for !unsafe values.
    play = yaml.load(trust_as_template(text), Loader=AnsibleLoader)[0]
    args = play["vars"]["models"][0]["args"]
    msg = play["tasks"][0]["ansible.builtin.debug"]["msg"]
    assert not is_trusted_as_template(args)
    assert is_trusted_as_template(msg)
    templar = Templar(variables={"item": "it"})
    assert templar.template(msg) == "it dummy 42"
    assert templar.template(args) == "--x {{ 40 + 2 }}"


def test_to_ansible_yaml_tags_only_strings_with_markers():
    text = to_ansible_yaml({"a": "{{ x }}", "b": "plain", "c": ["{% if %}", "{# c #}", 3]})
    assert "a: !unsafe '{{ x }}'" in text
    assert "b: plain" in text
    assert yaml.load(text, Loader=_UnsafeLoader) == {"a": "{{ x }}", "b": "plain", "c": ["{% if %}", "{# c #}", 3]}


class _UnsafeLoader(yaml.SafeLoader):
    """A SafeLoader that reads Ansible's !unsafe tag as a plain string."""


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def test_jinja_and_templates_load_lazily():
    import subprocess

    code = ("import sys, madengine.templating, madengine.cli.app\n"
            "assert 'jinja2' not in sys.modules, 'jinja2 imported at import time'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_html_templates_autoescape_and_others_do_not():
    from madengine.templating import environment_for, html_environment

    assert html_environment().from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert environment_for("report/report.html.j2").autoescape is True
    assert environment_for("k8s/job.yaml.j2").autoescape is False
    assert standard_environment().from_string("{{ x }}").render(x="a && b <c>") == "a && b <c>"
