"""Tiny real models built on the spot, for the test suite, the demo and benchmarks.

Nothing here downloads: tokenizers are trained on a small synthetic corpus and the models
are randomly initialized (then optionally nudged or trained) with fixed seeds.
"""
