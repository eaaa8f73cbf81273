"""Guest profiles: everything that differs between guests, read from vm/profiles/NAME.yaml into typed dataclasses.

The Machine, Console, FileServer and Guest never hard-code a guest; they read these fields, so adding a guest (or
refining win98 when agent98 lands) is a YAML change. Loading validates every field up front so that a typo in a
profile is one clear line naming the file and the field, not a KeyError deep inside a VM run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import HarnessError
from harness.core.paths import project_root

CONSOLE_KINDS = ("posix-shell", "agent98")
FTP_MODES = ("passive", "active")
RTC_BASES = ("utc", "localtime")


class ProfileError(HarnessError):
    """A guest profile is missing, unreadable or malformed."""


@dataclass(frozen=True)
class MachineSpec:
    """How QEMU is started for this guest (the device model, not the per-run plumbing)."""

    machine: str
    cpu: str
    memory_mb: int
    os_reserved_mb: int
    nic: str
    vga: str
    rtc: str
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConsoleSpec:
    """How the serial console looks and how a command is framed so its end and exit code can be recognised."""

    kind: str
    ready_banner: str
    prompt: str
    newline: str
    encoding: str
    boot_timeout: float
    setup_commands: tuple[str, ...]
    command_template: str
    sentinel_pattern: str
    clock_command: str
    shutdown_command: str
    # Optional: QEMU key presses (QMP send-key combos such as "ret" or "alt-f4") sent once when the banner has not
    # appeared `logon_keys_after` seconds into a cold boot, e.g. to dismiss Windows 98's logon dialog.
    logon_keys: tuple[str, ...] = ()
    logon_keys_after: float = 0.0


@dataclass(frozen=True)
class ChecksumSpec:
    """How the guest proves a file arrived intact: a command and a regex whose group `digest` is compared."""

    algorithm: str
    command: str
    pattern: str


@dataclass(frozen=True)
class FilesSpec:
    """Where fetched files go in the guest and the (8.3-safe) names they get there."""

    work_dir: str
    separator: str
    names: dict[str, str]
    checksum: ChecksumSpec
    # Mounts a second work disk's FAT volume over {dir} (the work dir) when a run's files do not fit the image;
    # None: the guest cannot take a second disk, and a run that does not fit is refused before any transfer.
    work_disk_mount: str | None = None

    def guest_path(self, name: str) -> str:
        """Absolute guest path of `name` inside the work directory."""
        return self.work_dir.rstrip(self.separator) + self.separator + name


@dataclass(frozen=True)
class ActiveFtpSpec:
    """An active-mode (PORT) client driven by a script file written line by line in the guest."""

    script_path: str
    script: tuple[str, ...]
    reset_script: str
    write_line: str
    command: str


@dataclass(frozen=True)
class FtpSpec:
    """How the guest's own FTP client is invoked, per mode; None means the guest has no client for that mode."""

    default_mode: str
    passive_command: str | None
    active: ActiveFtpSpec | None
    binary_word: str
    ascii_word: str

    def supports(self, mode: str) -> bool:
        """Whether this guest can fetch in `mode` ("passive" or "active")."""
        return self.passive_command is not None if mode == "passive" else self.active is not None


@dataclass(frozen=True)
class GuestProfile:
    """One guest, fully described. `digest` identifies the profile's content (part of the snapshot cache key)."""

    name: str
    description: str
    machine: MachineSpec
    console: ConsoleSpec
    files: FilesSpec
    ftp: FtpSpec
    source: Path
    digest: str = field(compare=False)

    @property
    def usable_memory_bytes(self) -> int:
        """Bytes a program in the guest can count on: RAM minus what the guest OS keeps for itself."""
        return (self.machine.memory_mb - self.machine.os_reserved_mb) * 1024 * 1024


def profiles_dir() -> Path:
    """Where the shipped profiles live."""
    return project_root() / "vm" / "profiles"


def available_profiles() -> list[str]:
    """Names of the shipped profiles (none when their directory cannot be listed: only used in messages)."""
    try:
        return sorted(path.stem for path in profiles_dir().glob("*.yaml"))
    except OSError:
        return []


def load_profile(name_or_path: str | Path) -> GuestProfile:
    """Load a profile by name (vm/profiles/NAME.yaml) or by path, validating every field.

    Raises ProfileError with one line naming the file and the offending field.
    """
    text_arg = str(name_or_path)
    by_name = not (text_arg.endswith((".yaml", ".yml")) or "/" in text_arg)
    path = profiles_dir() / f"{text_arg}.yaml" if by_name else Path(text_arg)
    # Read first and judge the error after: Path.exists() itself raises PermissionError when a directory on the
    # way cannot be searched (a checkout in a 0700 directory read by another user), and a FIFO would block open().
    try:
        if path.exists() and not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise ProfileError(f"cannot read guest profile {path}: it is {kind}, not a YAML file")
        raw_bytes = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError) as error:
        if by_name:
            known = ", ".join(available_profiles()) or "none"
            raise ProfileError(f"unknown guest profile {text_arg!r} (available: {known})") from None
        raise ProfileError(f"cannot read guest profile {path}: {error.strerror or error}") from None
    except OSError as error:
        raise ProfileError(f"cannot read guest profile {path}: {error.strerror or error}") from None
    try:
        document = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as error:
        detail = str(error).replace("\n", " ")
        raise ProfileError(f"guest profile {path} is not valid YAML: {detail}") from None
    return _parse(document, path, hashlib.sha256(raw_bytes).hexdigest())


class _Reader:
    """Typed access to one mapping of the YAML document, with errors that name the dotted field path."""

    def __init__(self, data: Any, where: str, path: Path) -> None:
        self.path = path
        self.where = where
        if not isinstance(data, dict):
            self.fail(where or "(top level)", "must be a mapping")
        self.data: dict[str, Any] = data

    def fail(self, key: str, problem: str) -> None:
        raise ProfileError(f"guest profile {self.path}: field {key!r} {problem}")

    def _dotted(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str) -> Any:
        if key not in self.data:
            self.fail(self._dotted(key), "is missing")
        return self.data[key]

    def string(self, key: str, choices: tuple[str, ...] | None = None, allow_empty: bool = False) -> str:
        value = self._get(key)
        if not isinstance(value, str) or (not value and not allow_empty):
            self.fail(self._dotted(key), "must be a non-empty string")
        if choices is not None and value not in choices:
            self.fail(self._dotted(key), f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def integer(self, key: str, minimum: int = 0) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(self._dotted(key), f"must be an integer >= {minimum}")
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.fail(self._dotted(key), "must be a positive number")
        return float(value)

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(self._dotted(key), "must be a list of strings")
        return tuple(value)

    def mapping(self, key: str) -> _Reader:
        return _Reader(self._get(key), self._dotted(key), self.path)

    def optional_mapping(self, key: str) -> _Reader | None:
        if self._get(key) is None:
            return None
        return self.mapping(key)

    def template(self, key: str, required: tuple[str, ...], allow_empty: bool = False) -> str:
        value = self.string(key, allow_empty=allow_empty)
        for placeholder in required:
            if "{" + placeholder + "}" not in value:
                self.fail(self._dotted(key), f"must contain the placeholder {{{placeholder}}}")
        return value


def _parse(document: Any, path: Path, digest: str) -> GuestProfile:
    top = _Reader(document, "", path)
    machine = top.mapping("machine")
    machine_spec = MachineSpec(
        machine=machine.string("machine"),
        cpu=machine.string("cpu"),
        memory_mb=machine.integer("memory_mb", minimum=16),
        os_reserved_mb=machine.integer("os_reserved_mb"),
        nic=machine.string("nic"),
        vga=machine.string("vga"),
        rtc=machine.string("rtc", RTC_BASES),
        extra_args=machine.strings("extra_args"),
    )
    if machine_spec.os_reserved_mb >= machine_spec.memory_mb:
        machine.fail("machine.os_reserved_mb", "must be smaller than machine.memory_mb")

    console = top.mapping("console")
    sentinel = console.template("sentinel_pattern", ("id",))
    try:
        compiled = re.compile(sentinel.replace("{id}", "X"))
    except re.error as error:
        console.fail("console.sentinel_pattern", f"is not a valid regex: {error}")
    if "code" not in compiled.groupindex:
        console.fail("console.sentinel_pattern", "must have a named group (?P<code>...)")
    console_spec = ConsoleSpec(
        kind=console.string("kind", CONSOLE_KINDS),
        ready_banner=console.string("ready_banner"),
        prompt=console.string("prompt", allow_empty=True),
        newline=console.string("newline"),
        encoding=console.string("encoding"),
        boot_timeout=console.number("boot_timeout"),
        setup_commands=console.strings("setup_commands"),
        command_template=console.template("command_template", ("command", "id")),
        sentinel_pattern=sentinel,
        clock_command=console.template("clock_command", ("epoch",)),
        shutdown_command=console.string("shutdown_command"),
        logon_keys=console.strings("logon_keys") if "logon_keys" in console.data else (),
        logon_keys_after=console.number("logon_keys_after") if "logon_keys_after" in console.data else 0.0,
    )
    for combo in console_spec.logon_keys:
        if not re.fullmatch(r"[a-z0-9_]+(-[a-z0-9_]+)*", combo):
            console.fail("console.logon_keys", f"must hold QEMU key names like 'ret' or 'alt-f4' (got {combo!r})")
    if console_spec.logon_keys and not 0 < console_spec.logon_keys_after < console_spec.boot_timeout:
        console.fail("console.logon_keys_after", "must be a number of seconds below console.boot_timeout")
    try:
        "".encode(console_spec.encoding)
    except LookupError:
        console.fail("console.encoding", f"names an unknown encoding {console_spec.encoding!r}")
    if console_spec.kind == "posix-shell" and not console_spec.prompt:
        console.fail("console.prompt", "must be set for a posix-shell console")

    files = top.mapping("files")
    names_reader = files.mapping("names")
    names = {key: names_reader.string(key) for key in ("binary", "model", "tokenizer")}
    checksum = files.mapping("checksum")
    checksum_pattern = checksum.string("pattern")
    try:
        if "digest" not in re.compile(checksum_pattern).groupindex:
            checksum.fail("files.checksum.pattern", "must have a named group (?P<digest>...)")
    except re.error as error:
        checksum.fail("files.checksum.pattern", f"is not a valid regex: {error}")
    files_spec = FilesSpec(
        work_dir=files.string("work_dir"),
        separator=files.string("separator", ("/", "\\")),
        names=names,
        checksum=ChecksumSpec(
            algorithm=checksum.string("algorithm", ("sha256", "md5", "crc32")),
            command=checksum.template("command", ("path",)),
            pattern=checksum_pattern,
        ),
        work_disk_mount=files.template("work_disk_mount", ("dir",)) if "work_disk_mount" in files.data else None,
    )

    ftp = top.mapping("ftp")
    passive = ftp.optional_mapping("passive")
    active = ftp.optional_mapping("active")
    passive_command = (
        passive.template("command", ("user", "password", "port", "host", "dest", "source")) if passive else None
    )
    active_spec = None
    if active is not None:
        active_spec = ActiveFtpSpec(
            script_path=active.string("script_path"),
            script=active.strings("script"),
            reset_script=active.template("reset_script", ("script",)),
            write_line=active.template("write_line", ("line", "script")),
            command=active.template("command", ("script",)),
        )
        joined = "\n".join(active_spec.script)
        for placeholder in ("host", "port", "user", "password", "transfer_type", "source", "dest"):
            if "{" + placeholder + "}" not in joined:
                active.fail("ftp.active.script", f"must use the placeholder {{{placeholder}}}")
    ftp_spec = FtpSpec(
        default_mode=ftp.string("default_mode", FTP_MODES),
        passive_command=passive_command,
        active=active_spec,
        binary_word=ftp.string("binary_word"),
        ascii_word=ftp.string("ascii_word"),
    )
    if not ftp_spec.supports(ftp_spec.default_mode):
        ftp.fail("ftp.default_mode", f"is {ftp_spec.default_mode!r} but ftp.{ftp_spec.default_mode} is not set")

    return GuestProfile(
        name=top.string("name"),
        description=top.string("description"),
        machine=machine_spec,
        console=console_spec,
        files=files_spec,
        ftp=ftp_spec,
        source=path,
        digest=digest,
    )
