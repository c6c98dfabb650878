"""Check report.html in a real headless browser, then regenerate docs/report-html.png from it.

    python tools/screenshot_report.py            # needs Debian's chromium (apt-get install -y chromium)
    python tools/screenshot_report.py --check-only

Runs `parity check` on the bundled replica with one library deviation applied (so the report has something
to show), lets headless Chromium load report.html and reads back the DOM Chromium built (`--dump-dom`), then
checks what a researcher should see: each explanation with a root level opens with its picture (the per-level
relative error, the root level marked, the noise floor as a band) before its facts, its evidence folded and
grouped by check; noise floors and settings as tables, not JSON; plots drawn against relative floors. Only then
it photographs the page. Exit 0 when every check holds, 1 when one fails, 2 without a browser.

The picture shows no machine path: the audit runs in a temporary folder, on a copy of the shipped reference
bundle given by a relative path (`--reference han-total`), writing to a relative report folder, so every path
the report names is relative; and before photographing, every absolute or home path in the rendered text and
attributes (`machine_paths`) is a failure, so a path that comes back some other way never reaches the picture.
The tests run the same DOM checks on a rendered report when chromium is installed (tests/reports).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def find_browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def browser_dom(browser: str, page: Path, profile: Path, timeout: int = 120) -> str:
    """The DOM Chromium built from `page`, serialised (what the browser renders, not the file's text)."""
    done = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=timeout, check=True)
    return done.stdout


class _Outline(HTMLParser):
    """Per explanation card: the order of its first figure, dl and details; the text of sections."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self._card: dict | None = None
        self._depth = 0
        self.section: str | None = None
        self.sections: dict[str, list[str]] = {}
        self.band_titles: list[str] = []
        self._title: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "article" and "card" in (a.get("class") or ""):
            self._card = {"id": a.get("id"), "order": [], "details_open": None, "text": []}
            self.cards.append(self._card)
            self._depth = 0
        if self._card is not None:
            if tag == "article":
                self._depth += 1
            if tag in ("figure", "dl", "details") and tag not in self._card["order"]:
                self._card["order"].append(tag)
            if tag == "details" and "evidence" in (a.get("class") or ""):
                self._card["details_open"] = "open" in a
        if tag == "section":
            self.section = a.get("id")
        if tag == "title":
            self._title = []

    def handle_endtag(self, tag: str) -> None:
        if self._card is not None and tag == "article":
            self._depth -= 1
            if self._depth == 0:
                self._card = None
        if tag == "title" and self._title is not None:
            self.band_titles.append("".join(self._title))
            self._title = None

    def handle_data(self, data: str) -> None:
        if self._card is not None:
            self._card["text"].append(data)
        if self.section:
            self.sections.setdefault(self.section, []).append(data)
        if self._title is not None:
            self._title.append(data)


def dom_problems(dom: str) -> list[str]:
    """What the page fails to show as intended (see the module docstring); [] when all is well."""
    outline = _Outline()
    outline.feed(dom)
    problems = []
    if not outline.cards:
        problems.append("no explanation card on the page")
    for card in outline.cards:
        text = " ".join(card["text"])
        if "root level" in text and card["order"][:1] != ["figure"]:
            problems.append(f"{card['id']}: its picture does not come first ({card['order']})")
        if card["details_open"] is not False:
            problems.append(f"{card['id']}: its evidence is not folded in a closed <details>")
        if "Evidence" in text and "(" not in text.split("Evidence", 1)[1][:40]:
            problems.append(f"{card['id']}: the evidence summary does not count the findings per check")
    for section in ("noise-floors", "settings"):
        text = "".join(outline.sections.get(section, []))
        if not text:
            problems.append(f"no {section} section")
        elif "{" in text:
            problems.append(f"{section} shows raw JSON")
    if not any("noise floor (relative)" in t for t in outline.band_titles):
        problems.append("no relative noise floor band in the per-level plot")
    if not any("root level" in t for t in outline.band_titles):
        problems.append("the root level is not marked in an explanation's picture")
    return problems


# An absolute path of two parts or more (/work/x, /tmp/a.png) or a home path (~/x), not inside a word, a URL
# (https://a/b) or a fraction (1/2).
_MACHINE_PATH = re.compile(r"(?<![\w.:/~<-])(?:~|/[\w.+@-]+)(?:/[\w.+@-]+)+/?")


class _Texts(HTMLParser):
    """Every text node and attribute value of a page, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.texts += [value for _, value in attrs if value]

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def machine_paths(dom: str) -> list[str]:
    """The absolute and home paths a page shows (text and attribute values), in order, each once."""
    texts = _Texts()
    texts.feed(dom)
    found = [m.group() for text in texts.texts for m in _MACHINE_PATH.finditer(text)]
    return list(dict.fromkeys(found))


def audit_page(folder: Path) -> Path | None:
    """report.html of `parity check --deviation layernorm-han-output`, run inside `folder` with relative paths
    only (the shipped han-total bundle copied there); None when parity check wrote none."""
    from percepiano_parity.subjects.bundle import DEFAULT_BUNDLES

    shutil.copytree(DEFAULT_BUNDLES["han-total"], folder / "han-total")
    env = {k: v for k, v in os.environ.items() if k not in ("PERCEPIANO_ORIGINAL", "PARITY_TEST_REFERENCE")}
    subprocess.run([sys.executable, "-m", "percepiano_parity", "check", "--deviation", "layernorm-han-output",
                    "--reference", "han-total", "--report-dir", "report", "--format", "html",
                    "--no-training-checks"], cwd=folder, env=env)
    html = folder / "report" / "report.html"
    return html if html.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-only", action="store_true", help="check the page; keep docs/report-html.png")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("screenshot: no chromium found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        html = audit_page(Path(tmp))
        if html is None:
            print("screenshot: parity check wrote no report.html", file=sys.stderr)
            return 1
        dom = browser_dom(browser, html, Path(tmp) / "profile-dom")
        problems = dom_problems(dom) + [f"the page shows a machine path: {p}" for p in machine_paths(dom)]
        for problem in problems:
            print(f"screenshot: {problem}", file=sys.stderr)
        if problems:
            return 1
        print("screenshot: report.html checked in headless Chromium")
        if args.check_only:
            return 0
        target = ROOT / "docs" / "report-html.png"
        subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp}/profile", "--window-size=1280,2200",
                        f"--screenshot={target}", html.as_uri()], check=True, capture_output=True, timeout=120)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
