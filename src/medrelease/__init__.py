"""medrelease: stage checkpoints -> verified, documented, published model release.

The library API mirrors the CLI; each step lives in its own subpackage:

    from medrelease.recipe.load import load_recipe
    from medrelease.merge.step import merge_release

Importing this package is cheap: heavy libraries (torch, transformers, mergekit) are imported
inside the functions that need them.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("medrelease")
except _metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
