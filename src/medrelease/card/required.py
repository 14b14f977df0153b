"""The two sections no card may leave out: intended use and medical safety.

They are rendered here (not by the template) and handed to templates as
`sections.intended_use` and `sections.medical_safety`; after rendering, the card must contain
both verbatim. A template, block override or recipe that drops or edits them is refused, so
a medical model can never be published with a card that omits its limits.
"""

from __future__ import annotations

from medrelease.card.errors import CardTemplateError
from medrelease.card.markdown import tidy_markdown

MEDICAL_SAFETY = """\
This model is a research artifact. It is **not a medical device** and has not been cleared
or approved by any regulator for clinical use. Its outputs can be wrong, incomplete,
out of date or biased, and may sound confident when they are wrong.

- Do not use it to diagnose, treat, triage or prevent any condition, or to decide on
  medication or dosing, without review by a qualified clinician.
- Do not rely on it in emergencies: call local emergency services.
- Benchmark scores in this card measure multiple-choice and instruction-following skills on
  public test sets; they do not show safety or effectiveness in clinical practice.
- Do not enter identifiable patient data into systems that are not approved for it."""

DEFAULT_INTENDED_USE = """\
Research on medical language models: evaluation, comparison, and further fine-tuning by
teams able to assess its outputs; drafting and summarising medical text for review by a
qualified professional; education about how such models behave."""

DEFAULT_OUT_OF_SCOPE = """\
Any use where the model's output reaches a patient or drives a clinical decision without
review by a qualified clinician; use as a substitute for professional medical advice;
use in languages or domains it was not evaluated on."""

DEFAULT_MARK = "_(medrelease's default text: the publisher of this release did not write one.)_"

REQUIRED = ("intended_use", "medical_safety")
HEADINGS = {"intended_use": "## Intended use", "medical_safety": "## Medical safety"}


def required_sections(
    intended_use: str | None, out_of_scope: str | None, safety_notes: str | None
) -> dict[str, str]:
    # text the publisher did not write is said to be the default, never passed off as theirs
    use = intended_use.strip() if intended_use else f"{DEFAULT_INTENDED_USE}\n\n{DEFAULT_MARK}"
    scope = out_of_scope.strip() if out_of_scope else f"{DEFAULT_OUT_OF_SCOPE}\n\n{DEFAULT_MARK}"
    safety = MEDICAL_SAFETY + (f"\n\n{safety_notes.strip()}" if safety_notes else "")
    # tidied like the whole card is, so the check after rendering can match verbatim
    return {
        "intended_use": tidy_markdown(
            f"{HEADINGS['intended_use']}\n\n{use}\n\n### Out-of-scope use\n\n{scope}\n"
        ),
        "medical_safety": tidy_markdown(f"{HEADINGS['medical_safety']}\n\n{safety}\n"),
    }


def defaulted(intended_use: str | None, out_of_scope: str | None) -> list[str]:
    """The recipe keys whose text the card took from the defaults (for a warning)."""
    return [
        f"card.{key}"
        for key, value in (("intended_use", intended_use), ("out_of_scope", out_of_scope))
        if not value
    ]


def check_required(rendered: str, sections: dict[str, str], template: str) -> None:
    for key in REQUIRED:
        if sections[key] not in rendered:
            raise CardTemplateError(
                f"the rendered card does not contain the required {key.replace('_', ' ')} section",
                where=template,
                hint=f"put {{{{ sections.{key} }}}} in the template (a block override must "
                "keep it too); it cannot be removed or edited, only extended with "
                "card.intended_use / card.out_of_scope / card.safety_notes",
            )
