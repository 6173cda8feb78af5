"""eval's report.html: every metric per condition, a chart with the CIs, and the changed items."""

from __future__ import annotations

import html
import re
from pathlib import Path

from tests.conftest import import_or_fail_in_ci

import_or_fail_in_ci("openai", "the openai client (pip install 'openai>=1.0')", "CI installs the test extra")

from attnprompt.bench.run import evaluate  # noqa: E402
from attnprompt.testing_server import FakeChatServer  # noqa: E402
from tests.test_eval import QUESTIONS, Scripted, _make_pope, _target  # noqa: E402


def test_report_html(tmp_path: Path, tiny_clip_dir: Path) -> None:
    root = tmp_path / "pope"
    originals = _make_pope(root)
    out = tmp_path / "run"
    with FakeChatServer(responder=Scripted(originals)) as server:
        result = evaluate("pope", root, _target(server), "original,api-clip", out, clip=str(tiny_clip_dir),
                          data_options={"splits": ["random"]}, progress=False, n_boot=200)
    page = (out / "report.html").read_text()
    # every metric of the benchmark, per condition (one row per metric, one column per condition)
    from attnprompt.bench.report_html import _metrics

    metrics = _metrics(result["conditions"]["original"])
    assert {"accuracy (%)", "precision (%)", "recall (%)", "F1 (%)", "yes-ratio (%)", "random: F1 (%)"} <= set(metrics)
    for metric in metrics:
        assert f"<tr><td>{html.escape(metric)}</td>" in page, metric
    assert "<tr><th>metric</th><th>original</th><th>api-clip</th></tr>" in page

    def row(name: str) -> list[str]:
        return re.findall(r"<td>(.*?)</td>", re.search(rf"<tr><td>{re.escape(name)}</td>(.*?)</tr>", page).group(1))

    assert row("overall") == ["60.00", "100.00"]
    assert row("yes-ratio (%)") == ["100.00", "60.00"] and row("precision (%)") == ["60.00", "100.00"]
    assert row("diff to baseline [95% CI]")[0] == "baseline" and row("diff to baseline [95% CI]")[1].startswith("+40.00 [")
    assert row("changed (better / worse)") == ["", "2 (2 / 0)"]
    assert (out / "report_chart.png").stat().st_size > 1000
    # the changed items: the two "no" questions the original answered wrongly, with both images
    assert "api-clip: 2 of 5 items changed against original" in page
    changed_questions = [q for _, q, label in QUESTIONS if label == "no"]
    for q in changed_questions:
        assert q in page
    assert page.count("truth: <b>no</b>") == 2 and "Yes, there is." in page
    sources = re.findall(r'<img src="(report/[^"]+)"', page)
    assert len(sources) == 4 and all((out / s).is_file() for s in sources)
