"""madengine.jsonfile: the fast JSON reader gives json's results and errors; the line-per-item writer."""

from __future__ import annotations

import json

import pytest

from madengine.jsonfile import json_lines_array, loads


@pytest.mark.parametrize("text", [
    b'[{"name": "m", "n_gpus": "1", "tags": ["a"]}]',
    b'{"x": NaN, "y": Infinity}',              # orjson refuses these, json reads them
    b'{"big": 123456789012345678901234567890}',  # beyond 64 bits
    '\ufeff{"bom": 1}'.encode(),                 # a BOM (Windows editors write one)
    b'{"s": "\\ud800"}',                         # a lone surrogate escape
    '{"unicode": "é漢"}'.encode(),
    b'{"dup": 1, "dup": 2}',                     # the last one wins, as in json
    b'[18446744073709551616, -9223372036854775809, 9223372036854775807]',  # just beyond / inside 64 bits
])
def test_loads_gives_what_json_gives(text):
    got, want = loads(text), json.loads(text)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


def test_loads_errors_are_json_errors_with_line_and_column():
    with pytest.raises(json.JSONDecodeError) as info:
        loads(b'[\n  {"name": "m",}\n]')
    assert (info.value.lineno, info.value.colno) == (2, 16)
    assert info.value.msg == "Expecting property name enclosed in double quotes"


def test_json_lines_array_one_item_a_line_and_valid_json():
    items = [{"name": "a", "tags": ["x"]}, {"name": "é", "n": 123456789012345678901234567890}]
    text = json_lines_array(items)
    assert json.loads(text) == items
    lines = text.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 4
    assert json.loads(lines[1].rstrip(",")) == items[0]


def test_json_lines_array_empty():
    assert json_lines_array([]) == "[]\n"
