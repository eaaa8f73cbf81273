"""The fixtures a test uses to get a guest: one booted guest per xdist worker (`vm_session`), returned to its
clean state before each test (`guest`), and `llama98_run`, which runs the port and judges it with the oracle.

Why per worker: booting is the slow part, and a saved clean state (QMP savevm/loadvm) makes each test start from
the same guest in a fraction of a second. The plugin's own bookkeeping lives in `config.stash`, not on objects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.core.worker import worker_id
from harness.pytest_plugin.options import SKIP_VM, selected_vm

if TYPE_CHECKING:
    from harness.judge.token_check import RunCheck
    from harness.run.judged import Outcome
    from harness.run.session import Session, SessionOptions
    from harness.vm.ftp import FileServer


@dataclass
class PluginState:
    """Per-process plugin state: which sessions have already handed their guest to a test (and so must be
    reverted to the clean state before the next one), and the artifact directories of the guests llama98_run
    started for one test's own model (by node id), which that test's failure report names."""

    used_sessions: set[int] = field(default_factory=set)
    dedicated_artifacts: dict[str, list[Path]] = field(default_factory=dict)


STATE = pytest.StashKey[PluginState]()
log = logging.getLogger(__name__)


def plugin_state(config: pytest.Config) -> PluginState:
    """The plugin's state for this pytest process, created on first use."""
    if STATE not in config.stash:
        config.stash[STATE] = PluginState()
    return config.stash[STATE]


@pytest.fixture(scope="session")
def vm_options(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> SessionOptions:
    """SessionOptions from the command line; skips the test when no --vm was given."""
    from harness.run.session import SessionOptions

    vm = selected_vm(pytestconfig)
    if vm is None:
        pytest.skip(SKIP_VM)
    artifacts_root = pytestconfig.getoption("--vm-artifacts")
    if artifacts_root:
        artifacts = Path(artifacts_root).resolve() / worker_id()
    else:
        artifacts = tmp_path_factory.mktemp(f"vm-{worker_id()}", numbered=True)
    binary = pytestconfig.getoption("--llama98-binary")
    return SessionOptions(
        vm=vm, profile=str(pytestconfig.getoption("--vm-profile")), binary=Path(binary) if binary else None,
        icount_shift=1 if pytestconfig.getoption("--vm-icount") else None,
        use_snapshot=not pytestconfig.getoption("--vm-no-snapshot"), artifacts=artifacts,
        timeout_scale=float(pytestconfig.getoption("--vm-timeout-scale")))


@pytest.fixture(scope="session")
def vm_image(vm_options: SessionOptions) -> tuple[str, Path]:
    """(profile name, disk image path) of the guest under test (tiny686 is built on demand)."""
    from harness.guests.resolve import resolve_guest

    profile, image = resolve_guest(vm_options.vm, vm_options.profile)
    return profile.name, image


@pytest.fixture(scope="session")
def vm_session(vm_options: SessionOptions, vm_image: tuple[str, Path]) -> Iterator[Session]:
    """One booted guest per worker, llama98 injected, its clean state saved; the image is checked untouched.

    The checks run only after a session that started: a failing start propagates its own error unmasked.
    """
    from harness.core.hashing import file_sha256
    from harness.run.session import Session
    from harness.vm.processes import live_qemu_pids

    image = vm_image[1]
    before = file_sha256(image)
    with Session(vm_options) as session:
        session.save_clean_state()
        yield session
    # Asserted here, in this worker, because xdist ignores a worker's exit status.
    leftovers = live_qemu_pids()
    assert not leftovers, f"QEMU processes {sorted(leftovers)} outlived the guest session"
    assert file_sha256(image) == before, f"the guest image {image} was modified during the test session"


@pytest.fixture
def guest(vm_session: Session, pytestconfig: pytest.Config) -> Session:
    """The worker's guest, put back to its clean state (as after boot + binary injection) before the test."""
    used = plugin_state(pytestconfig).used_sessions
    if id(vm_session) in used:
        vm_session.revert_to_clean_state()
    used.add(id(vm_session))
    return vm_session


@pytest.fixture
def file_server(guest: Session) -> FileServer:
    """The FTP server the guest fetches from (127.0.0.1, per-run jail, active-mode bridge)."""
    assert guest.guest is not None
    return guest.guest.file_server


@pytest.fixture(scope="session")
def llama98_binary(vm_session: Session) -> Path:
    """The host path of the llama98 binary inside the guest (built for the profile, or --llama98-binary)."""
    assert vm_session.binary is not None
    return vm_session.binary


class OracleTools:
    """The oracle's entry points, gathered for tests: own generation, teacher-forced verify, full run check."""

    @staticmethod
    def generate_text(*args: Any, **kwargs: Any) -> bytes:
        from harness.oracle.generate import generate_text

        return generate_text(*args, **kwargs)

    @staticmethod
    def verify(*args: Any, **kwargs: Any) -> Any:
        from harness.judge.verify import verify

        return verify(*args, **kwargs)

    @staticmethod
    def check_run(*args: Any, **kwargs: Any) -> RunCheck:
        from harness.judge.token_check import check_run

        return check_run(*args, **kwargs)


@pytest.fixture(scope="session")
def oracle() -> OracleTools:
    """The numpy oracle's entry points (generation, teacher-forced verify, a whole run's check)."""
    return OracleTools()


@pytest.fixture
def llama98_run(guest: Session, pytestconfig: pytest.Config,
                request: pytest.FixtureRequest) -> Callable[..., Outcome]:
    """Run the guest's binary and judge it: `llama98_run(model="stories260K", steps=.., temperature=.., ...)`.

    Injects the model and tokenizer (FTP, checksum-verified), runs the binary under test (our port, or the
    `--llama98-binary` in the `--llama98-cli` style; `budget_mb` is our port's -M memory budget) and judges it
    with the oracle. Returns a
    harness.run.judged.Outcome: `ok`, `verdict`, `level` ("token-level"/"text-level"), `text`, `tok_s`,
    `wall_seconds`, `artifacts`, and for our port `report` and `run`; the test asserts on it.

    Any model `llama98-harness run` can run works here. The worker's guest was booted before any test's model was
    known, so a model that does not fit its disk (tiny686's image has about 520 MB free) gets a guest of its own
    for that one call, started as `run` starts one, with a second work disk of the model's size (a cold boot: a
    machine with an extra disk has no snapshot). A model that fits takes the fast path, the worker's guest.
    """
    from harness.models.names import choose_model
    from harness.run.judged import choose_cli, run_and_judge
    from harness.run.session import PortArgs

    cli = choose_cli(str(pytestconfig.getoption("--llama98-cli")), guest.binary if guest.options.binary else None)

    def run(model: str = "stories260K", tokenizer: str | None = None, temperature: float = 0.0, topp: float = 0.9,
            seed: int = 42, steps: int = 200, prompt: bytes | str | None = None,
            ftp_mode: str | None = None, budget_mb: float | None = None) -> Outcome:
        choice = choose_model(model, tokenizer, allow_download=False)
        prompt_bytes = prompt.encode("utf-8") if isinstance(prompt, str) else prompt
        args = PortArgs(temperature, topp, seed, steps, prompt_bytes, budget_mb)
        if guest.fits([choice.checkpoint, choice.tokenizer]):
            return run_and_judge(guest, guest.inject_model(choice, mode=ftp_mode), args, cli)
        with _dedicated_session(guest, (choice.checkpoint, choice.tokenizer), request) as own:
            return run_and_judge(own, own.inject_model(choice, mode=ftp_mode), args, cli)

    return run


@contextlib.contextmanager
def _dedicated_session(shared: Session, inputs: tuple[Path, ...],
                       request: pytest.FixtureRequest) -> Iterator[Session]:
    """A guest of its own for one llama98_run call whose files do not fit the worker's guest: the worker's options
    and binary (already built), these files as its declared inputs (so it gets its work disk), artifacts in a
    numbered directory under the worker guest's, recorded for a failing test's report. Stopped on the way out."""
    from harness.run.session import Session

    runs = plugin_state(request.config).dedicated_artifacts.setdefault(request.node.nodeid, [])
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    artifacts = shared.artifacts.path / "dedicated" / f"{name}-{len(runs) + 1}"
    runs.append(artifacts)
    options = dataclasses.replace(shared.options, binary=shared.binary, inputs=inputs, artifacts=artifacts)
    log.info(f"the run's files do not fit the worker's guest: starting a guest of its own (artifacts: {artifacts})")
    with Session(options) as own:
        yield own
