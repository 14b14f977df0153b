"""Model cards: recipe + manifest.json + gates/report.json -> card/README.md and quant cards.

Entry point: `medrelease.card.step.card_release`. Templates live in `cards/` (packaged copy
in `medrelease/data/cards/`); see cards/README.md.
"""
