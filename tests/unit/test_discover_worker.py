"""The generator worker's own logic: how it calls ``list_models`` (without importing ``inspect``)."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from madengine.discover_worker import _call_mode, _call_mode_from_signature

REPO = Path(__file__).resolve().parents[2]


def no_params():
    return []


def positional(params):
    return []


def positional_default(params=None):
    return []


def star_args(*args):
    return []


def star_kwargs(**kwargs):
    return []


def keyword_only(*, batch_size="1", precision="fp16"):
    return []


def keyword_only_required(*, batch_size):
    return []


def positional_and_kwargs(params, **kwargs):
    return []


def defaulted_and_kwargs(params=None, **kwargs):
    return []


def positional_only(params, /):
    return []


class Callable:
    def __call__(self, params):
        return []


@functools.wraps(keyword_only)
def wrapped(*args, **kwargs):
    return keyword_only(*args, **kwargs)


@pytest.mark.parametrize("fn", [no_params, positional, positional_default, star_args, star_kwargs, keyword_only,
                                keyword_only_required, positional_and_kwargs, defaulted_and_kwargs, positional_only,
                                Callable(), wrapped, lambda: [], lambda p: [], lambda *, k="": []])
def test_code_object_reading_agrees_with_inspect(fn):
    assert _call_mode(fn) == _call_mode_from_signature(fn)


def test_call_modes_are_the_documented_ones():
    assert _call_mode(no_params) == ("none", frozenset())
    assert _call_mode(positional) == ("positional", frozenset())
    assert _call_mode(star_kwargs) == ("kwargs", frozenset())
    assert _call_mode(keyword_only) == ("keywords", frozenset({"batch_size", "precision"}))
    assert _call_mode(wrapped) == ("keywords", frozenset({"batch_size", "precision"}))  # follows __wrapped__


def test_worker_start_imports_neither_inspect_nor_traceback():
    code = ("import sys; import madengine.discover_worker; "
            "print(','.join(m for m in ('inspect', 'traceback', 'madengine.discover', 'madengine.model') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); {code}"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""
