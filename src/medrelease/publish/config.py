"""The `publish:` section of a recipe (owned by the publish step).

    publish:
      tag: "v{version}"            # tag made on every repo after its release commit
      gguf_repo: "{repo}-GGUF"     # where accepted GGUF quants go
      awq_repo: "{repo}-AWQ"       # where the accepted AWQ quant goes
      private: false               # visibility of repos the step creates
      commit_message: "Release {name} {version}"

`{repo}`, `{name}` and `{version}` stand for the `release:` fields. Every key has a default,
so a recipe without `publish:` publishes with the contract's layout.
"""

from __future__ import annotations

from pydantic import field_validator

from medrelease.recipe.base import Section

PLACEHOLDERS = ("repo", "name", "version")


def _check_template(value: str) -> str:
    try:
        value.format(**dict.fromkeys(PLACEHOLDERS, "x"))
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"{value!r}: only {{repo}}, {{name}} and {{version}} may be used ({exc})"
        ) from None
    return value


class PublishConfig(Section):
    tag: str = "v{version}"
    gguf_repo: str = "{repo}-GGUF"
    awq_repo: str = "{repo}-AWQ"
    private: bool = False
    commit_message: str = "Release {name} {version}"

    @field_validator("tag", "gguf_repo", "awq_repo", "commit_message")
    @classmethod
    def _templates(cls, v: str) -> str:
        return _check_template(v)

    def render(self, template: str, *, repo: str, name: str, version: str) -> str:
        return template.format(repo=repo, name=name, version=version)
