"""The state `bisect` writes for its steps (JSON) and the measurement log they append to: how a bisection survives
being a chain of separate processes.
"""


from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.core.errors import HarnessError
from harness.perf.measure import (
    DEFAULT_ICOUNT_SHIFT,
)

METRICS = ("host-ipt", "guest-ipt", "tok_s")
TOOLCHAINS = ("gcc", "openwatcom")
EXIT_GOOD, EXIT_BAD, EXIT_SKIP, EXIT_ABORT = 0, 1, 125, 128
GIT_TIMEOUT_S = 120
STEP_TIMEOUT_S = 3600  # one build + measurement; a hang guard, not an expectation
TOK_S_FIRST_SAMPLES, TOK_S_MAX_SAMPLES = 3, 9
DEFAULT_PORT_DIR = "ports/llama98"
STATE_VERSION = 1
# Variables that would point git at the user's repository instead of the clone (set when run from a hook).
GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")


class BisectError(HarnessError):
    """The bisection cannot start or did not name a single culprit."""




# --- the state shared by `bisect` and its steps ------------------------------------------------------------------

@dataclass
class Measurement:
    """The outcome of one step: the metric (or why there is none) and the verdict given to git."""

    sha: str
    subject: str
    verdict: str  # good | bad | skip | baseline
    value: float | None = None
    samples: list[float] = field(default_factory=list)
    cached: bool = False
    error: str | None = None
    role: str = "step"  # baseline | step | culprit-check


@dataclass
class BisectState:
    """Everything a step needs, written by `bisect` as JSON into the run directory."""

    metric: str
    threshold: float
    workload: str
    short_steps: int
    long_steps: int
    port_dir: str
    log_path: str
    candidates: int
    vm: str | None = None
    icount_shift: int = DEFAULT_ICOUNT_SHIFT
    # tok_s on the guest's clock under -icount (deterministic: the program's own figure in guest time) or, with
    # wall_clock, on plain emulation, where the host's load moves it by tens of percent.
    wall_clock: bool = False
    baseline: float | None = None
    baseline_samples: list[float] = field(default_factory=list)
    good_binary: str | None = None
    use_cache: bool = True
    # A fork's own build instead of ours: the shell command run at the top of each checkout, the path of the
    # binary it leaves (relative to the checkout), and the binary's command-line style (llama98 or llama2c).
    build_command: str | None = None
    binary_path: str | None = None
    cli: str = "llama98"
    binaries_dir: str | None = None  # where each measured build is kept (the clone's tree changes every step)
    # The toolchain of each commit's build: gcc or openwatcom (our port's watcom-* targets); with a fork's
    # build command, what it runs with (auto: OpenWatcom's environment when it starts with wmake, wcl386, owcc).
    toolchain: str = "gcc"
    version: int = STATE_VERSION

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> BisectState:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as error:
            raise BisectError(f"{path}: not a bisect state file: {error}") from None


def read_log(path: Path) -> list[Measurement]:
    if not path.is_file():
        return []
    return [Measurement(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def append_log(path: Path, record: Measurement) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(asdict(record)) + "\n")


def max_steps(candidates: int, skipped: int) -> int:
    """Measurements git bisect needs at most: the baseline, then halving `candidates`, plus one per skip."""
    return 1 + math.ceil(math.log2(candidates + 1)) + skipped


@dataclass
class BisectOutcome:
    culprit: str
    subject: str
    parent: str
    good: Measurement
    culprit_measurement: Measurement
    parent_measurement: Measurement
    measurements: list[Measurement]
    candidates: int
    commits: list[tuple[str, str]]  # (sha, subject), oldest first, good excluded
    json_path: Path
    plot_path: Path | None

    @property
    def measured(self) -> list[Measurement]:
        """Distinct commits that were measured (skips and repeated look-ups excluded)."""
        seen: dict[str, Measurement] = {}
        for record in self.measurements:
            if record.value is not None and record.sha not in seen:
                seen[record.sha] = record
        return list(seen.values())
