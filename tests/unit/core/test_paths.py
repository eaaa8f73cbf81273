"""The harness cache when it cannot be used: LLAMA98_CACHE naming a file, a path through a file, a directory the
user cannot search. One CacheDirError line naming the cache and what chose it, from cache_dir and from the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import cli
from harness.core.errors import HarnessError
from harness.core.paths import CacheDirError, cache_dir
from tests.support.unreadable import outcome_as_nobody, public_dir


def test_the_cache_is_created_under_llama98_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    made = cache_dir("models", "x")
    assert made == tmp_path / "cache" / "models" / "x" and made.is_dir()


def test_a_cache_that_is_a_file_or_lies_under_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    monkeypatch.setenv("LLAMA98_CACHE", str(plain))
    with pytest.raises(CacheDirError) as info:
        cache_dir()
    assert str(info.value) == f"cannot use the harness cache {plain} (set by LLAMA98_CACHE): {plain} is a file, " \
        "not a directory"
    assert isinstance(info.value, HarnessError)
    monkeypatch.setenv("LLAMA98_CACHE", str(plain / "cache"))
    with pytest.raises(CacheDirError) as info:
        cache_dir("models")
    assert str(info.value) == f"cannot use the harness cache {plain / 'cache'} (set by LLAMA98_CACHE): {plain} is a " \
        "file, not a directory"


def test_a_cache_the_user_cannot_search_or_write(monkeypatch: pytest.MonkeyPatch) -> None:
    with public_dir() as directory:
        private = directory / "private"
        private.mkdir(mode=0o700)
        monkeypatch.setenv("LLAMA98_CACHE", str(private / "cache"))
        behind = outcome_as_nobody(lambda: cache_dir("models"))
        readonly = directory / "readonly"
        readonly.mkdir(mode=0o755)
        monkeypatch.setenv("LLAMA98_CACHE", str(readonly))
        not_writable = outcome_as_nobody(lambda: cache_dir())
        under_readonly = outcome_as_nobody(lambda: cache_dir("models"))
    assert behind == (f"CacheDirError: cannot use the harness cache {private / 'cache'} (set by LLAMA98_CACHE): "
                      f"cannot create {private / 'cache' / 'models'}: Permission denied")
    assert not_writable == (f"CacheDirError: cannot use the harness cache {readonly} (set by LLAMA98_CACHE): "
                            f"{readonly} is not writable and searchable by this user")
    assert under_readonly.endswith(f"cannot create {readonly / 'models'}: Permission denied")


def test_the_default_cache_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLAMA98_CACHE", raising=False)
    plain = tmp_path / "plain"
    plain.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(plain))
    with pytest.raises(CacheDirError, match=rf"\(set by XDG_CACHE_HOME\): {plain} is a file, not a directory$"):
        cache_dir()


def test_run_with_an_unusable_cache_exits_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    monkeypatch.setenv("LLAMA98_CACHE", str(plain))
    assert cli.main(["run", "--model", "260K-shape", "-n", "2"]) == 1
    err = capsys.readouterr().err
    assert err == (f"llama98-harness: error: cannot use the harness cache {plain} (set by LLAMA98_CACHE): {plain} "
                   f"is a file, not a directory\n")
    assert os.path.isfile(plain)
