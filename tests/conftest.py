"""Shared test fixtures: the official golden data (read from ../shared) and tiny local models."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("ATTNPROMPT_GOLDEN", REPO.parent / "shared" / "fixtures" / "api_clip_golden"))


def skip_or_fail_in_ci(missing: str, ci_reason: str, *, module: bool = False) -> None:
    """Skip where ``missing`` is absent; fail under CI (``CI`` set), which has every extra and ../shared."""
    if os.environ.get("CI"):
        pytest.fail(f"{missing} missing ({ci_reason})", pytrace=False)
    pytest.skip(f"{missing} not found", allow_module_level=module)


def import_or_fail_in_ci(module: str, missing: str, ci_reason: str) -> Any:
    """``pytest.importorskip`` that fails under CI instead of skipping (for module level)."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - depends on the environment
        skip_or_fail_in_ci(missing, ci_reason, module=True)


def _require_golden() -> Path:
    if not (GOLDEN / "manifest.json").is_file():
        skip_or_fail_in_ci(f"golden fixtures at {GOLDEN}", "CI must have ../shared")
    return GOLDEN


@pytest.fixture(scope="session")
def golden() -> Path:
    return _require_golden()


@pytest.fixture(scope="session")
def golden_manifest(golden: Path) -> dict:
    return json.loads((golden / "manifest.json").read_text())


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP saved like a hub checkpoint (4 blocks, 32 px, 8 px patches)."""
    from attnprompt.testing import make_tiny_clip_dir

    return make_tiny_clip_dir(tmp_path_factory.mktemp("tiny_clip"), layers=4, image_size=32, patch_size=8)


@pytest.fixture(scope="session")
def tiny_prompter(tiny_clip_dir: Path):
    from attnprompt import Prompter

    return Prompter(str(tiny_clip_dir), device="cpu")


def open_clip_available() -> bool:
    try:
        import open_clip  # noqa: F401
    except Exception:
        return False
    return True


requires_open_clip = pytest.mark.skipif(
    not open_clip_available() and not os.environ.get("CI"),
    reason="open_clip_torch/torchvision not installed (pip install 'attnprompt[open_clip]')",
)
