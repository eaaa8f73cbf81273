"""`llama98-harness build-guest`: help and a one-line refusal when the cache it builds into cannot be used. (Building
the guest downloads Debian packages; that runs in tests/unit/guests/tiny686 and the e2e suite.)"""

from __future__ import annotations

from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli


def test_help_lists_the_options(capsys):
    assert_help("build-guest", capsys, "tiny686")


def test_a_cache_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.write_text("not a directory")
    monkeypatch.setenv("LLAMA98_CACHE", str(cache))
    result = run_cli(["build-guest", "tiny686"], capsys)
    assert_one_line_error(result, "cannot use the harness cache", str(cache), "LLAMA98_CACHE")
    assert cache.read_text() == "not a directory"
