"""report.html as headless Chromium builds it (tools/screenshot_report.py's checks): each explanation's picture
first, its evidence folded, floors and settings as tables, relative floor bands. Skips without chromium."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from reports_fixture import make_report

from percepiano_parity.core.findings import Severity
from percepiano_parity.reports.html import render_html

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import screenshot_report  # noqa: E402

BROWSER = screenshot_report.find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="needs chromium (apt-get install -y chromium)")


def test_the_report_page_shows_what_it_should_in_a_real_browser(tmp_path):
    page = render_html(make_report(), Severity.WARNING)
    good = tmp_path / "good.html"
    good.write_text(page)
    # the same page with its evidence unfolded and its picture moved below the facts: the checks must notice
    card_start = page.index('id="expl-pp-layernorm-output"')
    figure = page[page.index("<figure>", card_start):page.index("</figure>", card_start) + len("</figure>")]
    broken_page = page.replace(figure, "", 1).replace("</dl>", "</dl>" + figure, 1)
    broken_page = broken_page.replace('<details class="evidence">', '<details class="evidence" open>')
    broken = tmp_path / "broken.html"
    broken.write_text(broken_page)

    assert screenshot_report.dom_problems(screenshot_report.browser_dom(BROWSER, good, tmp_path / "p1")) == []
    problems = screenshot_report.dom_problems(screenshot_report.browser_dom(BROWSER, broken, tmp_path / "p2"))
    assert any("picture does not come first" in p for p in problems)
    assert any("not folded" in p for p in problems)
