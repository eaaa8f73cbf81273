"""Benchmark results on disk: one JSON file per commit, so a directory of them is a history (asv-like).

A result is only comparable with another if both say what was measured and where, so every run stores its
environment next to its figures, and the file is keyed by commit so re-measuring a commit replaces its old entry
for that mode instead of piling up duplicates. Files are written atomically (parallel benchmarks, Ctrl-C).

Layout of `<results dir>/<sha[:12]>.json`:
```
{"schema": "llama98-bench/1",
 "commit": {"sha": "...", "subject": "...", "date": "ISO-8601 commit date", "dirty": false},
 "runs": {"<mode>": {"measured_at": "ISO-8601", "environment": {...},
                     "models": {"<model>": {"<metric>": number or {"median", "min", "max", "samples"}, ...}}}}}
```
Modes: `host-ipt` (callgrind), `icount` (QEMU -icount), `wall` (plain emulation). Metrics: `host_ipt`,
`guest_ipt`, `icount_shift`, `tok_s`, `ticks`, `host_wall_s`, `weight_bytes` (per token), and what was measured:
`build` (tiny686, watcom-tiny686, ...) and `toolchain` (gcc, openwatcom). A mode's run key is the mode itself for
the gcc build and `<mode>@<toolchain>` for another toolchain's (`host-ipt@openwatcom`), so each toolchain is its own
history and the gcc history of earlier files goes on unchanged; each run's environment names its build,
toolchain, compiler version and flags.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.core.atomic import write_atomically
from harness.core.errors import HarnessError

SCHEMA = "llama98-bench/1"


class ResultsError(HarnessError):
    """A results file cannot be read or does not follow the schema."""


def summary(samples: list[float]) -> dict[str, object]:
    """Median and range of repeated samples (what wall mode reports)."""
    if not samples:
        raise ResultsError("no samples to summarise")
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": list(samples)}


def value_of(entry: object) -> float | None:
    """A metric as one number: the value itself, or the median of a summary."""
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        return float(entry)
    if isinstance(entry, dict) and isinstance(entry.get("median"), (int, float)):
        return float(entry["median"])
    return None


def range_of(entry: object) -> tuple[float, float] | None:
    """(min, max) of a summary; None for a single value."""
    if isinstance(entry, dict) and all(isinstance(entry.get(k), (int, float)) for k in ("min", "max")):
        return float(entry["min"]), float(entry["max"])
    return None


@dataclass
class CommitResult:
    """Everything measured at one commit."""

    commit: dict[str, object]
    runs: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def sha(self) -> str:
        return str(self.commit.get("sha", ""))

    @property
    def date(self) -> str:
        return str(self.commit.get("date", ""))

    def metric(self, mode: str, model: str, metric: str) -> object:
        models = self.runs.get(mode, {}).get("models", {})
        return models.get(model, {}).get(metric) if isinstance(models, dict) else None

    def to_json(self) -> dict[str, object]:
        return {"schema": SCHEMA, "commit": self.commit, "runs": self.runs}


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def result_path(results_dir: Path, sha: str) -> Path:
    return results_dir / f"{sha[:12]}.json"


def read_result(path: Path) -> CommitResult:
    """Load one results file, insisting on the schema tag so foreign JSON is not plotted as ours."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path}: cannot read results: {error}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not a {SCHEMA} results file")
    commit, runs = data.get("commit"), data.get("runs")
    if not isinstance(commit, dict) or not isinstance(runs, dict) or "sha" not in commit:
        raise ResultsError(f"{path}: results file lacks commit.sha or runs")
    return CommitResult(commit, runs)


def _atomic_write_json(path: Path, data: dict[str, object]) -> None:
    write_atomically(path, [(json.dumps(data, indent=1, sort_keys=True) + "\n").encode()])


def record_run(results_dir: Path, commit: dict[str, object], mode: str, environment: dict[str, object],
               models: dict[str, dict[str, object]]) -> Path:
    """Store one run's figures in the commit's file (replacing that mode's earlier run); returns the file."""
    sha = str(commit.get("sha") or "")
    if not sha:
        raise ResultsError("cannot record results without a commit sha")
    path = result_path(results_dir, sha)
    existing = read_result(path) if path.is_file() else CommitResult(dict(commit))
    existing.commit = dict(commit)
    existing.runs[mode] = {"measured_at": now_iso(), "environment": environment, "models": models}
    _atomic_write_json(path, existing.to_json())
    return path


def write_json(path: Path, data: dict[str, object]) -> Path:
    """Write any JSON document atomically (bisection summaries, copies of a run)."""
    _atomic_write_json(path, data)
    return path


def load_history(results_dir: Path) -> list[CommitResult]:
    """Every commit's results in a directory, oldest commit first (by commit date, then sha)."""
    if not results_dir.is_dir():
        raise ResultsError(f"results directory {results_dir} does not exist")
    names = re.compile(r"^[0-9a-f]{12}\.json$")  # other JSON beside them (copies, summaries) is not history
    results = [read_result(path) for path in sorted(results_dir.glob("*.json")) if names.match(path.name)]
    return sorted(results, key=lambda r: (r.date, r.sha))
