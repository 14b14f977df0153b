"""`medrelease demo`: a complete offline release of tiny stand-in models.

1. build (or reuse) tiny stand-in stage checkpoints that really differ in behaviour,
2. start a local Hub-API server on 127.0.0.1,
3. run the whole release on the embedded demo recipe, publishing to that server,
4. say where everything is and show the gate table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.data import packaged
from medrelease.pipeline.recipes import load_recipe
from medrelease.pipeline.run import ReleaseRun, run_release
from medrelease.pipeline.steps import PublishOptions, ReleaseOptions
from medrelease.recipe.loaded import LoadedRecipe

DEMO_RECIPE = packaged("demo", "recipe.yaml")
# Accepted only by the demo's own loopback server; not a credential anywhere else.
DEMO_TOKEN = "hf_medreleaseDemoTokenForLocalHubOnly"


@dataclass
class DemoResult:
    run: ReleaseRun
    loaded: LoadedRecipe
    workdir: Path
    hub_url: str
    hub_root: Path

    def summary(self) -> dict[str, Any]:
        r = self.loaded.recipe
        root = self.workdir / r.release.name
        return {
            **self.run.summary(),
            "release_folder": str(root),
            "hub_url": self.hub_url,
            "hub_root": str(self.hub_root),
            "repos": [r.release.repo, f"{r.release.repo}-GGUF"],
        }


@contextlib.contextmanager
def _demo_environment(url: str) -> Iterator[None]:
    """Point huggingface_hub at the local server, with the demo's token, for the demo only."""
    from medrelease.localhub.client import use_local_hub

    saved = os.environ.get("HF_TOKEN")
    os.environ["HF_TOKEN"] = DEMO_TOKEN
    try:
        with use_local_hub(url):
            yield
    finally:
        if saved is None:
            os.environ.pop("HF_TOKEN", None)
        else:
            os.environ["HF_TOKEN"] = saved


def _serve_demo_hub(workdir: Path, hub_root: Path) -> Any:
    """The demo's local Hub, on the port it had last time when that port is free.

    Where a release is published (the endpoint URL) is an input of the publish step: the
    same port makes a second demo run, or a run in a copy of its workdir, publish to the same
    place, so that every step is skipped, publish included."""
    from medrelease.localhub import serve

    port_file = workdir / "local-hub.port"
    try:
        port = int(port_file.read_text().strip())
    except (OSError, ValueError):
        port = 0
    try:
        hub = serve(hub_root, port=port, tokens={DEMO_TOKEN: "medrelease-demo"})
    except OSError:  # taken by something else now: any free port (publish then runs again)
        hub = serve(hub_root, tokens={DEMO_TOKEN: "medrelease-demo"})
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.write_text(f"{hub.url.rsplit(':', 1)[-1]}\n")
    return hub


def run_demo(
    workdir: Path, *, reporter: Reporter | None = None, hub_root: Path | None = None
) -> DemoResult:
    from medrelease.demo.standins import build_demo_stages

    reporter = reporter or Reporter()
    workdir = workdir.resolve()
    reporter.info(
        "[bold]1/3[/bold] building tiny stand-in stage checkpoints (cached after the first run)"
    )
    stages = build_demo_stages(workdir / "standins", reporter=reporter)
    loaded = load_recipe(DEMO_RECIPE, overrides={k: str(v) for k, v in stages.items()})
    hub_root = hub_root or workdir / "local-hub"
    reporter.info("[bold]2/3[/bold] starting a local Hub-compatible server on 127.0.0.1")
    with _serve_demo_hub(workdir, hub_root) as hub, _demo_environment(hub.url):
        reporter.info(f"      serving {hub.url} from {hub_root}")
        reporter.info(
            "[bold]3/3[/bold] running the release: merge → gate → quantize → card → publish"
        )
        # the demo's stages are stand-ins by design: published with the banner saying so
        options = ReleaseOptions(
            publish=PublishOptions(endpoint=hub.url, allow_overridden_stages=True)
        )
        run = run_release(loaded, workdir=workdir, reporter=reporter, options=options)
        return DemoResult(run, loaded, workdir, hub.url, hub_root)


def demo_sweep_recipe(workdir: Path, reporter: Reporter) -> LoadedRecipe:
    """`medrelease demo --sweep`: the demo recipe on the stand-ins (built or reused under
    `workdir`), with the overlay that gives it a `sweep:` section (data/demo/sweep.yaml)."""
    from medrelease.core.data import packaged
    from medrelease.demo.standins import build_demo_stages

    stages = build_demo_stages(workdir / "standins", reporter=reporter)
    return load_recipe(
        DEMO_RECIPE,
        overrides={k: str(v) for k, v in stages.items()},
        overlays=[packaged("demo", "sweep.yaml")],
    )
