"""The pytest plugin (entry point `pytest11`): `pytest --vm IMAGE` and the markers that gate VM tests.

Tests marked `vm` need a QEMU guest; they run when `--vm` names one (`tiny686` for the built-in stand-in, built
on demand) and are skipped otherwise. Tests marked `win98` need a real Windows 98 image. A skip always says how
to run the test, and the terminal summary lists every skip with its reason, so nothing is skipped silently.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.port.check import RunCheck
    from harness.vm.ftp import FileServer
    from harness.run.session import InjectedModel, PortRun, Session, SessionOptions

TRANSCRIPT_TAIL_LINES = 40

BUILTIN_GUEST = "tiny686"  # also harness.run.session.BUILTIN_GUEST; kept literal so loading the plugin imports nothing

SKIP_VM = (
    "needs a QEMU guest: run with `--vm tiny686` (the built-in stand-in guest, built on demand) "
    "or `--vm IMAGE`"
)
SKIP_WIN98 = (
    "needs a real Windows 98 image: prepare a copy with "
    "`llama98-harness prepare-image win98.img -o win98-harness.img`, then run "
    "`pytest --vm win98-harness.img`"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llama98", "llama98-harness guest selection")
    group.addoption("--vm", metavar="IMAGE", default=None,
                    help="disk image to test in (`tiny686` = the built-in stand-in guest)")
    group.addoption("--vm-profile", metavar="NAME", default="auto",
                    help="guest profile (tiny686, win98, or auto = detect from the image)")
    group.addoption("--llama98-binary", metavar="PATH", default=None,
                    help="test this prebuilt llama98 binary instead of building one")
    group.addoption("--vm-icount", action="store_true", default=False,
                    help="run QEMU with -icount shift=1,sleep=off (deterministic guest time)")
    group.addoption("--vm-no-snapshot", action="store_true", default=False,
                    help="always cold-boot the guest instead of loading the cached snapshot")
    group.addoption("--vm-artifacts", metavar="DIR", default=None,
                    help="keep run artifacts (serial transcripts, screendumps, reports) under DIR")
    group.addoption("--vm-timeout-scale", metavar="F", type=float, default=1.0,
                    help="multiply every guest timeout by F (slow hosts)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: needs a QEMU guest (--vm tiny686 or --vm IMAGE)")
    config.addinivalue_line("markers", "win98: needs a real Windows 98 image given with --vm")
    config.addinivalue_line("markers", "bench: benchmark printing figures (run with -m bench)")
    config.addinivalue_line("markers", "wine: runs Win32 binaries under Wine")


def selected_vm(config: pytest.Config) -> str | None:
    """The --vm value: `tiny686`, a path to an image, or None."""
    value = config.getoption("--vm")
    return str(value) if value else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from harness.core.errors import HarnessError

    vm = selected_vm(config)
    try:
        is_win98 = vm is not None and vm != BUILTIN_GUEST and _looks_like_win98(config, Path(vm))
    except HarnessError as error:  # a missing or unreadable --vm image: one line, not an INTERNALERROR
        raise pytest.UsageError(f"--vm {vm}: {error}") from None
    for item in items:
        if "win98" in item.keywords and not is_win98:
            item.add_marker(pytest.mark.skip(reason=SKIP_WIN98))
        elif "vm" in item.keywords and vm is None:
            item.add_marker(pytest.mark.skip(reason=SKIP_VM))


def _looks_like_win98(config: pytest.Config, image: Path) -> bool:
    """Whether --vm names a Windows 98 image (explicit --vm-profile wins over detection)."""
    profile = str(config.getoption("--vm-profile"))
    if profile != "auto":
        from harness.vm.profile import load_profile

        return load_profile(profile).console.kind == "agent98"  # "win98" or a custom copy of it
    from harness.guests.detect import detect_profile

    return detect_profile(image) == "win98"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    """List every skip grouped by reason, so a skipped VM or Windows 98 test is never silent."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("llama98-harness: skipped tests")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count:4d} skipped: {reason}")


# -- fixtures ---------------------------------------------------------------------------------------------------


def _worker() -> str:
    """The pytest-xdist worker id (`gw0`, ...) or `main`: keeps each worker's VM, ports and files apart."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def vm_options(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> SessionOptions:
    """SessionOptions from the command line; skips the test when no --vm was given."""
    from harness.run.session import SessionOptions

    vm = selected_vm(pytestconfig)
    if vm is None:
        pytest.skip(SKIP_VM)
    artifacts_root = pytestconfig.getoption("--vm-artifacts")
    if artifacts_root:
        artifacts = Path(artifacts_root).resolve() / _worker()
    else:
        artifacts = tmp_path_factory.mktemp(f"vm-{_worker()}", numbered=True)
    binary = pytestconfig.getoption("--llama98-binary")
    return SessionOptions(
        vm=vm, profile=str(pytestconfig.getoption("--vm-profile")), binary=Path(binary) if binary else None,
        icount_shift=1 if pytestconfig.getoption("--vm-icount") else None,
        use_snapshot=not pytestconfig.getoption("--vm-no-snapshot"), artifacts=artifacts,
        timeout_scale=float(pytestconfig.getoption("--vm-timeout-scale")))


@pytest.fixture(scope="session")
def vm_image(vm_options: SessionOptions) -> tuple[str, Path]:
    """(profile name, disk image path) of the guest under test (tiny686 is built on demand)."""
    from harness.run.session import resolve_guest

    profile, image = resolve_guest(vm_options.vm, vm_options.profile)
    return profile.name, image


@pytest.fixture(scope="session")
def vm_session(vm_options: SessionOptions, vm_image: tuple[str, Path]) -> Iterator[Session]:
    """One booted guest per worker, llama98 injected, its clean state saved; the image is checked untouched."""
    from harness.core.hashing import file_sha256
    from harness.run.session import Session

    from harness.vm.machine import live_qemu_pids

    image = vm_image[1]
    before = file_sha256(image)
    session = Session(vm_options)
    try:
        session.start()
        session.save_clean_state()
        yield session
    finally:
        session.stop()
        leftovers = live_qemu_pids()  # asserted here, in this worker: xdist ignores a worker's exit status
        assert not leftovers, f"QEMU processes {sorted(leftovers)} outlived the guest session"
        after = file_sha256(image)
        assert after == before, f"the guest image {image} was modified during the test session"


@pytest.fixture
def guest(vm_session: Session) -> Session:
    """The worker's guest, put back to its clean state (as after boot + binary injection) before the test."""
    if getattr(vm_session, "_plugin_used", False):
        vm_session.revert_to_clean_state()
    vm_session._plugin_used = True  # type: ignore[attr-defined]
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
        from harness.oracle.verify import verify

        return verify(*args, **kwargs)

    @staticmethod
    def check_run(*args: Any, **kwargs: Any) -> RunCheck:
        from harness.port.check import check_run

        return check_run(*args, **kwargs)


@pytest.fixture(scope="session")
def oracle() -> OracleTools:
    return OracleTools()


@dataclass
class RunOutcome:
    """A port run in the guest and its check against the oracle."""

    injected: InjectedModel
    run: PortRun
    check: RunCheck


@pytest.fixture
def llama98_run(guest: Session) -> Callable[..., RunOutcome]:
    """Run the port in the guest: `llama98_run(model="stories260K", steps=.., temperature=.., seed=.., ...)`.

    Injects the model and tokenizer (FTP, checksum-verified), runs with `-r -`, parses the report and checks it
    with the oracle. Returns a RunOutcome; the test asserts on it.
    """
    from harness.port.check import check_run
    from harness.port.models import choose_model
    from harness.run.session import PortArgs

    def run(model: str = "stories260K", tokenizer: str | None = None, temperature: float = 0.0, topp: float = 0.9,
            seed: int = 42, steps: int = 200, prompt: bytes | str | None = None,
            ftp_mode: str | None = None) -> RunOutcome:
        choice = choose_model(model, tokenizer, allow_download=False)
        injected = guest.inject_model(choice, mode=ftp_mode)
        prompt_bytes = prompt.encode("utf-8") if isinstance(prompt, str) else prompt
        port_run = guest.run_port(injected, PortArgs(temperature, topp, seed, steps, prompt_bytes))
        return RunOutcome(injected, port_run, check_run(choice, port_run.text, port_run.report))

    return run


# -- failure evidence -------------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On a failing VM test: attach the serial transcript tail, a fresh screendump and the artifact dir."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or "vm_session" not in getattr(item, "fixturenames", ()):
        return
    session = getattr(item, "funcargs", {}).get("vm_session") or getattr(item, "funcargs", {}).get("guest")
    if session is None:
        return
    lines = [f"artifacts: {session.artifacts}"]
    if session.guest is not None:
        screendump = session.guest.machine.try_screendump(f"failed-{item.name}")
        if screendump:
            lines.append(f"screendump: {screendump}")
    transcript = session.artifacts.serial_transcript
    if transcript.exists():
        tail = transcript.read_text(encoding="utf-8", errors="replace").splitlines()[-TRANSCRIPT_TAIL_LINES:]
        lines += [f"serial transcript: {transcript} (last {len(tail)} lines)", *tail]
    report.sections.append(("llama98 guest", "\n".join(lines)))
    item.user_properties.append(("artifacts", str(session.artifacts)))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No QEMU we started may outlive the test session: kill any leftover and fail the run loudly."""
    import sys

    qemu_module = sys.modules.get("harness.vm.machine")
    if qemu_module is None:
        return
    leftovers = qemu_module.live_qemu_pids()
    if leftovers:
        qemu_module._kill_leftovers()
        print(f"\nllama98-harness: QEMU processes {sorted(leftovers)} were still running at the end of the test "
              f"session; they were killed, and the session fails", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
