"""`medrelease sweep`: choose the merge by a gated search (Optuna), on one machine or Ray.

Each trial merges one point of the `sweep.space` with the merge step itself (in the sweep's
scratch workdir, never the release's merged/) and evaluates it with the gate's own code on the
search split, items disjoint from those the release gate reports. See docs/sweep.md.
"""
