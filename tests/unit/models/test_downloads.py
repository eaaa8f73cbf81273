"""The fixture resolver, downloads exercised only against a local http.server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.models.downloads import BASE_URL_ENV, FIXTURE_DIR_ENV, FixtureEntry, FixtureError, load_manifest, resolve

PAYLOAD = bytes(range(256)) * 512  # 128 KiB, several chunks
NAME = "model.bin"


class _Server:
    """A tiny HTTP server: /good/ serves PAYLOAD, /corrupt/ a damaged copy, /slow/ stalls, anything else 404."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests: list[str] = []
        server_ref = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server_ref.requests.append(self.path)
                if self.path == f"/slow/{NAME}":
                    server_ref.release.wait(10)
                    return
                body = {f"/good/{NAME}": PAYLOAD, f"/corrupt/{NAME}": PAYLOAD[:-1] + b"\x00"}.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def server():
    srv = _Server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A private cache and no fixture dir, so only the download path can satisfy a resolve."""
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(FIXTURE_DIR_ENV, raising=False)
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    return tmp_path / "cache" / "fixtures"


def manifest(url: str, sha: str | None = hashlib.sha256(PAYLOAD).hexdigest()) -> dict[str, FixtureEntry]:
    return {NAME: FixtureEntry(NAME, len(PAYLOAD), sha, url)}


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_good_download_is_verified_cached_and_reused(server, isolated, capfd):
    entries = manifest(f"{server.base}/good/{NAME}")
    path = resolve(NAME, manifest=entries, timeout=5)
    assert path == isolated / NAME
    assert path.read_bytes() == PAYLOAD
    assert "downloading model.bin" in capfd.readouterr().err
    assert leftovers(isolated) == [NAME]
    server.stop()  # a second resolve must not need the network
    assert resolve(NAME, manifest=entries, timeout=5) == path
    assert server.requests == [f"/good/{NAME}"]


def test_corrupted_download_is_refused_and_not_kept(server, isolated):
    with pytest.raises(FixtureError) as info:
        resolve(NAME, manifest=manifest(f"{server.base}/corrupt/{NAME}"), timeout=5)
    assert f"{server.base}/corrupt/{NAME}" in str(info.value) and "sha256" in str(info.value)
    assert leftovers(isolated) == []


def test_404_names_the_url(server, isolated):
    with pytest.raises(FixtureError) as info:
        resolve(NAME, manifest=manifest(f"{server.base}/missing/{NAME}"), timeout=5)
    assert "404" in str(info.value) and f"{server.base}/missing/{NAME}" in str(info.value)
    assert leftovers(isolated) == []


def test_stalled_server_times_out(server, isolated):
    with pytest.raises(FixtureError) as info:
        resolve(NAME, manifest=manifest(f"{server.base}/slow/{NAME}"), timeout=0.5)
    assert "timed out" in str(info.value) and f"{server.base}/slow/{NAME}" in str(info.value)
    assert leftovers(isolated) == []


def test_base_url_override(server, isolated, monkeypatch):
    monkeypatch.setenv(BASE_URL_ENV, f"{server.base}/good")
    path = resolve(NAME, manifest=manifest("https://example.invalid/never-used"), timeout=5)
    assert path.read_bytes() == PAYLOAD


def test_damaged_cache_copy_is_replaced(server, isolated):
    isolated.mkdir(parents=True)
    (isolated / NAME).write_bytes(b"x" * len(PAYLOAD))
    path = resolve(NAME, manifest=manifest(f"{server.base}/good/{NAME}"), timeout=5)
    assert path.read_bytes() == PAYLOAD


def test_fixture_dir_comes_first_and_is_checked(tmp_path, isolated, monkeypatch):
    fixture_dir = tmp_path / "fixtures"
    fixture_dir.mkdir()
    (fixture_dir / NAME).write_bytes(PAYLOAD)
    monkeypatch.setenv(FIXTURE_DIR_ENV, str(fixture_dir))
    entries = manifest("http://127.0.0.1:9/unreachable")
    assert resolve(NAME, manifest=entries, allow_download=False) == fixture_dir / NAME
    (fixture_dir / NAME).write_bytes(PAYLOAD[:-1])
    with pytest.raises(FixtureError, match="not the expected file"):
        resolve(NAME, manifest=entries, allow_download=False)


def test_no_download_when_not_allowed_or_unverifiable(isolated):
    with pytest.raises(FixtureError, match="downloads are off"):
        resolve(NAME, manifest=manifest("http://127.0.0.1:9/x"), allow_download=False)
    with pytest.raises(FixtureError, match="refusing to trust"):
        resolve(NAME, manifest=manifest("http://127.0.0.1:9/x", sha=None))
    with pytest.raises(FixtureError, match="unknown fixture"):
        resolve("nope.bin", manifest=manifest("http://127.0.0.1:9/x"))


def test_project_manifest_lists_the_four_fixtures():
    entries = load_manifest()
    assert set(entries) == {"stories260K.bin", "tok512.bin", "tokenizer.bin", "stories15M.bin"}
    assert entries["stories15M.bin"].size == 60816028
    for entry in entries.values():
        assert entry.url.startswith("https://")
        assert entry.sha256 is not None and len(entry.sha256) == 64


def test_shared_fixtures_match_the_manifest(monkeypatch):
    try:
        for name in ("stories260K.bin", "tok512.bin", "tokenizer.bin"):
            path = resolve(name, allow_download=False)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == load_manifest()[name].sha256
    except FixtureError as error:
        pytest.skip(f"real fixture unavailable: {error}")


def test_prompts_file_has_a_byte_fallback_prompt():
    from harness.models.downloads import load_prompts
    from harness.oracle import load_tokenizer

    prompts = load_prompts()
    assert len(prompts) >= 3 and len({p.name for p in prompts}) == len(prompts)
    non_ascii = [p for p in prompts if not p.text.isascii()]
    assert non_ascii
    try:
        tok = load_tokenizer(resolve("tok512.bin", allow_download=False), 512)
    except FixtureError as error:
        pytest.skip(f"real fixture unavailable: {error}")
    ids = tok.encode(non_ascii[0].data)
    assert any(3 <= i < 259 for i in ids), "the non-ASCII prompt should need byte-fallback tokens in tok512"
