"""`llama98-harness bench` and its results history: per-commit JSON files, merging of modes, plots, bad input.

Host mode (callgrind, no VM) runs in every CI run; the guest modes run with --vm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.paths import project_root
from harness.perf.plot import PlotError, plot_history, plot_series
from harness.perf.results import (
    SCHEMA,
    CommitResult,
    ResultsError,
    load_history,
    read_result,
    record_run,
    summary,
    value_of,
)
from tests.support.port_helpers import fixture, fixture_dir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLAMA98_FIXTURE_DIR": str(fixture_dir())}
    return subprocess.run([sys.executable, "-m", "harness.cli", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=project_root(), env=env, check=False)


def _commit(sha: str, date: str) -> dict[str, object]:
    return {"sha": sha, "subject": f"commit {sha[:4]}", "date": date, "dirty": False}


def test_record_run_keeps_one_file_per_commit_and_merges_modes(tmp_path: Path) -> None:
    env = {"host_cpu": "test"}
    first = record_run(tmp_path, _commit("a" * 40, "2026-01-02T00:00:00+00:00"), "host-ipt", env,
                       {"260K": {"host_ipt": 1.0e6}})
    again = record_run(tmp_path, _commit("a" * 40, "2026-01-02T00:00:00+00:00"), "wall", env,
                       {"260K": {"tok_s": summary([3.0, 1.0, 2.0])}})
    replaced = record_run(tmp_path, _commit("a" * 40, "2026-01-02T00:00:00+00:00"), "host-ipt", env,
                          {"260K": {"host_ipt": 2.0e6}})
    assert first == again == replaced == tmp_path / ("a" * 12 + ".json")
    result = read_result(first)
    assert set(result.runs) == {"host-ipt", "wall"}
    assert result.metric("host-ipt", "260K", "host_ipt") == 2.0e6
    assert result.metric("wall", "260K", "tok_s") == {"median": 2.0, "min": 1.0, "max": 3.0,
                                                        "samples": [3.0, 1.0, 2.0]}
    assert value_of(result.metric("wall", "260K", "tok_s")) == 2.0
    record_run(tmp_path, _commit("b" * 40, "2026-01-01T00:00:00+00:00"), "host-ipt", env,
               {"260K": {"host_ipt": 1.5e6}})
    (tmp_path / "notes.json").write_text("{}")  # other JSON beside the history is not history
    history = load_history(tmp_path)
    assert [r.sha[0] for r in history] == ["b", "a"]  # oldest commit first


def test_foreign_or_broken_results_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / ("c" * 12 + ".json")
    bad.write_text(json.dumps({"schema": "other/1"}))
    with pytest.raises(ResultsError, match=f"not a {SCHEMA} results file"):
        read_result(bad)
    bad.write_text("{not json")
    with pytest.raises(ResultsError, match="cannot read results"):
        load_history(tmp_path)
    with pytest.raises(ResultsError, match="does not exist"):
        load_history(tmp_path / "missing")


def test_plots_are_pngs_and_empty_plots_are_errors(tmp_path: Path) -> None:
    history = [CommitResult(_commit(c * 40, f"2026-01-0{i + 1}"),
                            {"wall": {"models": {"260K": {"tok_s": summary([10.0 + i, 11.0 + i, 12.0 + i])}}}})
               for i, c in enumerate("abc")]
    out = plot_history(history, tmp_path / "tok.png", "tok_s")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(PlotError, match="no results hold guest_ipt"):
        plot_history(history, tmp_path / "x.png", "guest_ipt")
    with pytest.raises(PlotError, match="no measured values"):
        plot_series(["a"], {"m": [None]}, tmp_path / "y.png", ylabel="", title="")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_bench_host_mode_writes_results_json_and_plot(tmp_path: Path) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (apt-get install valgrind)")
    fixture("stories260K.bin")
    results, copy, png = tmp_path / "results", tmp_path / "copy.json", tmp_path / "plot.png"
    run = _bench("--mode", "host", "--models", "260K", "--results", str(results), "--json", str(copy),
                 "--plot", str(png))
    assert run.returncode == 0, run.stderr
    assert "260K" in run.stdout and "M instr/token" in run.stdout
    files = list(results.glob("*.json"))
    assert len(files) == 1 and json.loads(copy.read_text()) == json.loads(files[0].read_text())
    result = read_result(files[0])
    figures = result.runs["host-ipt"]["models"]["260K"]
    assert 0.5e6 < figures["host_ipt"] < 3e6 and figures["positions"] == [20, 40]
    env = result.runs["host-ipt"]["environment"]
    assert str(env["compiler"]).startswith("gcc") and env["host_cpu"] and "-march=pentium2" in env["cflags"]
    assert len(result.sha) == 40
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_bench_without_fixtures_measures_the_generated_stand_in_like_run(tmp_path: Path) -> None:
    """One model-resolution path for every command: no fixture here means the stand-in, said once, not an error."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (apt-get install valgrind)")
    empty = tmp_path / "no-fixtures"
    empty.mkdir()
    env = {**os.environ, "LLAMA98_FIXTURE_DIR": str(empty), "LLAMA98_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "--mode", "host", "--models", "260K",
                          "--results", str(tmp_path / "results")], capture_output=True, text=True, timeout=900,
                         cwd=project_root(), env=env, check=False)
    assert run.returncode == 0, run.stderr
    assert "generated stand-in with the shape of stories260K" in run.stderr
    assert "downloads are off" in run.stderr  # the reason the real model was not used, in the same line
    assert "260K" in run.stdout and "M instr/token" in run.stdout


@pytest.mark.parametrize("args, message", [
    (["--models", "260K,nope"], "unknown model 'nope'"),
    (["--repeat", "0"], "--repeat must be at least 1"),
    (["--binary", "/nonexistent/llama98"], "--binary /nonexistent/llama98 does not exist"),
])
def test_bench_bad_input_is_one_line(args: list[str], message: str) -> None:
    run = _bench("--mode", "host", *args, timeout=60)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llama98-harness: error: ") and message in lines[0]


@pytest.mark.vm
def test_bench_guest_modes(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """icount: one run with guest instructions per token and the shift; wall: median and range of N runs."""
    fixture("stories260K.bin")
    vm = request.config.getoption("--vm")
    results = tmp_path / "results"
    icount = _bench("--vm", vm, "--mode", "icount", "--icount-shift", "2", "--results", str(results))
    assert icount.returncode == 0, icount.stderr
    wall = _bench("--vm", vm, "--mode", "wall", "--repeat", "2", "--results", str(results), "--plot",
                  str(tmp_path / "wall.png"))
    assert wall.returncode == 0, wall.stderr
    (result,) = load_history(results)
    figures = result.runs["icount"]["models"]["260K"]
    assert figures["icount_shift"] == 2 and 0.5e6 < figures["guest_ipt"] < 3e6 and figures["ticks"] > 0
    assert result.runs["icount"]["environment"]["qemu"].startswith("QEMU")
    tok_s = result.runs["wall"]["models"]["260K"]["tok_s"]
    assert len(tok_s["samples"]) == 2 and tok_s["min"] <= tok_s["median"] <= tok_s["max"]
    assert result.runs["wall"]["environment"]["profile"] in ("tiny686", "win98")
    assert (tmp_path / "wall.png").read_bytes()[:8] == PNG_MAGIC
