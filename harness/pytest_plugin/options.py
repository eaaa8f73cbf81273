"""Command-line options, markers and skips: which tests can run against which guest, said out loud."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path

import pytest

from harness.guests import BUILTIN_GUEST

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
    group.addoption("--llama98-cli", choices=("auto", "llama98", "llama2c"), default="auto",
                    help="command-line style of --llama98-binary: llama98 (our port: -r report, token-level "
                         "verdict), llama2c (llama2.c's flags, text-level verdict), auto (default: detected)")
    group.addoption("--vm-icount", action="store_true", default=False,
                    help="run QEMU with -icount shift=1,sleep=off (deterministic guest time)")
    group.addoption("--vm-no-snapshot", action="store_true", default=False,
                    help="always cold-boot the guest instead of loading the cached snapshot")
    group.addoption("--vm-artifacts", metavar="DIR", default=None,
                    help="keep run artifacts (serial transcripts, screendumps, reports) under DIR")
    group.addoption("--vm-timeout-scale", metavar="F", type=_positive_scale, default=1.0,
                    help="multiply every guest timeout by F (slow hosts)")


def _positive_scale(text: str) -> float:
    """A timeout scale: a positive finite number (0 or -1 would make every guest timeout expire at once)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


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
        is_win98 = vm is not None and vm != BUILTIN_GUEST and _looks_like_win98(config, _probed(Path(vm)))
    except HarnessError as error:  # a missing or unreadable --vm image: one line, not an INTERNALERROR
        raise pytest.UsageError(f"--vm {vm}: {error}") from None
    for item in items:
        # Markers, not keywords: an item's keywords also hold the names of its directories, so "vm" in
        # item.keywords would skip every test under tests/unit/vm/ (and "win98" those under guests/win98/).
        if item.get_closest_marker("win98") is not None and not is_win98:
            item.add_marker(pytest.mark.skip(reason=SKIP_WIN98))
        elif item.get_closest_marker("vm") is not None and vm is None:
            item.add_marker(pytest.mark.skip(reason=SKIP_VM))


def _probed(image: Path) -> Path:
    """The --vm image, checked before any test runs (ImageError when it is missing, a directory, unreadable or not
    a disk image), whether or not --vm-profile spares it the detection: otherwise every guest test would fail
    in its fixture with a bare OSError instead of the run stopping at one line."""
    from harness.vm.disk import DiskImage

    DiskImage.probe(image)
    return image


def _looks_like_win98(config: pytest.Config, image: Path) -> bool:
    """Whether --vm names a Windows 98 image (explicit --vm-profile wins over detection)."""
    profile = str(config.getoption("--vm-profile"))
    if profile != "auto":
        from harness.vm.profile import load_profile

        return load_profile(profile).console.kind == "agent98"  # "win98" or a custom copy of it
    from harness.guests.detect import detect_profile

    return detect_profile(image) == "win98"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
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


