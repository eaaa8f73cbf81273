"""`llama98-harness bench`: measure this checkout's port per model and record it as one results file per commit.

Three modes, one question each:
- `host`: exact instructions per token of the guest build under callgrind (no VM; what bisection uses in CI);
- `icount`: the guest under QEMU -icount, where guest time counts guest instructions, so one run gives
  instructions per token and a tok/s that does not depend on the host's load;
- `wall`: the guest under plain emulation, the tok/s a user would see; noisy, so repeated (median and range).
The file goes to a results directory (history for `--plot` / `llama98-harness plot`), optionally also to --json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from harness.core.errors import UsageError
from harness.formats.report import Report
from harness.perf.measure import (
    WALL_STEPS,
    host_ipt,
    report_ticks,
    run_in_guest,
    weight_bytes,
    workload,
)
from harness.perf.projection import TokenCosts
from harness.perf.projection import describe as describe_projection
from harness.perf.results import summary
from harness.port.build import build_port

log = logging.getLogger(__name__)

MODES = ("icount", "wall", "host")
DEFAULT_REPEAT = 5


def bench_model(name: str, mode: str, *, vm: str | None, profile: str, binary: Path | None, repeat: int,
                icount_shift: int, timeout_scale: float, cli: str = "llama98") -> tuple[dict[str, object], str | None]:
    """Measure one model in one mode; returns its figures and the guest profile used (None for host mode).

    A llama2c-style binary (`cli="llama2c"`) has no run report, so only wall mode applies to it: its own
    `achieved tok/s` figure and the harness's wall time around each run."""
    if cli == "llama2c" and mode != "wall":
        raise UsageError(f"--mode {mode} needs our port's run report; a llama2c-style binary is measured with "
                         f"--mode wall")
    load = workload(name)
    started = time.monotonic()
    traffic = weight_bytes(load)
    if mode == "host":
        measured = host_ipt(binary or build_port("tiny686"), load)
        return {"host_ipt": measured.per_token, "ir_short": measured.ir_short, "ir_long": measured.ir_long,
                "positions": [load.short_steps, load.long_steps], "build": measured.build,
                "weight_bytes": traffic, "host_wall_s": time.monotonic() - started}, None
    if mode == "icount":
        runs = run_in_guest(binary, load, vm=vm, profile=profile, icount_shift=icount_shift, runs=1,
                            timeout_scale=timeout_scale)
        run = runs[0]
        assert run.report is not None  # our port's run (cli llama98), checked above
        figures: dict[str, object] = {
            "guest_ipt": run.guest_ipt(load.short_steps, load.long_steps), "icount_shift": icount_shift,
            "weight_bytes": traffic, "tok_s": run.tok_s, "ticks": report_ticks(run.report),
            "timer": run.report.timer.source, "hz": run.report.timer.hz, "tokens": len(run.report.tokens),
            "positions": [load.short_steps, load.long_steps], "host_wall_s": run.host_seconds}
        figures.update(memory_figures(run.report, load.short_steps, load.long_steps))
        return figures, run.profile
    runs = run_in_guest(binary, load, vm=vm, profile=profile, runs=repeat,
                        steps=WALL_STEPS[load.name.split(":")[0]], timeout_scale=timeout_scale, cli=cli)
    wall: dict[str, object] = {"tok_s": summary([run.tok_s for run in runs]),
                               "host_wall_s": summary([run.host_seconds for run in runs]), "repeat": repeat,
                               "weight_bytes": traffic, "cli": cli}
    report = runs[0].report
    if report is not None:
        wall.update(timer=report.timer.source, hz=report.timer.hz, tokens=len(report.tokens))
    return wall, runs[0].profile


def memory_figures(report: Report, short: int, long: int) -> dict[str, object]:
    """How the run used memory and disk over the measured positions: the budget and the split between resident and
    streamed weights, the peak allocation, and per token the bytes read, guest seconds and the share reading."""
    memory = report.memory
    if memory is None:
        return {}
    measured = report.tokens[short:long]
    hz = report.timer.hz
    ticks = sum(token.ticks for token in measured)
    io = sum(token.io_ticks or 0 for token in measured)
    return {"budget": memory.budget, "budget_source": memory.source, "resident_bytes": memory.resident,
            "streamed_bytes": memory.streamed, "peak_bytes": report.peak_bytes,
            "bytes_read_per_token": sum(token.read_bytes or 0 for token in measured) / len(measured),
            "guest_s_per_token": ticks / hz / len(measured), "io_s_per_token": io / hz / len(measured)}


def _number(value: object) -> float:
    if not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _line(name: str, mode: str, figures: dict[str, object]) -> str:
    traffic = f", weights {_number(figures['weight_bytes']) / 1e6:8.3f} MB/token"
    if mode == "host":
        return (f"{name:18} host-ipt {_number(figures['host_ipt']) / 1e6:9.4f} M instr/token{traffic} "
                f"(callgrind, tiny686 build)")
    if mode == "icount":
        line = (f"{name:18} guest-ipt {_number(figures['guest_ipt']) / 1e6:9.4f} M instr/token{traffic} "
                f"(icount shift={figures['icount_shift']}), tok/s {_number(figures['tok_s']):.2f} in guest time, "
                f"host wall {_number(figures['host_wall_s']):.1f} s")
        if _number(figures.get("streamed_bytes", 0)) > 0:
            line += "\n" + "\n".join(streamed_lines(name, figures))
        return line
    tok_s = figures["tok_s"]
    assert isinstance(tok_s, dict)
    return (f"{name:18} tok/s median {tok_s['median']:.2f} (range {tok_s['min']:.2f}-{tok_s['max']:.2f}, "
            f"{len(tok_s['samples'])} runs){traffic}")


def streamed_lines(name: str, figures: dict[str, object]) -> list[str]:
    """A streamed model's table rows (guest time per token, the part reading, bytes read, peak memory) and its
    projection on a Pentium II 350 (harness/perf/projection.py)."""
    mib = 1024 * 1024
    rows = [
        f"    guest time per token   {_number(figures['guest_s_per_token']):10.2f} s (reading weights "
        f"{_number(figures['io_s_per_token']):.2f} s; -icount guest time)",
        f"    instructions per token {_number(figures['guest_ipt']) / 1e9:10.3f} G (arithmetic, reading excluded)",
        f"    bytes read per token   {_number(figures['bytes_read_per_token']) / 1e6:10.1f} MB",
        f"    peak memory            {_number(figures['peak_bytes']) / mib:10.1f} MiB (budget "
        f"{_number(figures['budget']) / mib:.1f} MiB from {figures['budget_source']}; resident weights "
        f"{_number(figures['resident_bytes']) / mib:.1f} MiB)",
    ]
    costs = TokenCosts(_number(figures["guest_ipt"]), _number(figures["bytes_read_per_token"]),
                       _number(figures["weight_bytes"]))
    return rows + ["    " + line for line in describe_projection(name, costs)]
