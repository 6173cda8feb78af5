"""Evaluation conditions as data: which image the target sees and what text it is asked.

A condition is a mask source (none, the CLIP auxiliary or the LVLM auxiliary) and a text template
with ``{question}`` (the benchmark's prompt) and, for self-reflection, ``{previous}`` (the target's
own answer under the ``original`` condition). The text prompts are the official repository's
(see METHOD.md). Adding a condition is one :func:`register_condition` call.

A masked condition takes mask settings after colons: ``api-clip:blur`` (a prompt style from
:data:`attnprompt.styles.STYLES`), ``api-lvlm:crop:margin=0.5`` (a style parameter),
``api-clip:kernel=1:layers=0..5`` (any :class:`~attnprompt.config.MaskConfig` field); the
condition's name is the whole string, so several variants run side by side.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import AttnPromptError

__all__ = ["Condition", "CONDITIONS", "register_condition", "get_conditions", "parse_condition", "MASKS"]

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
        settings: mask settings over the run's preset (``(("style", "blur"),)``...), as
            ``(MaskConfig field, value)`` pairs; empty for the preset as it is.
    """

    name: str
    mask: str | None = None
    template: str = "{question}"
    description: str = ""
    combine: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def overrides(self) -> dict[str, Any]:
        """The mask settings as keyword arguments of :meth:`attnprompt.config.MaskConfig.replace`."""
        return dict(self.settings)

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
    unknown = [n for n in wanted if n.split(":", 1)[0] not in CONDITIONS]
    if unknown:
        raise AttnPromptError(f"unknown condition(s) {', '.join(unknown)}; known: {', '.join(CONDITIONS)} "
                              "(masked ones take :STYLE and :KEY=VALUE settings, e.g. api-clip:blur)")
    if len(set(wanted)) != len(wanted):
        raise AttnPromptError("a condition is listed twice")
    return [parse_condition(n) for n in wanted]


def parse_condition(name: str) -> Condition:
    """A registered condition, or one with mask settings: ``BASE:STYLE:KEY=VALUE...``.

    A part without ``=`` names a prompt style; ``KEY=VALUE`` sets a :class:`MaskConfig` field or,
    failing that, a parameter of the condition's style. Values parse as in the CLI (numbers,
    true/false/none, layer ranges for ``layers``)."""
    from ..config import MaskConfig, parse_layers, parse_value
    from ..styles import STYLES

    base, *parts = [p.strip() for p in name.split(":")]
    if base not in CONDITIONS:
        raise AttnPromptError(f"unknown condition {base!r}; known: {', '.join(CONDITIONS)}")
    condition = CONDITIONS[base]
    if not parts:
        return condition
    if condition.mask is None:
        raise AttnPromptError(f"condition {name!r}: {base} shows the original image, so it takes no mask settings")
    fields = {f.name for f in dataclasses.fields(MaskConfig)} - {"style_params"}
    settings: dict[str, Any] = dict(condition.settings)
    params: dict[str, Any] = dict(settings.pop("style_params", {}) or {})
    for part in parts:
        key, sep, text = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            if key not in STYLES:
                raise AttnPromptError(f"condition {name!r}: unknown style {key!r}; styles: {', '.join(STYLES)}")
            settings["style"] = key
        elif not key or not text.strip():
            raise AttnPromptError(f"condition {name!r}: bad setting {part!r}; use KEY=VALUE")
        elif key in fields:
            settings[key] = parse_layers([text]) if key == "layers" else parse_value(text.strip())
        else:
            params[key] = parse_value(text.strip())
    if params:
        settings["style_params"] = params
    try:  # fail now, with the condition's name, rather than after the first answers
        MaskConfig().replace(**{k: v for k, v in settings.items() if k != "style_params" or "style" in settings})
    except AttnPromptError as exc:
        raise AttnPromptError(f"condition {name!r}: {exc}") from None
    frozen = tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v) for k, v in settings.items()))
    return dataclasses.replace(condition, name=name, settings=frozen,
                               description=f"{condition.description} ({', '.join(parts)})")
