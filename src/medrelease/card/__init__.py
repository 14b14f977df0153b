"""Model cards: recipe + manifest.json + gates/report.json -> card/README.md and quant cards.

Entry point: `medrelease.card.step.card_release`. Templates live in `cards/` (the package
reaches them through its `data/cards` link); see cards/README.md.
"""
