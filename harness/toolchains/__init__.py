"""Toolchains the harness builds from source and caches, or takes from an existing installation.

Why the harness builds them: a compiler that only the nightly CI job has (OpenWatcom, via setup-watcom) finds
the port's mistakes a day late; built once from a source archive into the cache, it is there for every test and
developer, keyed by the source's hash so an upgrade is a new archive, not a new procedure.
"""

from harness.toolchains.openwatcom import (
    OpenWatcom,
    ToolchainError,
    ToolchainMissing,
    build_openwatcom,
    find_openwatcom,
    installed_openwatcom,
)

__all__ = ["OpenWatcom", "ToolchainError", "ToolchainMissing", "build_openwatcom", "find_openwatcom",
           "installed_openwatcom"]
