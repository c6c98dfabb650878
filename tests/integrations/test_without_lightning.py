"""The package imports and gates without PyTorch Lightning; only the callback needs it, and says how to get it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_works_without_lightning_and_the_callback_says_what_to_install():
    code = textwrap.dedent('''
        import sys
        sys.modules["pytorch_lightning"] = None   # as if not installed
        sys.modules["lightning"] = None
        sys.modules["lightning.pytorch"] = None
        import percepiano_parity, parity
        assert callable(percepiano_parity.gate) and parity.gate is percepiano_parity.gate
        assert "pytorch_lightning" not in [m for m, v in sys.modules.items() if v is not None]
        try:
            percepiano_parity.ParityCallback
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("ParityCallback imported without Lightning")
    ''')
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ParityCallback needs PyTorch Lightning: pip install 'percepiano-parity[lightning]'"
