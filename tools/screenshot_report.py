"""Regenerate docs/report-html.png: a real HTML report, rendered by headless Chromium.

    python tools/screenshot_report.py            # needs `apt-get install chromium` (Debian)

Runs `parity check` on the bundled replica with one library deviation applied (so the report has something
to show), then photographs report.html. Not part of the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print("screenshot: no chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        subprocess.run([sys.executable, "-m", "parity", "check", "--deviation", "layernorm-han-output",
                        "--report-dir", str(out), "--format", "html", "--no-training-checks"], cwd=ROOT)
        html = out / "report.html"
        if not html.exists():
            print("screenshot: parity check wrote no report.html", file=sys.stderr)
            return 1
        target = ROOT / "docs" / "report-html.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp}/profile", "--hide-scrollbars", "--window-size=1280,2200",
                        f"--screenshot={target}", html.as_uri()], check=True, capture_output=True)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
