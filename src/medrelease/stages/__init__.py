"""Stage checkpoints: what identifies them (and, in time, how they are resolved and checked).

Below the steps: merge, gate, quantize and card all read stages, none of them owns them.
"""
