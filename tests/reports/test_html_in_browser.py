"""report.html as headless Chromium builds it (tools/screenshot_report.py's checks): each explanation's picture
first, its evidence folded, floors and settings as tables, relative floor bands; the machine paths a page shows
are found in what the browser renders.

Without chromium the tests skip, unless PARITY_REQUIRE_BROWSER=1 (set by .ci/run, which installs Debian's
chromium first): then they fail, so a silent skip cannot come back in CI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from reports_fixture import make_report

from percepiano_parity.core.findings import Severity
from percepiano_parity.reports.html import render_html

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import screenshot_report  # noqa: E402

REQUIRE = "PARITY_REQUIRE_BROWSER"


@pytest.fixture(scope="module")
def browser() -> str:
    found = screenshot_report.find_browser()
    if found is None:
        message = "needs chromium (apt-get install -y chromium)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{REQUIRE}=1 and no chromium on PATH: {message}", pytrace=False)
        pytest.skip(message)
    return found


def test_the_report_page_shows_what_it_should_in_a_real_browser(browser, tmp_path):
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

    dom = screenshot_report.browser_dom(browser, good, tmp_path / "p1")
    assert screenshot_report.dom_problems(dom) == []
    problems = screenshot_report.dom_problems(screenshot_report.browser_dom(browser, broken, tmp_path / "p2"))
    assert any("picture does not come first" in p for p in problems)
    assert any("not folded" in p for p in problems)
    # the hand-built report names the original's checkout by an absolute path: the rendered page shows it
    assert "/src/PercePiano" in screenshot_report.machine_paths(dom)


def test_machine_paths_are_absolute_paths_in_text_and_attributes():
    dom = ('<p>source <code>/work/x/parity/data/bundles/han-total</code> · 812 / 4096 · n/a · see '
           '<a href="https://example.org/a/b">docs</a> <img src="/tmp/pic.png"> han-total <b>~/.cache/x</b></p>'
           '<svg><path d="M0 0 L10 10"/></svg>')
    assert screenshot_report.machine_paths(dom) == ["/work/x/parity/data/bundles/han-total", "/tmp/pic.png",
                                                    "~/.cache/x"]
    assert screenshot_report.machine_paths("<p>han-total · 1/2 · a/b · <br/></p>") == []


@pytest.mark.slow
def test_the_documented_screenshot_page_passes_its_checks_and_shows_no_machine_path(browser, capsys):
    """The tool's own run (a library deviation audited from a temporary folder): every DOM check holds and no
    machine path is on the page (the picture is not rewritten: --check-only)."""
    assert screenshot_report.main(["--check-only"]) == 0, capsys.readouterr().err
