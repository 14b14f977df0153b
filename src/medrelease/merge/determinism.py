"""Same recipe, same bytes: take every choice mergekit makes from an unordered collection.

mergekit 0.1.5 collects the models a config names into a `set` (`referenced_models()`) and
uses the first element of that set wherever the config leaves a choice open: the donor of
`config.json`, of the copied tokenizer files and of the tag-along files when there is no
`base_model`, the tokenizer "base" (`tokenizer_source: base|union` without `base_model`),
the order in which a union tokenizer appends new tokens, and the tie-break of
`chat_template: auto`. Set order follows string hashes, which change with PYTHONHASHSEED:
one recipe gave a different `merged/` per process.

We hand mergekit a `MergeConfiguration` whose `referenced_models()` lists the same models in
the order the config names them (base_model, then models / slice sources / module inputs as
written). Only the order changes, never the members, so every tensor mergekit computes is the
one `mergekit-yaml` computes; the open choices become "the first model the recipe names".
Settings whose meaning depends on that choice in plain mergekit (so the published
`mergekit_config.yml` would not reproduce) are refused at validation (config_check.py).
"""

from __future__ import annotations

from typing import Any


def ordered_merge_configuration(config: dict[str, Any]) -> Any:
    """mergekit's MergeConfiguration for `config`, with referenced_models() in config order."""
    from mergekit.config import MergeConfiguration

    class OrderedMergeConfiguration(MergeConfiguration):
        def referenced_models(self) -> list[Any]:
            models: list[Any] = []

            def add(model: Any) -> None:
                if model is not None and model not in models:
                    models.append(model)

            def add_block(block: Any) -> None:
                for model_in in block.models or []:
                    add(model_in.model)
                for s in block.slices or []:
                    for src in s.sources:
                        add(src.model)

            add(self.base_model)
            add_block(self)
            for module in (self.modules or {}).values():
                add_block(module)
            # never drop a member mergekit's own set has (a place this walk does not know):
            # append it in a fixed order rather than hash order
            rest = [m for m in super().referenced_models() if m not in models]
            return models + sorted(rest, key=str)

    return OrderedMergeConfiguration.model_validate(config)
