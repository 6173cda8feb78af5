"""Every Python code block of the README runs, offline.

Hub ids in the snippets are sent to tiny local models through the one documented model map
(``$ATTNPROMPT_MODEL_MAP``, built by :func:`attnprompt.tiny.offline_model_map`), and the image
and preset files they read are made in a scratch folder. A snippet that no longer matches the code fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


@pytest.fixture(scope="module")
def offline_map(tmp_path_factory):
    from attnprompt.tiny import offline_model_map

    return json.dumps(offline_model_map(tmp_path_factory.mktemp("offline-models")))


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, offline_map, tmp_path, monkeypatch):
    reason = re.search(r"^# not run by tests/test_readme.py: (.+)$", BLOCKS[index], re.M)
    if reason:  # the one exception, stated in the block itself
        pytest.skip(reason.group(1))
    pytest.importorskip("open_clip") if "pretrained=" in BLOCKS[index] else None
    monkeypatch.setenv("ATTNPROMPT_MODEL_MAP", offline_map)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(index)
    for name in re.findall(r'"([\w.-]+\.(?:jpg|png))"', BLOCKS[index]):
        if not name.startswith("prompted"):
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(name)
    for name in re.findall(r'preset="([\w.-]+\.json)"', BLOCKS[index]):  # a preset file it reads
        Path(name).write_text(json.dumps({"format": "attnprompt-preset", "version": 1, "kind": "clip",
                                          "settings": {"enhance": 1.0}}))
    exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), {"__name__": "readme"})
