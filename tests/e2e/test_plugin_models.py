"""A user's own test file, run by pytest with the llama98 plugin (entry point `llama98`), can run any model that
`llama98-harness run` can, including one that does not fit the disk of the guest the plugin booted for the worker.

The worker's guest is booted before any test's model is known, so it has no second work disk; tiny686's image has
about 520 MB free. A model bigger than that gets a guest of its own for that llama98_run call (with a work disk of
its size), and a model that fits still takes the fast path, the worker's guest.

The big model: 110M-shape (438 MB of float32) fits the image with room to spare and so proves nothing here, and
the only bigger generated shape, 1B-shape, takes far too long (5 GB to generate; 1.3 GB as Q8_0 to move and run).
So the user's test makes its own: 560 MB of float32 whose bulk is an unshared 32000 x 2048 classifier and
embedding table, one layer (about 75 M multiply-adds per token, less than 110M-shape's 110 M), with the generated
32000-piece tokenizer. Before the fix llama98_run refused it: "the run's files (566.1 MB) do not fit the guest's
work disk (525.9 MB free); declare them in SessionOptions.inputs ...".

The user's file runs in a pytest subprocess (pytester), as a user would run it: its plugin, its guests and its
QEMU processes are its own, never this worker's. About 2 minutes here (a cold boot of the second guest, 560 MB over
FTP, two streamed tokens).
"""

from __future__ import annotations

import time

import pytest

from harness.core.paths import project_root

pytestmark = pytest.mark.vm
pytest_plugins = ["pytester"]

USER_TESTS = '''
from harness.models.modelgen import ModelShape, cached_checkpoint, cached_tokenizer

TOO_BIG = ModelShape(2048, 64, 1, 32, 1, 32000, 64, shared_classifier=False)  # 560 MB of float32


def test_a_model_that_fits_runs_in_the_worker_guest(llama98_run, vm_session):
    outcome = llama98_run(model="260K-shape", steps=2)
    assert outcome.ok, outcome.verdict
    assert outcome.artifacts == vm_session.artifacts.path


def test_a_model_bigger_than_the_worker_guest_disk_gets_a_guest_of_its_own(llama98_run, vm_session):
    model = cached_checkpoint(TOO_BIG)
    assert model.stat().st_size > 540 * 10**6
    outcome = llama98_run(model=str(model), tokenizer=str(cached_tokenizer(32000)), steps=2)
    assert outcome.ok, outcome.verdict
    assert outcome.level == "token-level" and len(outcome.report.tokens) == 2
    assert outcome.artifacts.parent == vm_session.artifacts.path / "dedicated"
    command_line = (outcome.artifacts / "qemu-cmdline.txt").read_text()
    assert "if=ide,index=1" in command_line  # the work disk the model needed
    print(f"BIG-RUN {outcome.verdict}")
'''


def test_a_users_test_runs_a_model_that_does_not_fit_the_session_guest(
        pytester: pytest.Pytester, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(project_root()))  # the subprocess imports this checkout's harness
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # a user's run, not one of this run's workers
    pytester.makepyfile(test_user=USER_TESTS)
    args = ["--vm", str(pytestconfig.getoption("--vm")), "-p", "no:randomly", "-s",
            "--vm-timeout-scale", str(pytestconfig.getoption("--vm-timeout-scale"))]
    binary = pytestconfig.getoption("--llama98-binary")
    if binary:
        args += ["--llama98-binary", str(binary)]
    started = time.monotonic()
    result = pytester.runpytest_subprocess(*args, timeout=1800)
    seconds = time.monotonic() - started
    print(f"\na user's test file with a 560 MB model and a 1 MB one: {seconds:.0f} s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*BIG-RUN ok: 2 tokens match the oracle*"])
