"""The image builder's host tools: the up-front check names the Debian package of the first missing tool, and
every tool runs with a pinned environment and fails as one GuestBuildError line (what was being done + the tool's
last line of stderr), never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.guests.tiny686 import host_tools
from harness.guests.tiny686.host_tools import HOST_TOOLS, MBR_BIN, GuestBuildError, check_host_tools, run_tool


def _path_with(tmp_path: Path, tools: list[str]) -> str:
    """A PATH directory holding links to only the named real tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, f"{tool} is needed on this host to run this test"
        (bin_dir / tool).symlink_to(real)
    return str(bin_dir)


def test_this_host_has_every_tool() -> None:
    check_host_tools()
    assert MBR_BIN.is_file()


@pytest.mark.parametrize("missing", sorted(HOST_TOOLS))
def test_each_missing_tool_names_its_package(missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, [tool for tool in HOST_TOOLS if tool != missing]))
    with pytest.raises(GuestBuildError) as info:
        check_host_tools()
    assert str(info.value) == f"'{missing}' not found: install it with `apt-get install {HOST_TOOLS[missing]}`"


def test_the_packages_named_really_provide_the_tools() -> None:
    """The hint must be right: ask dpkg which package owns each tool found on this host."""
    import subprocess

    for tool, package in HOST_TOOLS.items():
        real = Path(str(shutil.which(tool))).resolve()
        owner = subprocess.run(["dpkg", "-S", str(real)], capture_output=True, text=True)
        if owner.returncode != 0:  # usrmerge: dpkg knows /bin/x, the link resolves to /usr/bin/x
            owner = subprocess.run(["dpkg", "-S", f"/bin/{tool}"], capture_output=True, text=True)
        assert owner.stdout.split(":")[0].strip() == package, f"{tool}: {owner.stdout or owner.stderr}"


def test_a_missing_mbr_code_names_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_tools, "MBR_BIN", tmp_path / "mbr.bin")
    with pytest.raises(GuestBuildError, match=r"mbr\.bin not found: install it with `apt-get install syslinux-common`"):
        check_host_tools()


def test_a_failing_tool_is_one_line_with_its_last_stderr_line(tmp_path: Path) -> None:
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho 'progress 1' >&2\necho 'mformat: disk full' >&2\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(GuestBuildError) as info:
        run_tool([str(script)], "formatting FAT32")
    assert str(info.value) == "formatting FAT32 failed (exit code 3): mformat: disk full"


def test_a_tool_that_is_not_installed_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(GuestBuildError) as info:
        run_tool([str(tmp_path / "no-such-tool")], "installing syslinux")
    assert str(info.value) == f"installing syslinux: {tmp_path / 'no-such-tool'} not found on PATH"


def test_the_environment_is_pinned_whatever_the_user_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("MTOOLSRC", str(tmp_path / "my-mtoolsrc"))
    monkeypatch.delenv("MTOOLS_SKIP_CHECK", raising=False)
    environment = dict(line.split("=", 1) for line in run_tool(["env"], "reading the environment").splitlines()
                       if "=" in line)
    assert (environment["LC_ALL"], environment["MTOOLSRC"], environment["MTOOLS_SKIP_CHECK"]) == \
        ("C", "/dev/null", "1")


def test_output_and_working_directory(tmp_path: Path) -> None:
    assert run_tool(["pwd"], "pwd", cwd=tmp_path).strip() == str(tmp_path)
    assert run_tool(["printf", "a\\nb\\n"], "printf") == "a\nb\n"
