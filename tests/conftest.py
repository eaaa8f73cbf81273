"""Fixtures every test module can use without importing them: the builds of the ports under test."""

from tests.support.port_helpers import agent_exe, asan_bin, native_bin, tiny686_bin, win32_exe  # noqa: F401
