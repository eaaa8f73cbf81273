"""The pytest plugin tested the way pytest plugins are: a user's test file run by a real pytest (pytester, in a
subprocess) with the plugin loaded from its entry point, judged by its report, its exit code and its JUnit XML.

Without `--vm`: the options are in `--help`, every test that needs a guest is skipped with the reason naming
`--vm` (in `-rs` lines, the plugin's skip summary and the JUnit XML), tests that need none run, and a bad option
value is a one-line usage error. With the outer run's `--vm` (these tests are marked `vm`): a user's test that
fails in the guest reports the serial transcript's tail, a screendump and the artifact directory, in the
terminal report and in the JUnit XML properties, and its guest is gone when the run ends.

Every inner run is a subprocess: the plugin's session-end hook kills every QEMU of its process, which in-process
would include this worker's own session guest.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.core.paths import cache_dir
from harness.pytest_plugin.options import SKIP_VM, SKIP_WIN98

pytest_plugins = ["pytester"]

# The cache the outer run uses, taken before pytester points HOME at its own directory: an inner `--vm tiny686`
# run must find the built guest and its snapshot there, never build them again.
OUTER_CACHE = cache_dir()

INNER = ("-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist")
OPTIONS = ("--vm", "--vm-profile", "--llama98-binary", "--llama98-cli", "--vm-icount", "--vm-no-snapshot",
           "--vm-artifacts", "--vm-timeout-scale")

USER_TESTS = '''
import pytest


def test_wants_the_image(vm_image):
    assert vm_image


def test_wants_a_guest(guest):
    assert guest


def test_wants_the_binary(llama98_binary):
    assert llama98_binary


def test_wants_a_run(llama98_run):
    assert llama98_run().ok


def test_wants_the_file_server(file_server):
    assert file_server


@pytest.mark.vm
def test_marked_vm_without_fixtures():
    raise AssertionError("a vm test must not run without --vm")


@pytest.mark.win98
def test_marked_win98():
    raise AssertionError("a win98 test must not run without a Windows 98 image")


def test_oracle_needs_no_guest(oracle):
    assert callable(oracle.generate_text) and callable(oracle.verify) and callable(oracle.check_run)
'''

NEEDS_A_GUEST = ("test_wants_the_image", "test_wants_a_guest", "test_wants_the_binary", "test_wants_a_run",
                 "test_wants_the_file_server", "test_marked_vm_without_fixtures")


@pytest.fixture()
def user_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose inner runs look like a user's own run (not an xdist worker of this one)."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "400")  # -v lines with their skip reasons untruncated
    return pytester


def test_the_options_are_in_help(user_run: pytest.Pytester) -> None:
    result = user_run.runpytest_subprocess("--help", *INNER, timeout=120)
    assert result.ret == 0
    text = result.stdout.str()
    assert "llama98-harness guest selection:" in text
    for option in OPTIONS:
        assert re.search(rf"^\s+{re.escape(option)}\b", text, re.MULTILINE), f"{option} missing from --help"
    assert "--vm=IMAGE" in text and "tiny686" in text and "--vm-timeout-scale=F" in text


def test_without_vm_every_guest_test_is_skipped_saying_how_to_run_it(user_run: pytest.Pytester) -> None:
    user_run.makepyfile(test_user=USER_TESTS)
    junit = user_run.path / "junit.xml"
    # --strict-markers: the plugin registers the vm and win98 markers it gates on
    result = user_run.runpytest_subprocess("-rs", "-v", "--strict-markers", f"--junitxml={junit}", *INNER,
                                           timeout=120)
    result.assert_outcomes(passed=1, skipped=7)
    text = result.stdout.str()
    assert "test_oracle_needs_no_guest PASSED" in text
    for name in NEEDS_A_GUEST:
        assert re.search(rf"test_user\.py::{name} SKIPPED \(needs a QEMU guest", text), name
    # -rs: one line per skip, with the reason that names --vm
    skip_lines = [line for line in result.stdout.lines if line.startswith("SKIPPED ")]
    vm_reason = [line for line in skip_lines if line.endswith(SKIP_VM)]
    counts = [re.match(r"SKIPPED \[(\d+)\]", line) for line in vm_reason]
    assert sum(int(count.group(1)) for count in counts if count) == 6, skip_lines
    assert "`--vm tiny686`" in SKIP_VM
    assert [line for line in skip_lines if line.endswith(SKIP_WIN98)], skip_lines
    # the plugin's own summary, grouped by reason
    assert "llama98-harness: skipped tests" in text
    assert f"   6 skipped: {SKIP_VM}" in result.stdout.lines
    assert f"   1 skipped: {SKIP_WIN98}" in result.stdout.lines
    # JUnit XML: each skip carries the reason
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    for name in NEEDS_A_GUEST:
        skipped = cases[name].find("skipped")
        assert skipped is not None and "--vm tiny686" in (skipped.get("message") or ""), name
    assert cases["test_oracle_needs_no_guest"].find("skipped") is None


def _single_error_line(result: pytest.RunResult, *needles: str) -> str:
    """The one line of stderr+stdout naming all `needles`; there must be exactly one and no traceback."""
    lines = result.stderr.lines + result.stdout.lines
    text = "\n".join(lines)
    assert "Traceback" not in text and "INTERNALERROR" not in text, text[-3000:]
    matching = [line for line in lines if all(needle in line for needle in needles)]
    assert len(matching) == 1, text[-3000:]
    return matching[0]


@pytest.mark.parametrize("args", [
    ("--vm", "/nonexistent.img"),
    ("--vm", "/nonexistent.img", "--vm-profile", "tiny686"),
    ("--vm", "{tmp}", "--vm-profile", "tiny686"),
], ids=["missing-image", "missing-image-named-profile", "directory-named-profile"])
def test_a_bad_vm_value_is_a_one_line_usage_error(args: tuple[str, ...], user_run: pytest.Pytester) -> None:
    user_run.makepyfile(test_user=USER_TESTS)
    argv = [arg.replace("{tmp}", str(user_run.path)) for arg in args]
    result = user_run.runpytest_subprocess(*argv, *INNER, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    line = _single_error_line(result, f"--vm {argv[1]}")
    assert line.startswith("ERROR: ") and ("does not exist" in line or "is a directory" in line), line


def test_an_unknown_profile_is_a_one_line_usage_error(user_run: pytest.Pytester) -> None:
    user_run.makepyfile(test_user=USER_TESTS)
    image = user_run.path / "disk.img"
    sector = bytearray(512)
    sector[510:512] = b"\x55\xaa"
    image.write_bytes(bytes(sector) + bytes(1024 * 1024))
    result = user_run.runpytest_subprocess("--vm", str(image), "--vm-profile", "nosuch", *INNER, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = _single_error_line(result, "unknown guest profile 'nosuch'")
    assert "tiny686" in line and "win98" in line


@pytest.mark.parametrize("value", ["abc", "-1"])
def test_a_bad_timeout_scale_is_a_one_line_usage_error(value: str, user_run: pytest.Pytester) -> None:
    """A scale must be a positive number: -1 would make every guest timeout expire at once."""
    user_run.makepyfile(test_user=USER_TESTS)
    result = user_run.runpytest_subprocess(f"--vm-timeout-scale={value}", *INNER, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:]
    _single_error_line(result, "--vm-timeout-scale", value)


# -----------------------------------------------------------------------------------------------------------------
# With a guest: the failure evidence

FAILING_USER_TESTS = '''
def test_a_guest_command_that_fails(guest):
    result = guest.guest.run("echo evidence-marker-7f3a; false", 60)
    assert result.exit_code == 0, "the command failed in the guest"


def test_a_passing_one(guest):
    assert guest.guest.run("true", 60).exit_code == 0
'''


def _outer_tiny686(config: pytest.Config) -> str:
    """The outer run's --vm, passed to the inner run; skips unless it is a tiny686 guest (the test uses a shell)."""
    chosen = config.getoption("--vm")
    if not chosen:
        pytest.skip(SKIP_VM)
    if str(chosen) != "tiny686":
        from harness.guests.detect import detect_profile

        profile = str(config.getoption("--vm-profile"))
        if (profile if profile != "auto" else detect_profile(Path(str(chosen)))) != "tiny686":
            pytest.skip(f"drives a shell in the guest; --vm {chosen} is not a tiny686 guest")
    return str(chosen)


def _qemu_alive(artifacts: Path) -> bool:
    """Whether the QEMU recorded in these artifacts still runs (found by its private overlay)."""
    command = (artifacts / "qemu-cmdline.txt").read_text()
    overlay = next(part for part in command.split() if "overlay.qcow2" in part).split("file=", 1)[1].split(",", 1)[0]
    return subprocess.run(["pgrep", "-f", overlay], capture_output=True).returncode == 0


@pytest.mark.vm
def test_a_failing_guest_test_reports_its_evidence(user_run: pytest.Pytester, request: pytest.FixtureRequest,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    vm = _outer_tiny686(request.config)
    monkeypatch.setenv("LLAMA98_CACHE", str(OUTER_CACHE))  # the outer run's built guest and snapshot
    user_run.makepyfile(test_user=FAILING_USER_TESTS)
    # Any file serves as the binary under test: these tests never run it, so no port build is needed.
    binary = user_run.path / "not-a-port"
    binary.write_text("#!/bin/sh\nexit 0\n")
    artifacts_root = user_run.path / "artifacts"
    junit = user_run.path / "junit.xml"
    result = user_run.runpytest_subprocess(
        "--vm", vm, "--llama98-binary", str(binary), "--vm-artifacts", str(artifacts_root), f"--junitxml={junit}",
        "-v", *INNER, timeout=600)
    result.assert_outcomes(passed=1, failed=1)
    artifacts = artifacts_root / "main"
    assert artifacts.is_dir() and (artifacts / "serial.log").is_file()

    # The terminal report: a "llama98 guest" section under the failure, with the three pieces of evidence.
    text = result.stdout.str()
    assert re.search(r"^-+ llama98 guest -+$", text, re.MULTILINE), text[-4000:]
    assert text.count(f"artifacts: {artifacts}") == 1  # only for the failing test
    screendump = re.search(r"^screendump: (\S+\.png)$", text, re.MULTILINE)
    assert screendump is not None and Path(screendump.group(1)).is_file()
    assert Path(screendump.group(1)).parent == artifacts
    assert "test_a_guest_command_that_fails" in Path(screendump.group(1)).name
    transcript = re.search(r"^serial transcript: (\S+) \(last (\d+) lines\)$", text, re.MULTILINE)
    assert transcript is not None and Path(transcript.group(1)) == artifacts / "serial.log"
    assert 0 < int(transcript.group(2)) <= 40
    assert re.search(r"^evidence-marker-7f3a\r?$", text, re.MULTILINE), "the transcript tail misses the command"

    # JUnit XML: the failing test's properties name the evidence, and every path named exists.
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    failing, passing = cases["test_a_guest_command_that_fails"], cases["test_a_passing_one"]
    assert failing.find("failure") is not None and passing.find("failure") is None
    properties = {prop.get("name"): prop.get("value") or "" for prop in failing.iter("property")}
    assert properties.get("artifacts") == str(artifacts)
    paths = [Path(value) for value in properties.values()]
    assert all(path.exists() for path in paths), properties
    assert not list(passing.iter("property"))
    assert not _qemu_alive(artifacts), "the inner run's guest outlived it"
    # README: "the report carries the serial transcript tail, a screendump and the artifact directory (also in
    # JUnit XML properties)": a CI reading only the XML must find the screendump and the transcript too.
    assert any(path.suffix == ".png" and path.is_file() for path in paths), \
        f"no screendump among the JUnit properties: {properties}"
    assert any(path == artifacts / "serial.log" for path in paths), \
        f"no serial transcript among the JUnit properties: {properties}"


@pytest.mark.vm
def test_a_vm_run_with_a_missing_binary_fails_in_one_line(user_run: pytest.Pytester, request: pytest.FixtureRequest,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    vm = _outer_tiny686(request.config)
    monkeypatch.setenv("LLAMA98_CACHE", str(OUTER_CACHE))
    user_run.makepyfile(test_user=FAILING_USER_TESTS)
    missing = user_run.path / "no-such-binary"
    result = user_run.runpytest_subprocess("--vm", vm, "--llama98-binary", str(missing), *INNER, timeout=600)
    assert result.ret != pytest.ExitCode.OK
    text = result.stdout.str() + result.stderr.str()
    assert f"llama98 binary not found: {missing}" in text, text[-3000:]
    assert "INTERNALERROR" not in text

