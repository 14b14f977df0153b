"""Regression gates: `medrelease gate RECIPE` (library: `gate.step.gate_release`).

Evaluates `<workdir>/<release>/merged` and the recipe's baseline stages with
lm-evaluation-harness (as a library), applies the recipe's rules and writes
`gates/report.json` + `steps.gate` in the manifest; exit code 4 when a rule fails.

Modules: `config` (the `gates:` schema), `presets` (preset -> lm-eval task configs, local
data overrides), `tasks` (resolution + fingerprints), `runner` (one lm-eval call, metric and
sample extraction), `cache` (per model/task/settings), `rules` (floors, max_drop, min_gain,
paired bootstrap), `step` (the step), `table` (terminal view), `evaluate` (`evaluate_lm` for
an already-built lm-eval model, used by quantize), `nltk_data` (IFEval's punkt_tab offline).

Shipped lm-eval tasks live in `medrelease/data/tasks/` (medical safety task, multi-answer
MCQ metrics, the mmlu_medical group).
"""
