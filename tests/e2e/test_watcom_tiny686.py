"""The OpenWatcom i386 Linux build (watcom-tiny686: the nightly's compiler and flags, -bt=linux) in the Pentium II
guest given with --vm (tiny686 in CI): injected over FTP, run over the serial console, judged by the oracle.

The worker's shared guest runs the GCC build (or --llama98-binary), so this module starts a guest of its own with
the OpenWatcom binary (Session with `binary=`), from the same options (image, artifacts root, timeouts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from harness.models.names import choose_model
from harness.run.judged import Outcome, run_and_judge
from harness.run.session import PortArgs, Session, SessionOptions
from tests.support.port_helpers import built

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def watcom_session(vm_options: SessionOptions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    binary = built("watcom-tiny686")
    artifacts = (vm_options.artifacts / "watcom-tiny686" if vm_options.artifacts
                 else tmp_path_factory.mktemp("watcom-vm"))
    with Session(dataclasses.replace(vm_options, binary=binary, artifacts=artifacts)) as session:
        yield session


def _run(session: Session, model: str, args: PortArgs) -> Outcome:
    choice = choose_model(model, allow_download=False)
    return run_and_judge(session, session.inject_model(choice), args, "llama98")


def test_the_guest_runs_the_openwatcom_binary(watcom_session: Session) -> None:
    assert watcom_session.binary == built("watcom-tiny686")
    assert watcom_session.binary_fetch is not None
    assert watcom_session.binary_fetch.size == built("watcom-tiny686").stat().st_size


@pytest.mark.parametrize(("model", "args"), [
    ("stories260K", PortArgs(temperature=0.0, steps=200)),
    ("stories260K", PortArgs(temperature=0.8, topp=0.9, seed=1234, steps=160, prompt=b"Once upon a time")),
    ("stories260K:q8_0", PortArgs(temperature=0.0, steps=120, prompt=b"Once upon a time")),
    ("stories260K:q8_0", PortArgs(temperature=1.0, topp=1.0, seed=5, steps=100)),
], ids=["fp32-greedy", "fp32-sampled", "q8_0-greedy", "q8_0-sampled"])
def test_openwatcom_build_in_the_guest_gets_an_ok_verdict(model: str, args: PortArgs,
                                                          watcom_session: Session) -> None:
    outcome = _run(watcom_session, model, args)
    assert outcome.ok and outcome.level == "token-level", outcome.verdict
    assert outcome.run is not None and outcome.run.report.tokens
    assert outcome.tok_s is not None and outcome.tok_s > 0
