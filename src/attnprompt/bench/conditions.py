"""Evaluation conditions as data: which image the target sees and what text it is asked.

A condition is a mask source (none, the CLIP auxiliary or the LVLM auxiliary) and a text template
with ``{question}`` (the benchmark's prompt) and, for self-reflection, ``{previous}`` (the target's
own answer under the ``original`` condition). The text prompts are the official repository's
(see METHOD.md). Adding a condition is one :func:`register_condition` call.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AttnPromptError

__all__ = ["Condition", "CONDITIONS", "register_condition", "get_conditions", "MASKS"]

MASKS = (None, "clip", "lvlm")
COMBINES = (None, "confident")

STEP_BY_STEP = "{question} Let's think again step by step."
MASKED_HINT = "{question} (Hint: The answer is related to the unmasked visible regions.)"
SELF_REFLECTION = ("{question} \n Your previous answer is {previous}. Evaluate the quality of the answer and "
                   "provide a new answer.")


@dataclass(frozen=True)
class Condition:
    """How the target is asked.

    Attributes:
        name: the condition's name in reports.
        mask: ``None`` (original image), ``"clip"`` or ``"lvlm"`` (which auxiliary annotates it).
        template: the text, with ``{question}`` and optionally ``{previous}``.
        description: one line for ``--help`` and reports.
        combine: ``None``, or ``"confident"``: the target answers on the original and on the
            annotated image, and the annotated image's answer is kept only where the target is at
            least as confident of it (mean token log-probability) as of the original's; needs a
            target that reports confidences (``answer_scored``, a local model).
    """

    name: str
    mask: str | None = None
    template: str = "{question}"
    description: str = ""
    combine: str | None = None

    def __post_init__(self) -> None:
        if self.mask not in MASKS:
            raise AttnPromptError(f"condition {self.name!r}: mask must be one of None, 'clip', 'lvlm'")
        if "{question}" not in self.template:
            raise AttnPromptError(f"condition {self.name!r}: the template needs {{question}}")
        if self.combine not in COMBINES:
            raise AttnPromptError(f"condition {self.name!r}: combine must be one of {COMBINES}")
        if self.combine and self.mask is None:
            raise AttnPromptError(f"condition {self.name!r}: combining answers needs a mask")

    @property
    def reflects(self) -> bool:
        """Needs the target's answer under ``original``."""
        return "{previous}" in self.template

    def prompt(self, question: str, previous: str | None = None) -> str:
        if self.reflects and previous is None:
            raise AttnPromptError(f"condition {self.name!r} needs the answer under 'original'")
        return self.template.replace("{question}", question).replace("{previous}", previous or "")


CONDITIONS: dict[str, Condition] = {}


def register_condition(condition: Condition) -> Condition:
    """Add (or replace) a condition in the registry."""
    CONDITIONS[condition.name] = condition
    return condition


for _c in (
    Condition("original", None, "{question}", "the image and question as they are"),
    Condition("api-clip", "clip", "{question}", "attention prompt from the CLIP auxiliary"),
    Condition("api-lvlm", "lvlm", "{question}", "attention prompt from the LVLM auxiliary"),
    Condition("step-by-step", None, STEP_BY_STEP, "text prompt: think again step by step"),
    Condition("masked-hint", "clip", MASKED_HINT, "CLIP attention prompt plus the masked-region hint"),
    Condition("self-reflection", None, SELF_REFLECTION, "text prompt: evaluate your previous answer"),
    Condition("api-clip+self-reflection", "clip", SELF_REFLECTION,
              "CLIP attention prompt plus self-reflection (the paper's combination)"),
    Condition("api-lvlm+self-reflection", "lvlm", SELF_REFLECTION, "LVLM attention prompt plus self-reflection"),
    Condition("api-clip-or-original", "clip", "{question}", "the CLIP-prompted answer where the target is at least "
              "as confident as on the original image, else the original answer", combine="confident"),
    Condition("api-lvlm-or-original", "lvlm", "{question}", "the LVLM-prompted answer where the target is at least "
              "as confident as on the original image, else the original answer", combine="confident"),
):
    register_condition(_c)


def get_conditions(names: str | list[str]) -> list[Condition]:
    """Conditions by name (a comma-separated string or a list), in the given order."""
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not wanted:
        raise AttnPromptError("no conditions given")
    unknown = [n for n in wanted if n not in CONDITIONS]
    if unknown:
        raise AttnPromptError(f"unknown condition(s) {', '.join(unknown)}; known: {', '.join(CONDITIONS)}")
    if len(set(wanted)) != len(wanted):
        raise AttnPromptError("a condition is listed twice")
    return [CONDITIONS[n] for n in wanted]
