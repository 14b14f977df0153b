"""Reasons name the change: the key path with its old and new values, the stage, the step."""

from __future__ import annotations

from medrelease.core.why import changed_paths, explain, set_paths


def test_recipe_change_names_the_key_path_and_both_values():
    old = {"merge": {"models": [{"parameters": {"weight": 0.5}}]}, "seed": 1}
    new = {"merge": {"models": [{"parameters": {"weight": 0.4}}]}, "seed": 1}
    assert changed_paths(old, new) == [("merge.models.0.parameters.weight", 0.5, 0.4)]
    assert explain("recipe", old, new) == "recipe: merge.models.0.parameters.weight 0.5 → 0.4"


def test_set_overrides_are_named_as_the_command_line_now_and_then():
    old, new = {"gates": {"rules": [{"min": 0.6}]}}, {"gates": {"rules": [{"min": 0.7}]}}
    now = set_paths(["set gates.rules.0.min=0.7", "overlay tiny.yaml sha256:ab"])
    assert now == ["gates.rules.0.min"]
    assert explain("recipe", old, new, sets_now=now) == (
        "recipe: gates.rules.0.min 0.6 → 0.7 (--set on the command line)"
    )
    assert explain("recipe", new, old, sets_then=now) == (
        "recipe: gates.rules.0.min 0.7 → 0.6 (was --set on the command line)"
    )
    # a --set of a whole list covers the keys inside it; an unrelated --set does not
    assert "(--set" in explain("recipe", old, new, sets_now=["gates.rules"])
    assert "(--set" not in explain("recipe", old, new, sets_now=["gates.batch_size"])


def test_stage_file_upstream_and_tool_changes_are_named():
    a, b = "a" * 64, "b" * 64
    assert explain("stages", {"sft": a, "base": a}, {"sft": b, "base": a}) == (
        "stages: sft content changed"
    )
    one, two = "org/m@" + "1" * 40, "org/m@" + "2" * 40
    assert explain("baselines", {"base": one}, {"base": two}) == f"baselines: base {one} → {two}"
    assert explain("files", {"tasks/x.yaml": a}, {"tasks/x.yaml": b}) == (
        "files: tasks/x.yaml changed"
    )
    assert explain("upstream", {"merge": a, "gate": a}, {"merge": a, "gate": b}) == (
        "upstream: gate outputs changed"
    )
    assert explain("tools", {"jinja2": "3.1.6"}, {"jinja2": "99.0"}) == "tools: jinja2 3.1.6 → 99.0"
    assert explain("files", {}, {"card.md.j2": a}) == "files: card.md.j2 added"


def test_many_changes_are_counted_and_long_values_cut():
    old = {f"k{i}": i for i in range(6)}
    new = {f"k{i}": i + 1 for i in range(6)}
    text = explain("recipe", old, new)
    assert text.endswith("and 3 more") and text.count("→") == 3
    long = explain("recipe", {"x": "a" * 200}, {"x": "b"})
    assert len(long) < 100 and "…" in long


def test_a_record_from_an_older_version_says_so():
    assert "older medrelease" in explain("recipe", "f" * 64, {"seed": 1})
