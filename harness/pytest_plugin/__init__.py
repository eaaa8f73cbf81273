"""The pytest plugin (entry point `pytest11`): `pytest --vm IMAGE`, the markers that gate VM tests, the fixtures
that hand a test a ready guest, and the evidence attached when a VM test fails.

Tests marked `vm` need a QEMU guest; they run when `--vm` names one (`tiny686` for the built-in stand-in, built
on demand) and are skipped otherwise. Tests marked `win98` need a real Windows 98 image. A skip always says how
to run the test, and the terminal summary lists every skip with its reason, so nothing is skipped silently.

Modules: `options` (command-line options, markers, skips), `fixtures` (vm_session, guest, llama98_run, ...),
`evidence` (failure report sections and the session-end QEMU check). Loading the plugin imports no harness
layer: everything heavy is imported inside the fixtures, so `pytest --help` stays fast.
"""

from harness.pytest_plugin.evidence import (
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_sessionstart,
)
from harness.pytest_plugin.fixtures import (
    file_server,
    guest,
    llama98_binary,
    llama98_run,
    oracle,
    vm_image,
    vm_options,
    vm_session,
)
from harness.pytest_plugin.options import (
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_terminal_summary,
)

__all__ = [
    "file_server", "guest", "llama98_binary", "llama98_run", "oracle", "vm_image", "vm_options", "vm_session",
    "pytest_addoption", "pytest_collection_modifyitems", "pytest_configure", "pytest_terminal_summary",
    "pytest_runtest_makereport", "pytest_sessionfinish", "pytest_sessionstart",
]
