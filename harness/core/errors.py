"""One exception family for every failure a user can cause or meet.

The CLI and the pytest plugin turn a HarnessError into a single line (`llama98-harness: error: ...`) and a
non-zero exit code; anything else escaping is a bug in the harness, not bad input. Where a failure has evidence
on disk (the run's artifact directory, the serial transcript, a screendump), the error carries it as fields and
names it in one fixed format at the end of its line, so no raise site formats those paths by hand.

The tree (each class lives beside the code that raises it; a subclass lives in its parent's module unless it
names its own), by layer from the bottom:

    HarnessError                          exit 1
    +-- UsageError                        exit 2: the command line or configuration asks for something impossible
    +-- ImageError (core.errors)          the guest disk image is missing, unreadable or not a disk image
    |   +-- TruncatedImageError (vm.fatspace)  it ends before its partition table, boot sector or volume do
    +-- CacheDirError (core.paths)        the harness cache directory cannot be created, searched or written
    +-- ToolError (core.proc)             an external program is missing, failed or timed out
    +-- CheckpointError (formats.checkpoint)  a checkpoint is missing, truncated or has an impossible header
    +-- ReportError (formats.report)      the port's run report is malformed
    +-- PartsError (formats.parts)        a split checkpoint cannot be written or read as asked (or at that path)
    +-- ToolchainError (toolchains.openwatcom)  OpenWatcom could not be found, checked or built
    |   +-- ToolchainMissing              a toolchain is not installed (here: no OpenWatcom source given and
    |                                     $WATCOM unset): the one build failure a test skips on
    +-- OracleError (oracle.errors)       a tokenizer the oracle cannot read
    |   +-- TokenizerError
    +-- PortBuildError (port.build)       the port did not compile
    |   +-- ToolchainMissing              make, the compiler or OpenWatcom is not installed; also a subclass of
    |                                     the ToolchainMissing above, so `except toolchains.ToolchainMissing`
    |                                     catches every missing toolchain
    +-- QemuError (vm.processes)          QEMU missing, refused to start, stopped answering
    |   +-- QemuLaunchError               QEMU exited during start-up (exit code, command, stderr)
    +-- ConsoleError (vm.console)         the serial console broke
    |   +-- ConsoleTimeout                nothing matched in time (what was awaited, transcript, screendump)
    +-- FtpError (vm.ftp)                 the FTP server could not start or serve
    +-- GuestError (vm.guest)             a guest command failed
    |   +-- TransferError                 a file arrived damaged, truncated or in ASCII mode
    |   +-- GuestMemoryError              a file meant for RAM cannot fit the guest
    +-- ProfileError (vm.profile)         a guest profile file is wrong
    +-- AuditInputError (audit.binary)    a binary could not be audited (exit 2, as for usage errors)
    +-- DefFormatError (audit.mingw_defs) a mingw-w64 .def file does not follow the annotation style parsed
    +-- ModelChoiceError (models.names)   a model/tokenizer name or pair is unusable
    +-- FixtureError (models.downloads)   a model file is missing, damaged or could not be downloaded
    +-- ModelGenError (models.modelgen)   a generated model was asked for with an impossible shape
    +-- QuantizeError (models.quantize)   a checkpoint cannot be quantized as asked (format, group size)
    +-- ExportError (models.export_hf)    a Hugging Face directory cannot be converted, or its outputs written
    +-- BpeWriteError (models.bpe_writer) a tokenizer source cannot be written as the port's BPE file
    +-- GuestBuildError (guests.tiny686)  the tiny686 image could not be built
    +-- PrepareError (guests.win98)       a Windows 98 image could not be prepared
    +-- WineLaneError (guests.win98)      the Wine lane could not run
    +-- SessionError (run.session)        the port could not be run to completion in the guest
    +-- WorkSpaceError (run.workspace)    the run's files cannot fit the guest's work disk
    +-- MeasureError (perf.measure)       a measurement could not be taken
    |   +-- NotMeasurable                 not on this host, for a known reason that is no defect of the port
    +-- BisectError (perf.bisect)         bisection could not run
    +-- ResultsError (perf.results)       a results file is unreadable
    +-- PlotError (perf.plot)             nothing to plot, or the plot could not be written
"""

from __future__ import annotations

from pathlib import Path
from typing import Self


class HarnessError(Exception):
    """A failure with a message fit to show the user as one line, plus where its evidence is."""

    exit_code: int = 1

    def __init__(self, message: str, *, artifacts: object | None = None, transcript: Path | None = None,
                 screendump: Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.artifacts = artifacts
        self.transcript = transcript
        self.screendump = screendump

    def with_evidence(self, *, artifacts: object | None = None, transcript: Path | None = None,
                      screendump: Path | None = None) -> Self:
        """Fill in evidence the raiser did not know (an outer layer knows the artifact directory); keeps what is
        already set, so the innermost, most precise evidence wins."""
        self.artifacts = self.artifacts or artifacts
        self.transcript = self.transcript or transcript
        self.screendump = self.screendump or screendump
        return self

    def __str__(self) -> str:
        parts = [self.message]
        if self.transcript is not None:
            parts.append(f"serial log: {self.transcript}")
        if self.screendump is not None:
            parts.append(f"screendump: {self.screendump}")
        if self.artifacts is not None:
            parts.append(f"artifacts: {self.artifacts}")
        return "; ".join(parts)


class UsageError(HarnessError):
    """The command line or configuration asks for something impossible."""

    exit_code = 2


class ImageError(HarnessError):
    """The guest disk image is missing, unreadable or not a disk image."""
