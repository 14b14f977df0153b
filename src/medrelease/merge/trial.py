"""A sweep trial's merge: the release merge's own mergekit run and output settings, without the
release-grade checks and records around them.

`medrelease merge` checks its inputs (preflight, NaN/Inf scan, hashes), verifies the merged
folder (it loads, its tokenizer agrees, every weight is finite; a second full read), writes the
portable mergekit config and a manifest record. A sweep merges the same inputs dozens of times
into a scratch folder that is deleted after the trial, so:

* `check_trial_inputs`: the inputs are checked once per study, by the merge step's own
  preflight and scan (a NaN in a stage still stops the sweep before any trial);
* `merge_trial`: a trial runs `run_mergekit` and `apply_output_settings`, the same two calls,
  with the same arguments, that `merge_release` makes. The adopted recipe's `medrelease merge`
  therefore writes these weights byte for byte (tested: same weights digest) and then does the
  checks a release needs;
* `FinalizedFiles`: mergekit gives every trial of a study the same tokenizer and config files,
  and the output settings (loading and saving the tokenizer: 0.2 s of a 6 s trial on
  SmolLM2) make the same files of them. What they made is kept, by the content of the files
  they read and the settings they apply, and written into the next trial's folder.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.hashing import HashCache
from medrelease.core.paths import ReleasePaths
from medrelease.merge import preflight
from medrelease.merge.ambiguity import check_auto_chat_template
from medrelease.merge.config_check import resolve_merge_config
from medrelease.merge.finalize import MERGEKIT_README, finalize_output
from medrelease.merge.inputs import needed_stages
from medrelease.merge.step import apply_output_settings, preflight_stages, run_mergekit
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.stages.folders import ensure_ready
from medrelease.stages.sources import locate_stage


def check_trial_inputs(loaded: LoadedRecipe, workdir: Path, reporter: Reporter) -> dict[str, Path]:
    """The merge's stages located, made ready and checked as `medrelease merge` checks them
    (once per study); returns stage name -> folder for `merge_trial`."""
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    hashes = HashCache(paths.hash_cache)
    stages = {name: locate_stage(loaded, name) for name in needed_stages(loaded)}
    facts = preflight_stages(loaded, stages, paths, [], reporter)
    for stage in stages.values():  # dependency order (bases first)
        ensure_ready(loaded, stage, paths, hashes=hashes, reporter=reporter, seen=stages)
    folders = {name: stage.path for name, stage in stages.items()}
    check_auto_chat_template(loaded, folders)
    plain = {n: (s, facts[n]) for n, s in stages.items() if s.kind != "adapter" and n in facts}
    preflight.wait_for_input_hashes(preflight.check_finite_and_hash(plain, hashes))
    hashes.save()
    return folders


def merge_trial(loaded: LoadedRecipe, folders: dict[str, Path], out: Path) -> None:
    """mergekit into `out` (replaced), then the recipe's output settings: the merged folder a
    release of this merge block would get, unverified."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    resolved = resolve_merge_config(loaded.recipe.merge, {n: str(p) for n, p in folders.items()})
    run_mergekit(resolved, out, seed=loaded.recipe.seed, reporter=Reporter(quiet=True))
    apply_output_settings(loaded, folders, out, finalize=FINALIZED.finalize)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# mergekit's files that name the trial's own parameters; the output settings never read them
PER_TRIAL = ("mergekit_config.yml", MERGEKIT_README)


class FinalizedFiles:
    """`finalize_output`, or what it made of the same files with the same settings before."""

    def __init__(self, size: int = 4):
        self._made: dict[str, tuple[dict[str, bytes], list[str]]] = {}
        self._size = size

    def finalize(self, out: Path, **settings: Any) -> dict[str, Any]:
        before = _settings_files(out)
        h = hashlib.sha256(repr(sorted((k, repr(v)) for k, v in settings.items())).encode())
        for name, data in sorted(before.items()):
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        key = h.hexdigest()
        made = self._made.get(key)
        if made is not None:
            files, removed = made
            for name in removed:
                (out / name).unlink(missing_ok=True)
            for name, data in files.items():
                if before.get(name) != data:
                    (out / name).write_bytes(data)
            return {}  # a trial keeps no record of what was set
        present = [n for n in PER_TRIAL if (out / n).exists()]
        applied = finalize_output(out, **settings)
        after = _settings_files(out)
        # what it deleted (mergekit's README: the card is ours)
        removed = sorted(set(before) - set(after)) + [n for n in present if not (out / n).exists()]
        self._made[key] = (after, removed)
        while len(self._made) > self._size:
            self._made.pop(next(iter(self._made)))
        return applied


def _settings_files(out: Path) -> dict[str, bytes]:
    """The folder's files the output settings may read or write: all but weights and the
    trial's own mergekit records."""
    return {
        p.name: p.read_bytes()
        for p in sorted(out.iterdir())
        if p.is_file() and not p.name.endswith(WEIGHT_SUFFIXES) and p.name not in PER_TRIAL
    }


FINALIZED = FinalizedFiles()  # per process: a sweep's trials, local or on a Ray worker
