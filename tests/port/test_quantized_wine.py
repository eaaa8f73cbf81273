"""Q8_0 and ternary models in the Win32 build under Wine: the x87 build's reports verify against the oracle, and
a damaged file is one clean error line, as on Linux."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.judge.verify import verify
from harness.models.modelgen import SHAPES, cached_tokenizer
from harness.models.quantize import quantize_file, write_ternary_model
from tests.port.test_wine import _port_stderr, _run_wine, _windows_path
from tests.support.port_helpers import fixture, win32_exe  # noqa: F401

pytestmark = pytest.mark.wine


def _models(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    q8 = quantize_file(fixture("stories260K.bin"), tmp_path / "q8.bin", "q8_0")
    ternary = write_ternary_model(tmp_path / "t.bin", SHAPES["gqa-512"], seed=2, ffn="relu2", sub_norms=True,
                                  int8_classifier=True)
    return {"q8_0": (q8, fixture("tok512.bin")), "ternary": (ternary, cached_tokenizer(512))}


@pytest.mark.parametrize("kind", ["q8_0", "ternary"])
def test_wine_quantized_reports_verify(kind: str, win32_exe: Path, tmp_path: Path) -> None:  # noqa: F811
    model, tokenizer = _models(tmp_path)[kind]
    report = tmp_path / "report.txt"
    result = _run_wine(win32_exe, [_windows_path(model), "-z", _windows_path(tokenizer), "-t", "0", "-n", "150",
                                   "-i", "Once upon", "-r", _windows_path(report)])
    assert result.returncode == 0, result.stderr
    verdict = verify(model, tokenizer, report)
    assert verdict.ok, str(verdict)


def test_wine_truncated_q8_is_one_error_line(win32_exe: Path, tmp_path: Path) -> None:  # noqa: F811
    model, tokenizer = _models(tmp_path)["q8_0"]
    short = tmp_path / "short.bin"
    short.write_bytes(model.read_bytes()[:-100])
    result = _run_wine(win32_exe, [_windows_path(short), "-z", _windows_path(tokenizer)])
    assert result.returncode == 1
    lines = _port_stderr(result.stderr).decode().splitlines()
    assert len(lines) == 1 and "truncated" in lines[0], lines
