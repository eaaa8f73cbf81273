"""`bisect --toolchain openwatcom`: every commit of the port built with OpenWatcom (watcom-tiny686) and measured by
host-ipt (callgrind, no guest, exact), on the same throwaway history as test_runner.py: the same slow commit is
named, the commit that does not compile is skipped, and the records say which build was measured.

In CI the OpenWatcom source archive is given ($LLAMA98_OPENWATCOM_SOURCE), so this does not skip there."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import UsageError
from harness.core.paths import project_root
from harness.perf.bisect import bisect, slower_by
from harness.toolchains.openwatcom import ToolchainMissing, find_openwatcom
from tests.support.port_helpers import fixture, fixture_dir
from tests.unit.perf.bisect.test_runner import PortRepo, make_port_repo, repo_snapshot


@pytest.fixture()
def watcom_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PortRepo:
    """The port's history with a slow and a broken commit; the harness cache stays shared, since a private one
    would rebuild OpenWatcom itself (measurements are taken fresh with --fresh / use_cache=False instead)."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (apt-get install valgrind)")
    try:
        find_openwatcom()
    except ToolchainMissing as error:
        pytest.skip(str(error))
    fixture("stories260K.bin")
    monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(fixture_dir()))
    return make_port_repo(tmp_path)


def test_bisect_with_openwatcom_names_the_slow_commit(watcom_repo: PortRepo, tmp_path: Path) -> None:
    before = repo_snapshot(watcom_repo.path)
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "harness.cli", "bisect", "--repo", str(watcom_repo.path),
                             "--good", watcom_repo.good, "--bad", "main", "--toolchain", "openwatcom",
                             "--metric", "host-ipt", "--fresh", "--no-plot", "--out", str(out)],
                            capture_output=True, text=True, timeout=900, cwd=project_root(), check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert repo_snapshot(watcom_repo.path) == before
    assert f"culprit: {watcom_repo.slow} model: check the weights before every step" in result.stdout
    assert "the watcom-tiny686 build" in result.stderr  # what each step builds is said up front
    assert "Error! E1063" in result.stderr  # the broken commit failed in OpenWatcom's compiler, and was skipped

    data = json.loads((out / "bisect.json").read_text())
    assert data["toolchain"] == "openwatcom" and data["metric"] == "host-ipt"
    assert data["environment"]["build"] == "watcom-tiny686" and data["environment"]["toolchain"] == "openwatcom"
    assert "Open Watcom" in data["environment"]["compiler"]
    assert data["culprit"]["sha"] == watcom_repo.slow
    verdicts = {commit["sha"]: commit["verdict"] for commit in data["commits"]}
    assert verdicts[watcom_repo.broken] == "skip"
    culprit, parent = data["culprit"]["value"], data["culprit_parent"]["value"]
    assert slower_by("host-ipt", parent, culprit) >= 0.20
    assert parent == pytest.approx(data["good"]["value"], rel=1e-3)
    assert not any(commit.get("cached") for commit in (data["good"], data["culprit"]))


def test_openwatcom_and_gcc_measure_different_builds_of_the_same_commit(watcom_repo: PortRepo,
                                                                         tmp_path: Path) -> None:
    """The two toolchains' figures are not interchangeable: each bisection measures its own build (and caches
    it under its own key), so an OpenWatcom baseline never meets a gcc figure."""
    slow_index = watcom_repo.commits.index(watcom_repo.slow)
    bad = watcom_repo.commits[slow_index]
    good = watcom_repo.commits[slow_index - 1]
    gcc = bisect(watcom_repo.path, good, bad, out_dir=tmp_path / "gcc", plot=False)
    watcom = bisect(watcom_repo.path, good, bad, out_dir=tmp_path / "watcom", plot=False, toolchain="openwatcom")
    assert gcc.culprit == watcom.culprit == watcom_repo.slow
    assert gcc.good.value is not None and watcom.good.value is not None
    assert abs(watcom.good.value / gcc.good.value - 1) > 0.05


def test_unknown_toolchain_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown toolchain 'clang': choose from gcc, openwatcom$"):
        bisect(tmp_path, "good", "bad", out_dir=tmp_path / "run", toolchain="clang")
    with pytest.raises(UsageError, match="unknown toolchain 'clang': choose from auto, gcc, openwatcom$"):
        bisect(tmp_path, "good", "bad", out_dir=tmp_path / "run", toolchain="clang", build_command="make run",
               binary="run", cli="llama2c", metric="tok_s")
