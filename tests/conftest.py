"""Fixtures every test module can use without importing them (the builds of the ports under test), and the
defaults that make a run independent of what the user exported.

The shared inputs (model fixtures, the OpenWatcom source archive) are found the way `.ci/run` finds them: from
$LLAMA98_FIXTURE_DIR / $LLAMA98_OPENWATCOM_SOURCE when set, else from the `shared/` directory beside the checkout.
Setting the same defaults here means `pytest` gives the same results with or without those variables exported.
"""

from __future__ import annotations

import os

import pytest

from harness.core.paths import project_root
from harness.toolchains.openwatcom import SOURCE_ENV
from tests.support.port_helpers import agent_exe, asan_bin, native_bin, tiny686_bin, win32_exe  # noqa: F401

FIXTURE_ENV = "LLAMA98_FIXTURE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    """Default the shared inputs to ../shared, as .ci/run does, when they are there and nothing else was given."""
    shared = project_root().parent / "shared"
    if not os.environ.get(FIXTURE_ENV) and (shared / "fixtures").is_dir():
        os.environ[FIXTURE_ENV] = str(shared / "fixtures")
    archives = sorted((shared / "toolchains").glob("open-watcom-v2-*-src.tar.xz"))
    if not os.environ.get(SOURCE_ENV) and not os.environ.get("WATCOM") and archives:
        os.environ[SOURCE_ENV] = str(archives[-1])
