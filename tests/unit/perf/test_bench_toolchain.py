"""`bench --toolchain gcc,openwatcom`: this checkout's port built by gcc and by OpenWatcom, measured side by side.

Host mode (callgrind on the two i386 Linux builds, tiny686 and watcom-tiny686; no VM) runs in every CI run, where
the OpenWatcom source archive is given ($LLAMA98_OPENWATCOM_SOURCE), so nothing here skips there. Figures are
recorded per toolchain (`host-ipt`, `host-ipt@openwatcom`) with the build, the toolchain and the compiler named."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import UsageError
from harness.core.paths import project_root
from harness.perf.bench import bench_model, run_key, side_by_side
from harness.perf.measure import (
    NotMeasurable,
    host_ipt,
    toolchain_build,
    toolchain_names,
    toolchain_of,
    workload,
)
from harness.perf.plot import plot_history
from harness.perf.results import CommitResult, read_result
from harness.toolchains.openwatcom import OpenWatcom, ToolchainMissing, find_openwatcom
from tests.support.port_helpers import built, fixture, fixture_dir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _openwatcom() -> OpenWatcom:
    """The OpenWatcom the watcom-* builds use; skips (with its one-line reason) only when there is none."""
    try:
        return find_openwatcom()
    except ToolchainMissing as error:
        pytest.skip(str(error))


def _valgrind() -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (apt-get install valgrind)")


def _bench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLAMA98_FIXTURE_DIR": str(fixture_dir())}
    return subprocess.run([sys.executable, "-m", "harness.cli", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=project_root(), env=env, check=False)


def test_host_bench_measures_gcc_and_openwatcom_side_by_side(tmp_path: Path) -> None:
    _valgrind()
    _openwatcom()
    fixture("stories260K.bin")
    results, copy = tmp_path / "results", tmp_path / "copy.json"
    run = _bench("--mode", "host", "--models", "stories260K", "--toolchain", "gcc,openwatcom",
                 "--results", str(results), "--json", str(copy), "--plot", str(tmp_path / "plot.png"))
    assert run.returncode == 0, run.stderr

    data = json.loads(copy.read_text())
    assert set(data["runs"]) == {"host-ipt", "host-ipt@openwatcom"}
    values = {}
    for key, build, toolchain in (("host-ipt", "tiny686", "gcc"),
                                  ("host-ipt@openwatcom", "watcom-tiny686", "openwatcom")):
        run_data = data["runs"][key]
        figures = run_data["models"]["260K"]
        assert figures["host_ipt"] > 0 and figures["weight_bytes"] > 0, figures
        assert figures["build"] == build and figures["toolchain"] == toolchain
        assert figures["ir_long"] > figures["ir_short"] > 0 and figures["positions"] == [20, 40]
        env = run_data["environment"]
        assert env["build"] == build and env["toolchain"] == toolchain and env["profile"] is None
        values[toolchain] = figures["host_ipt"]
    # the same model reads the same weights per token whoever compiled the port
    assert (data["runs"]["host-ipt"]["models"]["260K"]["weight_bytes"]
            == data["runs"]["host-ipt@openwatcom"]["models"]["260K"]["weight_bytes"])
    gcc_env, watcom_env = (data["runs"][key]["environment"] for key in ("host-ipt", "host-ipt@openwatcom"))
    assert str(gcc_env["compiler"]).startswith("gcc") and "-march=pentium2" in str(gcc_env["cflags"])
    assert "Open Watcom" in str(watcom_env["compiler"]) and "Version" in str(watcom_env["compiler"])
    assert str(watcom_env["cflags"]).startswith("wcl386") and "-bt=linux" in str(watcom_env["cflags"])

    lines = run.stdout.splitlines()
    assert any("watcom-tiny686 build, openwatcom" in line and "M instr/token" in line for line in lines)
    side = [line for line in lines if "gcc" in line and "| openwatcom" in line]
    assert len(side) == 1, run.stdout
    match = re.search(r"gcc (\d+\.\d+) M \| openwatcom (\d+\.\d+) M instr/token \(x(\d+\.\d+) vs gcc\); "
                      r"weights (\d+\.\d+) \| (\d+\.\d+) MB/token", side[0])
    assert match, side[0]
    assert float(match.group(1)) == pytest.approx(values["gcc"] / 1e6, abs=1e-4)
    assert float(match.group(2)) == pytest.approx(values["openwatcom"] / 1e6, abs=1e-4)
    assert float(match.group(3)) == pytest.approx(values["openwatcom"] / values["gcc"], abs=1e-3)
    assert (tmp_path / "plot.png").read_bytes()[:8] == PNG_MAGIC
    (result_file,) = results.glob("*.json")
    assert read_result(result_file).runs.keys() == data["runs"].keys()


def test_openwatcom_build_that_outgrows_valgrinds_heap_is_not_measured_in_one_line() -> None:
    """OpenWatcom's Linux runtime grows its heap with brk only, and valgrind gives a static binary 8 MB of it:
    the capability is missing on the host, which the figure says instead of a crash report."""
    _valgrind()
    _openwatcom()
    load = workload("15M-shape")
    with pytest.raises(NotMeasurable) as caught:
        host_ipt(built("watcom-tiny686"), load, build="watcom-tiny686")
    message = str(caught.value)
    assert "\n" not in message and "8 MB brk heap" in message and "--mode icount" in message
    figures, profile = bench_model("15M-shape", "host", vm=None, profile="auto", binary=None, repeat=1,
                                   icount_shift=1, timeout_scale=1.0, build="watcom-tiny686")
    assert profile is None and figures["not_measured"] == message
    assert figures["build"] == "watcom-tiny686" and figures["toolchain"] == "openwatcom"
    assert "host_ipt" not in figures and float(str(figures["weight_bytes"])) > 0


def test_toolchain_names_builds_and_run_keys() -> None:
    assert toolchain_names("gcc") == ["gcc"]
    assert toolchain_names(" openwatcom , gcc,openwatcom") == ["openwatcom", "gcc"]
    with pytest.raises(UsageError, match="unknown toolchain 'clang'"):
        toolchain_names("gcc,clang")
    with pytest.raises(UsageError, match="--toolchain is empty"):
        toolchain_names(" , ")
    assert toolchain_build("gcc") == "tiny686" and toolchain_build("openwatcom") == "watcom-tiny686"
    assert toolchain_build("gcc", "win32") == "win32" and toolchain_build("openwatcom", "win32") == "watcom-win32"
    assert [toolchain_of(t) for t in ("tiny686", "win32", "watcom-tiny686", "watcom-win32")] == [
        "gcc", "gcc", "openwatcom", "openwatcom"]
    with pytest.raises(UsageError, match="unknown build target"):
        toolchain_of("borland")
    assert run_key("host") == "host-ipt" and run_key("host", "openwatcom") == "host-ipt@openwatcom"
    assert run_key("icount", "gcc") == "icount" and run_key("wall", "openwatcom") == "wall@openwatcom"


def test_side_by_side_line_names_each_toolchain_and_the_ratio() -> None:
    gcc = {"host_ipt": 1.0e6, "weight_bytes": 1.04e6}
    watcom = {"host_ipt": 1.5e6, "weight_bytes": 1.04e6}
    line = side_by_side("260K", "host", {"gcc": gcc, "openwatcom": watcom})
    assert line == ("260K               host-ipt  gcc 1.0000 M | openwatcom 1.5000 M instr/token (x1.500 vs gcc); "
                    "weights 1.040 | 1.040 MB/token")
    missing = side_by_side("15M-shape", "host", {"gcc": gcc, "openwatcom": {"not_measured": "why",
                                                                              "weight_bytes": 6.0e7}})
    assert "gcc 1.0000 M | openwatcom n/a instr/token;" in missing and "vs gcc" not in missing
    wall = side_by_side("260K", "wall", {"gcc": {"tok_s": {"median": 30.0}, "weight_bytes": 1.0e6},
                                         "openwatcom": {"tok_s": {"median": 20.0}, "weight_bytes": 1.0e6}})
    assert "gcc 30.00 | openwatcom 20.00 tok/s (x0.667 vs gcc)" in wall


def test_history_plot_draws_each_toolchain(tmp_path: Path) -> None:
    history = [CommitResult({"sha": c * 40, "date": f"2026-01-0{i + 1}"},
                            {"host-ipt": {"models": {"260K": {"host_ipt": 1.0e6 + i}}},
                             "host-ipt@openwatcom": {"models": {"260K": {"host_ipt": 1.6e6 + i}}}})
               for i, c in enumerate("ab")]
    out = plot_history(history, tmp_path / "both.png", "host_ipt", "host-ipt", also=["host-ipt@openwatcom"])
    assert out.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("args, message", [
    (["--toolchain", "gcc,clang"], "unknown toolchain 'clang'"),
    (["--toolchain", "openwatcom", "--binary", sys.executable],
     "--binary measures that binary as it is; --toolchain builds this checkout's port"),
])
def test_bench_toolchain_bad_input_is_one_line(args: list[str], message: str) -> None:
    run = _bench("--mode", "host", *args, timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llama98-harness: error: ") and message in lines[0]


def test_host_mode_refuses_a_win32_build_in_one_line() -> None:
    with pytest.raises(UsageError, match="host mode runs i386 Linux builds under valgrind; the watcom-win32 build "
                                         "runs only in a Windows 98 guest"):
        bench_model("260K", "host", vm=None, profile="auto", binary=None, repeat=1, icount_shift=1,
                    timeout_scale=1.0, build="watcom-win32")
