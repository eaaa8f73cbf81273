"""`pytest -n 2`: two xdist workers each boot their own guest and run the port at the same time, with no shared
QEMU, FTP port, sockets or artifact files. Proven by running a small suite in a subprocess and comparing what the
two workers recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

INNER_SUITE = '''
import json, os, time
from pathlib import Path

OUT = Path(os.environ["PARALLEL_PROOF_DIR"])


def _record(name, guest, llama98_run):
    me = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (OUT / f"started-{name}").write_text(me)
    other = "b" if name == "a" else "a"
    deadline = time.monotonic() + 240
    while not (OUT / f"started-{other}").exists():  # a barrier: both tests must be running at once
        assert time.monotonic() < deadline, "the other worker never started"
        time.sleep(0.1)
    begin = time.time()
    outcome = llama98_run(model="stories260K", temperature=0.0, steps=80)
    end = time.time()
    assert outcome.check.ok, str(outcome.check)
    (OUT / f"{name}.json").write_text(json.dumps({
        "worker": me, "qemu_pid": guest.guest.machine.pid, "ftp_port": guest.guest.file_server.port,
        "artifacts": str(guest.artifacts), "begin": begin, "end": end,
        "text": outcome.run.text.decode("utf-8", "replace")}))


def test_a(guest, llama98_run):
    _record("a", guest, llama98_run)


def test_b(guest, llama98_run):
    _record("b", guest, llama98_run)
'''


def test_two_workers_run_two_guests_at_once(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_inner.py").write_text(INNER_SUITE)
    proof = tmp_path / "proof"
    proof.mkdir()
    env = dict(os.environ, PARALLEL_PROOF_DIR=str(proof))
    env.pop("PYTEST_XDIST_WORKER", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "--vm", "tiny686",
         "--vm-artifacts", str(tmp_path / "artifacts"), "--rootdir", str(suite), str(suite / "test_inner.py")],
        capture_output=True, text=True, timeout=600, env=env, cwd=suite)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    a = json.loads((proof / "a.json").read_text())
    b = json.loads((proof / "b.json").read_text())
    assert a["worker"] != b["worker"]
    assert a["qemu_pid"] != b["qemu_pid"]
    assert a["ftp_port"] != b["ftp_port"]
    assert a["artifacts"] != b["artifacts"]
    assert a["begin"] < b["end"] and b["begin"] < a["end"], "the two runs did not overlap in time"
    assert a["text"] == b["text"]  # same greedy story from both guests
    for pid in (a["qemu_pid"], b["qemu_pid"]):  # the inner session stopped both QEMUs
        assert not Path(f"/proc/{pid}").exists() or "qemu" not in Path(f"/proc/{pid}/cmdline").read_text(
            errors="replace"), f"QEMU {pid} outlived its test session"
