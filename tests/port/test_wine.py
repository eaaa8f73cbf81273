"""The Win32 build under Wine prints exactly what the native build prints.

This is what catches Windows-only mistakes Linux hides: text-mode stdout turning "\n" into "\r\n", files opened
without "b", msvcrt's own printf and strtod, and the QueryPerformanceCounter timer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.port_helpers import (  # noqa: F401
    WINE_MISSING,
    fixture,
    native_bin,
    parse_report,
    run_port,
    stories_args,
    win32_exe,
    wine_command,
    wine_env,
)

pytestmark = pytest.mark.wine

WINE_TIMEOUT_S = 300  # the first run creates the Wine prefix


def _wine_env() -> dict[str, str]:
    return wine_env()


def _windows_path(path: Path) -> str:
    """Wine maps the Unix root to drive Z:."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


def _run_wine(exe: Path, args: list[str]) -> subprocess.CompletedProcess[bytes]:
    wine = wine_command()
    if wine is None:
        pytest.skip(WINE_MISSING)
    try:
        return subprocess.run([*wine, str(exe), *args], capture_output=True, env=_wine_env(),
                              timeout=WINE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"wine {exe.name} did not finish within {WINE_TIMEOUT_S} s (prefix {_wine_env()['WINEPREFIX']})")


def _port_stderr(stderr: bytes) -> bytes:
    """The port's own stderr: Wine may add a line of its own (e.g. when it updates the prefix)."""
    return b"".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(b"wine: "))


def _win_stories_args(*extra: str) -> list[str]:
    return [_windows_path(fixture("stories260K.bin")), "-z", _windows_path(fixture("tok512.bin")), *extra]


RUNS = [
    ["-t", "0", "-n", "200"],
    ["-t", "0.8", "-p", "0.9", "-s", "42", "-n", "256", "-i", "Once upon a time, Tom"],
    ["-t", "1.0", "-p", "0", "-s", "7", "-n", "300"],
]


@pytest.mark.parametrize("extra", RUNS, ids=["greedy", "topp-prompt", "multinomial"])
def test_wine_prints_the_native_bytes(extra: list[str], win32_exe: Path, native_bin: Path) -> None:  # noqa: F811
    native = run_port(native_bin, stories_args(*extra))
    windows = _run_wine(win32_exe, _win_stories_args(*extra))
    assert windows.returncode == 0, windows.stderr[-500:]
    assert b"\r\n" not in windows.stdout, "stdout must be binary on Win32"
    assert windows.stdout == native.stdout
    assert _port_stderr(windows.stderr).startswith(b"achieved tok/s: ")
    assert b"\r" not in _port_stderr(windows.stderr), "stderr must be binary on Win32 too"


def test_wine_report_matches_native(win32_exe: Path, native_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    extra = ["-t", "0.9", "-s", "3", "-n", "40", "-i", "The dog"]
    run_port(native_bin, stories_args(*extra, "-r", str(tmp_path / "native.rep")))
    result = _run_wine(win32_exe, _win_stories_args(*extra, "-r", _windows_path(tmp_path / "win.rep")))
    assert result.returncode == 0, result.stderr[-500:]
    raw = (tmp_path / "win.rep").read_bytes()
    assert b"\r" not in raw
    native, windows = parse_report((tmp_path / "native.rep").read_text()), parse_report(raw.decode())
    for kind in ("args", "model", "tokenizer", "prompt"):
        assert windows.records[kind] == native.records[kind], kind
    assert [t["id"] for t in windows.tokens] == [t["id"] for t in native.tokens]
    assert windows.records["timer"]["source"] in ("QueryPerformanceCounter", "GetTickCount")
    assert windows.done is not None and windows.done["status"] == "ok"


def test_wine_bad_input_is_a_clean_error(win32_exe: Path, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "short.bin").write_bytes(fixture("stories260K.bin").read_bytes()[:1000])
    result = _run_wine(win32_exe, [_windows_path(tmp_path / "short.bin"), "-z", _windows_path(fixture("tok512.bin"))])
    assert result.returncode == 1
    assert _port_stderr(result.stderr).startswith(b"llama98: error: checkpoint ")


@pytest.mark.parametrize("name", ["gqa-unshared-32000", "odd-hidden-mqa"])
def test_wine_generated_shapes_match_native(name: str, win32_exe: Path, native_bin: Path) -> None:  # noqa: F811
    from harness.models.modelgen import SHAPES, cached_checkpoint, cached_tokenizer
    vocab = SHAPES[name].vocab_size
    tokenizer = fixture("tokenizer.bin") if vocab == 32000 else cached_tokenizer(vocab)
    model = cached_checkpoint(name)
    extra = ["-t", "1.0", "-p", "0.9", "-s", "17", "-n", "60", "-i", "Once upon a time"]
    native = run_port(native_bin, [str(model), "-z", str(tokenizer), *extra])
    windows = _run_wine(win32_exe, [_windows_path(model), "-z", _windows_path(tokenizer), *extra])
    assert windows.returncode == 0, windows.stderr[-500:]
    assert native.returncode == 0 and len(native.stdout) > 1
    assert windows.stdout == native.stdout


def test_wine_streams_a_split_checkpoint_like_native(win32_exe: Path, native_bin: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    """msvcrt's fseek/fread over MODEL.BIN + MODEL.B01 + MODEL.B02 under a -M budget, and GlobalMemoryStatus for
    the default budget: the same text as the native build, every streamed byte read once per token."""
    from tests.port.test_streaming import split_by_rule

    parts = split_by_rule(fixture("stories260K.bin"), tmp_path, "MODEL.BIN", 3)
    extra = ["-t", "0", "-n", "30", "-i", "The dog"]
    native = run_port(native_bin, stories_args(*extra))
    for budget in ([], ["-M", "0.5"]):
        report = tmp_path / "win.rep"
        result = _run_wine(win32_exe, [_windows_path(parts[0]), "-z", _windows_path(fixture("tok512.bin")),
                                       *extra, *budget, "-r", _windows_path(report)])
        assert result.returncode == 0, result.stderr[-500:]
        assert result.stdout == native.stdout
        windows = parse_report(report.read_text())
        memory = windows.records["memory"]
        assert windows.records["model"]["parts"] == "3"
        assert memory["source"] == ("option" if budget else "os")
        streamed = int(memory["streamed"])
        assert (streamed > 0) == bool(budget)
        assert [int(token["read"]) for token in windows.tokens] == [streamed] * 30
