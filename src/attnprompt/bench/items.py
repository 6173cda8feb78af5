"""The unit of every benchmark: one question about one image, with its references."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Item", "Score"]


@dataclass(frozen=True)
class Item:
    """One benchmark question.

    Attributes:
        id: unique within its benchmark (a string, stable across runs: answers are keyed by it).
        image: path of the image file.
        question: the exact text the target model is given (multiple-choice questions include
            their options and the answer instruction, as the benchmark's official prompt does):
            ``query + instruction`` for items made by :meth:`asking`.
        answers: the references: 10 human answers (TextVQA, VizWiz), ``["yes"]``/``["no"]``
            (POPE, MME), an option letter (MMBench), a reference answer (MM-Vet, LLaVA-Bench).
        category: the key of the per-category breakdown (MME subtask, MM-Vet capabilities joined
            by ``","``, LLaVA-Bench category, POPE split, MMBench category), or ``None``.
        meta: what a scorer or judge needs besides (MMBench: ``index``, ``circular`` group id,
            ``options``; MME: ``pair`` (image id shared by its two questions); LLaVA-Bench:
            ``context`` (the caption given to the judge)).
        query: what the auxiliary model is asked and a judge is shown: the question (with a
            multiple-choice question's options) without the answer-format instruction; the
            whole ``question`` when not given.
        instruction: the answer-format instruction appended for the target (``prompt_suffix``).
    """

    id: str
    image: str
    question: str
    answers: tuple[str, ...]
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    query: str = field(default="", compare=False)
    instruction: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.query:
            object.__setattr__(self, "query", self.question)

    @classmethod
    def asking(cls, id: str, image: str, query: str, instruction: str, answers: tuple[str, ...],
               category: str | None = None, meta: dict[str, Any] | None = None) -> "Item":
        """An item whose target prompt is ``query + instruction``."""
        return cls(id, image, query + instruction, answers, category, dict(meta or {}), query, instruction)


@dataclass
class Score:
    """A benchmark's score for one condition.

    Attributes:
        overall: the headline number, on the benchmark's own scale (accuracy in %, MME points...).
        per_category: the same per category.
        units: the per-unit scores behind ``overall`` for paired comparisons, keyed by the unit the
            benchmark scores (an item id; an MMBench circular group; an MME image pair for acc+).
        extra: other official figures (POPE precision/recall/F1/yes-ratio, MME acc and acc+...).
    """

    overall: float
    per_category: dict[str, float] = field(default_factory=dict)
    units: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
