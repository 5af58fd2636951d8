"""The --tags grammar (madengine.tags): pure parsing and matching, no MAD tree needed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from madengine.errors import ExitCode, InvalidInputError
from madengine.tags import (
    TagSpec,
    append_args,
    matches,
    parse_tag,
    parse_tags,
    short_name,
    split_tags,
    suggest,
)

DIRS = {"dummy2", "dummy3"}


def model(name: str, tags: list[str] | None = None, dir_: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(name=name, tags=tags or [], dir=dir_)


# ------------------------------------------------------------------------------------------ split_tags
def test_split_tags_flattens_repeats_and_commas():
    assert split_tags(["dummy,dummies", " dummy2:dummy_2 ", "", "a,,b ,"]) == [
        "dummy", "dummies", "dummy2:dummy_2", "a", "b"]


def test_split_tags_empty_inputs():
    assert split_tags(None) == []
    assert split_tags([]) == []
    assert split_tags([" , "]) == []


def test_split_tags_keeps_params_intact():
    assert split_tags(["dummy3:dummy_3:batch_size=512:in=32,dummy"]) == [
        "dummy3:dummy_3:batch_size=512:in=32", "dummy"]


# ------------------------------------------------------------------------------------------ parse_tag
def test_simple_tag():
    spec = parse_tag("dummy", DIRS)
    assert (spec.kind, spec.name, spec.dir, spec.params, spec.arg_parts) == ("simple", "dummy", None, {}, ())
    assert spec.extra_args == ""


def test_all():
    spec = parse_tag("all", DIRS)
    assert spec.kind == "all" and spec.name == "all"


def test_all_with_params():
    spec = parse_tag("all:batch_size=8", DIRS)
    assert spec.kind == "all"
    assert spec.params == {"batch_size": "8"}
    assert spec.extra_args == " --batch_size 8"


@pytest.mark.parametrize("tag", ["dummy2:dummy_2", "dummy2/dummy_2"])
def test_dir_model_both_spellings(tag):
    spec = parse_tag(tag, DIRS)
    assert (spec.kind, spec.dir, spec.name) == ("dir", "dummy2", "dummy_2")
    assert spec.params == {}


@pytest.mark.parametrize("tag", ["dummy3:all", "dummy3/all"])
def test_dir_all_both_spellings(tag):
    spec = parse_tag(tag, DIRS)
    assert (spec.kind, spec.dir, spec.name) == ("dir", "dummy3", "all")


def test_dir_model_with_params():
    spec = parse_tag("dummy3:dummy_3:batch_size=512:in=32", DIRS)
    assert (spec.kind, spec.dir, spec.name) == ("dir", "dummy3", "dummy_3")
    assert spec.params == {"batch_size": "512", "in": "32"}
    assert spec.extra_args == " --batch_size 512 --in 32"


def test_slash_form_with_params():
    spec = parse_tag("dummy3/dummy_3:batch_size=64", DIRS)
    assert (spec.kind, spec.dir, spec.name, spec.params) == ("dir", "dummy3", "dummy_3", {"batch_size": "64"})


def test_bare_flag_appends_double_dash_word():
    spec = parse_tag("dummy:fast", DIRS)
    assert spec.kind == "simple" and spec.name == "dummy"
    assert spec.params == {}
    assert spec.arg_parts == ("--fast",)
    assert spec.extra_args == " --fast"


def test_params_and_flags_keep_their_order():
    spec = parse_tag("dummy:a=1:verbose:b=2", DIRS)
    assert spec.params == {"a": "1", "b": "2"}
    assert spec.extra_args == " --a 1 --verbose --b 2"


def test_params_on_simple_tag():
    spec = parse_tag("dummy:batch_size=8", DIRS)
    assert (spec.kind, spec.name, spec.params) == ("simple", "dummy", {"batch_size": "8"})


def test_value_may_contain_equals_and_leading_dashes_are_not_doubled():
    spec = parse_tag("dummy:--opt=a=b:--flag", DIRS)
    assert spec.params == {"opt": "a=b"}
    assert spec.extra_args == " --opt a=b --flag"


def test_empty_value_is_a_flag_in_args_but_kept_as_param():
    spec = parse_tag("dummy:x=", DIRS)
    assert spec.params == {"x": ""}
    assert spec.extra_args == " --x"


def test_ambiguity_dir_followed_by_param_is_a_simple_tag():
    # `dummy2` is a scripts dir, but `batch_size=8` has "=": so dummy2 is a tag and this is a param.
    spec = parse_tag("dummy2:batch_size=8", DIRS)
    assert (spec.kind, spec.name, spec.dir, spec.params) == ("simple", "dummy2", None, {"batch_size": "8"})


def test_ambiguity_non_dir_followed_by_word_is_a_flag():
    spec = parse_tag("dummy:dummy_2", DIRS)
    assert (spec.kind, spec.name, spec.arg_parts) == ("simple", "dummy", ("--dummy_2",))


def test_dir_name_alone_is_a_simple_tag():
    spec = parse_tag("dummy2", DIRS)
    assert (spec.kind, spec.name) == ("simple", "dummy2")


def test_slash_with_unknown_dir_is_a_plain_name():
    spec = parse_tag("nodir/model", DIRS)
    assert (spec.kind, spec.name, spec.dir) == ("simple", "nodir/model", None)


def test_without_dir_names_colon_form_is_tag_plus_flag():
    spec = parse_tag("dummy2:dummy_2")
    assert (spec.kind, spec.name, spec.arg_parts) == ("simple", "dummy2", ("--dummy_2",))


def test_whitespace_and_empty_parts_are_ignored():
    spec = parse_tag("  dummy3 : dummy_3 :: bs = 4 ", DIRS)
    assert (spec.kind, spec.dir, spec.name, spec.params) == ("dir", "dummy3", "dummy_3", {"bs": "4"})


@pytest.mark.parametrize("tag", ["", "   ", ":dummy", "batch_size=8", "dummy:=8", "dummy:--"])
def test_malformed_tags(tag):
    with pytest.raises(InvalidInputError) as info:
        parse_tag(tag, DIRS)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert "Malformed tag" in info.value.message
    assert info.value.hint and info.value.example


def test_parse_tags_defaults_to_all_and_splits_commas():
    assert [s.kind for s in parse_tags(None)] == ["all"]
    assert [s.kind for s in parse_tags([])] == ["all"]
    specs = parse_tags(["dummy,dummy2:dummy_2", "all"], DIRS)
    assert [(s.kind, s.name) for s in specs] == [("simple", "dummy"), ("dir", "dummy_2"), ("all", "all")]


# ------------------------------------------------------------------------------------------ matching
def test_simple_tag_matches_name_or_any_tag():
    spec = parse_tag("dummies", DIRS)
    assert spec.matches(model("x", ["a", "dummies"]))
    assert spec.matches(model("dummies"))
    assert not spec.matches(model("dummy", ["dummy"]))


def test_simple_tag_matches_full_name_of_dir_model():
    assert parse_tag("dummy2/dummy_2").matches(model("dummy2/dummy_2", [], "dummy2"))
    assert not parse_tag("dummy_2").matches(model("dummy2/dummy_2", [], "dummy2"))


def test_dir_tag_matches_only_that_dir():
    spec = parse_tag("dummy2:dummy_2", DIRS)
    assert spec.matches(model("dummy2/dummy_2", [], "dummy2"))
    assert not spec.matches(model("dummy3/dummy_2", [], "dummy3"))
    assert not spec.matches(model("dummy_2", [], None))


def test_dir_all_matches_every_model_of_the_dir():
    spec = parse_tag("dummy3/all", DIRS)
    assert spec.matches(model("dummy3/a", [], "dummy3"))
    assert spec.matches(model("dummy3/b", ["x"], "dummy3"))
    assert not spec.matches(model("dummy2/a", [], "dummy2"))
    assert not spec.matches(model("a", [], None))


def test_all_matches_everything():
    spec = parse_tag("all")
    assert matches(spec, "anything", [], None)
    assert matches(spec, "d/x", ["t"], "d")


def test_short_name():
    assert short_name("dummy2/dummy_2", "dummy2") == "dummy_2"
    assert short_name("dummy", None) == "dummy"
    assert short_name("other/x", "dummy2") == "other/x"


def test_append_args_is_a_literal_append():
    spec = parse_tag("dummy:batch_size=512:in=32")
    assert append_args("", spec) == " --batch_size 512 --in 32"
    assert append_args("--x 1", spec) == "--x 1 --batch_size 512 --in 32"
    assert append_args("--x 1", parse_tag("dummy")) == "--x 1"


def test_suggest_close_matches():
    assert suggest("dumy", ["dummy", "dummies", "other"])[0] == "dummy"
    assert suggest("zzz", ["dummy", "dummies"]) == []
    assert suggest("Dummy", ["dummy", "x"]) == ["dummy"]


def test_tagspec_is_frozen():
    spec = parse_tag("dummy")
    assert isinstance(spec, TagSpec)
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]
