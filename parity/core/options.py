"""The resolved options of one `parity check` run, as plain data every stage can read.

How they are read (command line, `[tool.parity]`, the pytest fixture) and validated is in
`percepiano_parity.commands.options`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from percepiano_parity.core.findings import Severity

MIN_NOTES = 8  # smallest usable `max_notes`: edge cases need a few beats and measures
EDGE_MAX_NOTES = 48  # edge-case batches are capped at this many notes per item, so they stay fast


@dataclass
class CheckOptions:
    """Resolved options of one `parity check` run. `explicit` names the options the user set (any source)."""

    original: str | None = None
    replica: str | None = None
    reference: str | None = None
    variant: str = "han-total"
    batches: int = 3
    seed: int = 0
    device: str = "cpu"
    report_dir: str = "parity-report"
    format: str = "console,md,json,html,junit"
    fail_on: str = "warning"
    waivers: str | None = None
    compare_to: str | None = None
    fail_on_new: bool = False
    deviation: str | None = None
    mapping: str | None = None
    max_notes: int | None = None
    model_config: str = "default"
    edge_cases: bool = True
    training_checks: bool = True
    threads: int | None = None
    thorough: bool = False
    data: str | None = None  # a prepared real-data cache (`parity data prepare`); None: synthetic batches
    data_split: str = "performer4fold:0:train"
    dataset: str | None = None  # with data: the user's dataset factory (`module:function`), or "original"
    debug: bool = False
    explicit: dict[str, str] = field(default_factory=dict)  # option name -> where it was set
    config_file: str | None = None
    original_from_env: bool = False

    @property
    def severity(self) -> Severity:
        return Severity.parse(self.fail_on)

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(self.format.split(","))

    def given(self, name: str) -> bool:
        return name in self.explicit
