"""`llama98-harness bench`: measure this checkout's port per model and record it as one results file per commit.

Three modes, one question each:
- `host`: exact instructions per token of the guest build under callgrind (no VM; what bisection uses in CI);
- `icount`: the guest under QEMU -icount, where guest time counts guest instructions, so one run gives
  instructions per token and a tok/s that does not depend on the host's load;
- `wall`: the guest under plain emulation, the tok/s a user would see; noisy, so repeated (median and range).
The file goes to a results directory (history for `--plot` / `llama98-harness plot`), optionally also to --json.

`--toolchain gcc,openwatcom` measures this checkout's port built by each toolchain for the same guest (gcc's
tiny686 or win32 build, OpenWatcom's watcom-tiny686 or watcom-win32) and prints a side-by-side line per model.
Each toolchain's figures are their own run in the results file (`host-ipt`, `host-ipt@openwatcom`; see
results.py), so a history line never mixes two compilers, and every run names its build, toolchain and compiler.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from harness.core.errors import UsageError
from harness.formats.report import Report
from harness.perf.measure import (
    DEFAULT_TOOLCHAIN,
    HOST_BUILD,
    WALL_STEPS,
    NotMeasurable,
    host_ipt,
    report_ticks,
    run_in_guest,
    toolchain_of,
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
# Where each mode's figures are stored in the results file (results.py) and the metric that compares builds.
RUN_KEYS = {"host": "host-ipt", "icount": "icount", "wall": "wall"}
HEADLINE = {"host": "host_ipt", "icount": "guest_ipt", "wall": "tok_s"}


def run_key(mode: str, toolchain: str = DEFAULT_TOOLCHAIN) -> str:
    """The results file's run key for `mode` measured on `toolchain`'s build: the mode alone for gcc (the history
    every earlier result is in), `mode@toolchain` for the others."""
    key = RUN_KEYS[mode]
    return key if toolchain == DEFAULT_TOOLCHAIN else f"{key}@{toolchain}"


def bench_model(name: str, mode: str, *, vm: str | None, profile: str, binary: Path | None, repeat: int,
                icount_shift: int, timeout_scale: float, cli: str = "llama98",
                build: str | None = None) -> tuple[dict[str, object], str | None]:
    """Measure one model in one mode; returns its figures and the guest profile used (None for host mode).

    `build` is the port's build target measured (tiny686, watcom-tiny686, ...; built from this checkout); None
    means the gcc build for the guest, or `binary` when one is given. The figures name the build and its
    toolchain. A llama2c-style binary (`cli="llama2c"`) has no run report, so only wall mode applies to it: its
    own `achieved tok/s` figure and the harness's wall time around each run."""
    if cli == "llama2c" and mode != "wall":
        raise UsageError(f"--mode {mode} needs our port's run report; a llama2c-style binary is measured with "
                         f"--mode wall")
    if mode == "host" and build is not None and "win32" in build:
        raise UsageError(f"host mode runs i386 Linux builds under valgrind; the {build} build runs only in a "
                         f"Windows 98 guest (--mode icount --vm IMAGE)")
    load = workload(name)
    started = time.monotonic()
    traffic = weight_bytes(load)
    # What was measured, named in the figures: a build of this checkout, or the user's --binary (no toolchain known).
    named = ({"build": build, "toolchain": toolchain_of(build)} if build is not None
             else {"build": "binary"} if binary is not None else {})
    if mode == "host":
        host_build = build or HOST_BUILD
        if binary is None:
            named = {"build": host_build, "toolchain": toolchain_of(host_build)}
        try:
            measured = host_ipt(binary or build_port(host_build), load, build=str(named["build"]))
        except NotMeasurable as error:  # said in the model's line and recorded; the other figures go on
            return {"not_measured": str(error), **named, "weight_bytes": traffic}, None
        return {"host_ipt": measured.per_token, "ir_short": measured.ir_short, "ir_long": measured.ir_long,
                "positions": [load.short_steps, load.long_steps], **named, "weight_bytes": traffic,
                "host_wall_s": time.monotonic() - started}, None
    if binary is None and build is not None:
        binary = build_port(build)
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
        figures.update(named)
        figures.update(memory_figures(run.report, load.short_steps, load.long_steps))
        return figures, run.profile
    runs = run_in_guest(binary, load, vm=vm, profile=profile, runs=repeat,
                        steps=WALL_STEPS[load.name.split(":")[0]], timeout_scale=timeout_scale, cli=cli)
    wall: dict[str, object] = {"tok_s": summary([run.tok_s for run in runs]),
                               "host_wall_s": summary([run.host_seconds for run in runs]), "repeat": repeat,
                               "weight_bytes": traffic, "cli": cli}
    wall.update(named)
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


def _built_by(figures: dict[str, object], default: str) -> str:
    build = figures.get("build") or default
    if build == "binary":
        return "the --binary given"
    toolchain = figures.get("toolchain")
    return f"{build} build, {toolchain}" if toolchain else f"{build} build"


def _line(name: str, mode: str, figures: dict[str, object]) -> str:
    traffic = f", weights {_number(figures['weight_bytes']) / 1e6:8.3f} MB/token"
    if "not_measured" in figures:
        return f"{name:18} {RUN_KEYS[mode]:9} not measured ({_built_by(figures, '')}): {figures['not_measured']}"
    if mode == "host":
        return (f"{name:18} host-ipt {_number(figures['host_ipt']) / 1e6:9.4f} M instr/token{traffic} "
                f"(callgrind, {_built_by(figures, HOST_BUILD)})")
    if mode == "icount":
        line = (f"{name:18} guest-ipt {_number(figures['guest_ipt']) / 1e6:9.4f} M instr/token{traffic} "
                f"(icount shift={figures['icount_shift']}"
                f"{', ' + _built_by(figures, '') if figures.get('build') else ''}), "
                f"tok/s {_number(figures['tok_s']):.2f} in guest time, "
                f"host wall {_number(figures['host_wall_s']):.1f} s")
        if _number(figures.get("streamed_bytes", 0)) > 0:
            line += "\n" + "\n".join(streamed_lines(name, figures))
        return line
    tok_s = figures["tok_s"]
    assert isinstance(tok_s, dict)
    built = f" ({_built_by(figures, '')})" if figures.get("build") else ""
    return (f"{name:18} tok/s median {tok_s['median']:.2f} (range {tok_s['min']:.2f}-{tok_s['max']:.2f}, "
            f"{len(tok_s['samples'])} runs){traffic}{built}")


def headline(mode: str, figures: dict[str, object]) -> float | None:
    """The one number that compares two builds in `mode`: instructions per token, or the median tok/s (None when
    the build could not be measured)."""
    from harness.perf.results import value_of

    return value_of(figures.get(HEADLINE[mode]))


def side_by_side(name: str, mode: str, by_toolchain: dict[str, dict[str, object]]) -> str:
    """One model's figures per toolchain on one line, each with its weight bytes per token, and each toolchain's
    ratio to the first (gcc when measured): what --toolchain gcc,openwatcom is for.

    `260K  host-ipt  gcc 1.2345 M | openwatcom 1.6789 M instr/token (x1.360 vs gcc); weights 0.930 | 0.930 MB/token`
    """
    metric = {"host": "host-ipt", "icount": "guest-ipt", "wall": "tok/s"}[mode]
    first = next(iter(by_toolchain))
    base = headline(mode, by_toolchain[first])
    parts, ratios = [], []
    for toolchain, figures in by_toolchain.items():
        value = headline(mode, figures)
        if value is None:
            parts.append(f"{toolchain} n/a")
            continue
        parts.append(f"{toolchain} {value:.2f}" if mode == "wall" else f"{toolchain} {value / 1e6:.4f} M")
        if toolchain != first and base:
            ratios.append(f"x{value / base:.3f} vs {first}")
    unit = " tok/s" if mode == "wall" else " instr/token"
    ratio = f" ({', '.join(ratios)})" if ratios else ""
    weights = " | ".join(f"{_number(figures['weight_bytes']) / 1e6:.3f}" for figures in by_toolchain.values())
    return f"{name:18} {metric:9} {' | '.join(parts)}{unit}{ratio}; weights {weights} MB/token"


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
