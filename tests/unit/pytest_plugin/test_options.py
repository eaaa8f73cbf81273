"""Which tests the plugin skips without a guest: those *marked* `vm` or `win98`, never a test that merely lives in
a directory of that name (tests/unit/vm/, tests/unit/guests/win98/). Before the fix the check read pytest's
keywords, which hold every parent directory's name, and silently skipped the whole unit suite of harness/vm/."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_a_directory_named_vm_or_win98_is_not_a_marker(pytester: pytest.Pytester) -> None:
    for directory in ("vm", "win98"):
        pytester.mkpydir(directory).joinpath(f"test_in_{directory}.py").write_text("def test_plain():\n    pass\n")
    pytester.makepyfile(test_marked="""
        import pytest

        @pytest.mark.vm
        def test_needs_a_guest():
            pass

        @pytest.mark.win98
        def test_needs_windows():
            pass
        """)
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:xdist", "-rs")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*1 skipped: needs a QEMU guest*", "*1 skipped: needs a real Windows 98 image*"])
