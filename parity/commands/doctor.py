"""`parity doctor`: is this machine ready for a parity run, and will two runs agree?

Reports the versions that decide numerics (python, torch, numpy, scikit-learn), the thread count, whether the
faithful replica is bitwise repeatable here (one batch, run twice), what the original needs to import if a
checkout is configured, and which shipped reference bundles are usable. Each line is `ok`, `warn`, `fail` or
`info`; the exit code is 1 when any line is `fail`, else 0.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Line:
    status: str  # ok | warn | fail | info
    label: str
    detail: str

    def render(self) -> str:
        return f"{self.status:<5} {self.label:<22} {self.detail}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def versions() -> list[Line]:
    import numpy
    import torch

    lines = [Line("info", "python", f"{sys.version.split()[0]} ({platform.python_implementation()}, "
                                    f"{platform.platform()})"),
             Line("info", "torch", torch.__version__),
             Line("info", "numpy", numpy.__version__)]
    sklearn = _version("scikit-learn")
    lines.append(Line("info" if sklearn else "warn", "scikit-learn",
                      sklearn or "not installed: the recipe check's R2 needs it"))
    lines.append(Line("info", "threads", f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} "
                                         "inter-op (torch)"))
    cuda = torch.cuda.is_available()
    lines.append(Line("info", "cuda", f"available: {torch.cuda.get_device_name(0)}" if cuda else "not available"))
    return lines


def determinism_probe(variant: str = "han-total", seed: int = 0) -> Line:
    """Run the faithful replica twice on one batch (eval and a backward) and compare bit for bit."""
    import torch

    from percepiano_parity.batches.synthetic import generate_batches
    from percepiano_parity.replica import SMALL_CONFIG, build
    from percepiano_parity.subjects.replica_subject import ReplicaSubject
    from percepiano_parity.subjects.subject import SubjectInfo

    batch = generate_batches(1, seed, config=SMALL_CONFIG, max_notes=32, include_edge_cases=False)[0]
    subject = ReplicaSubject(build(variant, SMALL_CONFIG, seed=seed), SubjectInfo("probe", "bundled-replica", variant))
    first = subject.run(batch, grads=True)
    second = subject.run(batch, grads=True)
    differing = [name for name, value in first.levels.items() if not torch.equal(value, second.levels[name])]
    differing += [f"grad {name}" for name, value in first.grads.items() if not torch.equal(value, second.grads[name])]
    if differing:
        return Line("fail", "determinism", f"the faithful replica is not bitwise repeatable here: "
                                           f"{', '.join(differing[:4])} differ between two runs")
    return Line("ok", "determinism", f"faithful replica ({variant}, small config) bitwise repeatable: "
                                     f"{len(first.levels)} levels and {len(first.grads)} gradients identical in two runs")


def original_lines(path: str | None, origin: str) -> list[Line]:
    if not path:
        return [Line("info", "original", "no checkout configured (--original PATH, [tool.parity] original or "
                                         "$PERCEPIANO_ORIGINAL); the shipped bundles serve instead")]
    from percepiano_parity import original_adapter

    try:
        original = original_adapter.load(path)
    except original_adapter.OriginalLoadError as exc:
        return [Line("fail", "original", f"{exc} ({origin})")]
    lines = [Line("ok", "original", f"{original.root} ({origin}), revision {original.revision}")]
    lines += [Line("warn", "original", w) for w in original.warnings]
    if original.shims:
        for shim in original.shims:
            lines.append(Line("info", "shim", f"{shim['name']}: {shim['reason']}"))
    else:
        lines.append(Line("ok", "shims", "none needed: the original imports as it is"))
    return lines


def bundle_lines() -> list[Line]:
    from percepiano_parity.subjects.bundle import DEFAULT_BUNDLES, load_bundle

    shipped = dict(DEFAULT_BUNDLES)
    if not shipped:
        return [Line("warn", "bundles", "no reference bundles are shipped with this installation")]
    lines = []
    for variant, path in sorted(shipped.items()):
        if not Path(path).exists():
            lines.append(Line("fail", f"bundle {variant}", f"missing: {path}"))
            continue
        try:
            bundle = load_bundle(path)
        except Exception as exc:  # noqa: BLE001 - report any unreadable bundle as a failed line
            lines.append(Line("fail", f"bundle {variant}", f"{path}: {type(exc).__name__}: {exc}"))
            continue
        lines.append(Line("ok", f"bundle {variant}", f"{path} ({len(bundle.batches)} batches, seed {bundle.seed})"))
    return lines


def run_doctor(original: str | None = None, origin: str = "", emit: Callable[[Line], None] | None = None
               ) -> list[Line]:
    """Every doctor line, in order; `emit` sees each as soon as it is known."""
    lines: list[Line] = []

    def add(items: list[Line]) -> None:
        for line in items:
            lines.append(line)
            if emit is not None:
                emit(line)

    add(versions())
    try:
        add([determinism_probe()])
    except Exception as exc:  # noqa: BLE001 - a probe that crashes is itself the finding
        add([Line("fail", "determinism", f"the probe failed: {type(exc).__name__}: {exc}")])
    add(original_lines(original, origin))
    add(bundle_lines())
    return lines
