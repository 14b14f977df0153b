"""medrelease: stage checkpoints -> verified, documented, published model release.

The library API mirrors the CLI; each step lives in its own subpackage:

    from medrelease.pipeline.recipes import load_recipe
    from medrelease.merge.step import merge_release

Importing this package is cheap: heavy libraries (torch, transformers, mergekit) are imported
inside the functions that need them.
"""

# The single source of the version (pyproject.toml reads it): a literal, because looking it up
# with importlib.metadata costs a third of `medrelease --help`'s start-up.
__version__ = "0.1.0"
