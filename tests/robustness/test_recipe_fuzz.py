"""Property-based: any recipe validates or gives a clear error (exit 2), never a traceback."""

from __future__ import annotations

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import run_cli

KEYS = [
    "release", "stages", "merge", "output", "seed", "gates", "quantize", "card", "publish",
    "name", "version", "repo", "license", "path", "hub", "adapter", "base", "models", "model",
    "merge_method", "base_model", "parameters", "weight", "density", "dtype", "slices",
    "chat_template", "generation_config", "do_sample", "tasks", "rules", "allow_pickle",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-2, 2, allow_nan=False),
    st.text(string.ascii_letters + "/._-@ ", max_size=20),
    st.sampled_from(["ties", "linear", "slerp", "base", "sft", "org/model", "./x", "float32"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=4),
    ),
    max_leaves=20,
)
recipes = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)

VALID_BASE = {
    "release": {"name": "x", "version": "1", "repo": "o/x", "license": "mit"},
    "stages": {"base": "./a", "sft": "./b"},
    "merge": {"merge_method": "linear", "models": [{"model": "base"}, {"model": "sft"}],
              "parameters": {"weight": 0.5}},
}  # fmt: skip


def check(tmp_path_factory, text: str) -> None:
    import contextlib
    import io

    p = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    p.write_text(text)
    err = io.StringIO()
    from medrelease.core import console

    # restore what it was: None follows sys.stderr; reading `.file` would pin the stream of
    # this moment (pytest's capture) for every later test
    old = console.err_console._file
    console.err_console.file = err
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = run_cli("validate", p)
    finally:
        console.err_console.file = old
    assert code in (0, 2), (code, text, err.getvalue())
    if code == 2:
        out = err.getvalue()
        assert out.startswith("error:"), out
        assert "Traceback" not in out and "internal error" not in out, out


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(recipe=recipes)
def test_random_recipes_never_crash(tmp_path_factory, recipe):
    check(tmp_path_factory, yaml.safe_dump(recipe))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(section=st.sampled_from(["release", "stages", "merge"]), value=values)
def test_mutated_valid_recipe_never_crashes(tmp_path_factory, section, value):
    recipe = {**VALID_BASE, section: value}
    check(tmp_path_factory, yaml.safe_dump(recipe))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes(tmp_path_factory, text):
    check(tmp_path_factory, text)
