"""harness.vm.progress: the format of a progress line, and both outputs on a real FTP transfer over loopback (the
server's bytes-sent counter sampled while an ftplib client downloads). The tiny686 transfer is in test_guest.py."""

from __future__ import annotations

import ftplib
import io
import logging
import os
import threading
from pathlib import Path

import pytest

from harness.core.artifacts import ArtifactDir
from harness.vm.ftp import FileServer
from harness.vm.progress import TransferProgress, format_progress


def test_a_progress_line_names_bytes_rate_and_eta() -> None:
    line = format_progress("MODEL.BIN", 110_000_000, 440_000_000, 10.0)
    assert line == "MODEL.BIN: 110.0 / 440.0 MB (25%), 11.0 MB/s, ETA 0:30"
    assert format_progress("M", 0, 100, 0.0).endswith("0.0 MB/s, ETA --:--")
    assert "ETA 1:23:20" in format_progress("M", 1_000_000, 5_001_000_000, 1.0)


def test_small_files_report_nothing() -> None:
    with TransferProgress("TOK.BIN", 1000, lambda: 1000, terminal=False, interval=0.01) as progress:
        pass
    assert progress.lines == []


def _slow_download(server: FileServer, name: str, sink: io.BytesIO) -> None:
    client = ftplib.FTP()
    client.connect("127.0.0.1", server.port, timeout=20)
    client.login(server.user, server.password)

    def write(chunk: bytes) -> None:
        sink.write(chunk)
        threading.Event().wait(0.001)  # a slow client, like the guest's, so the transfer lasts a while

    client.retrbinary(f"RETR {name}", write, blocksize=16384)
    client.quit()


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_follows_the_servers_bytes_sent(tmp_path: Path, terminal: bool,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(16 * 1024 * 1024))
    stream = io.StringIO()
    with FileServer(ArtifactDir(tmp_path / "artifacts")) as server, caplog.at_level(logging.INFO):
        served = server.add_file(source, "MODEL.BIN")
        assert server.bytes_sent("MODEL.BIN") is None
        sink = io.BytesIO()
        with TransferProgress("MODEL.BIN", served.size, lambda: server.bytes_sent("MODEL.BIN"), stream=stream,
                              terminal=terminal, interval=0.05, min_bytes=1) as progress:
            _slow_download(server, "MODEL.BIN", sink)
    assert sink.getvalue() == source.read_bytes()
    done = [int(float(line.split(": ")[1].split(" /")[0]) * 1e6) for line in progress.lines]
    assert len(done) >= 3 and done == sorted(done) and 0 < done[len(done) // 2] < served.size
    logged = [r.getMessage() for r in caplog.records if r.name == "harness.vm.progress"]
    if terminal:
        assert logged == [] and stream.getvalue().count("\r") == len(progress.lines)
        assert stream.getvalue().endswith("\n") and "\n" not in stream.getvalue()[:-1]
    else:
        assert stream.getvalue() == "" and logged == progress.lines
        assert all("MB/s" in line and "ETA" in line for line in logged)
