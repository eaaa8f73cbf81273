"""Guest profiles load into typed dataclasses, and a broken profile is one clear line naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.vm.profile import ProfileError, available_profiles, load_profile


def test_shipped_profiles_load_with_their_documented_machines() -> None:
    assert {"tiny686", "win98"} <= set(available_profiles())
    tiny = load_profile("tiny686")
    assert (tiny.machine.machine, tiny.machine.cpu, tiny.machine.memory_mb, tiny.machine.nic) == \
        ("pc", "pentium2", 128, "e1000")
    assert tiny.console.kind == "posix-shell" and tiny.ftp.supports("passive") and tiny.ftp.supports("active")
    win = load_profile("win98")
    assert (win.machine.rtc, win.machine.nic, win.console.kind, win.console.encoding) == \
        ("localtime", "pcnet", "agent98", "cp437")
    assert win.files.names == {"binary": "LLAMA98.EXE", "model": "MODEL.BIN", "tokenizer": "TOK.BIN"}
    assert not win.ftp.supports("passive") and win.ftp.default_mode == "active"
    assert win.files.guest_path("MODEL.BIN") == "C:\\RUN\\MODEL.BIN"
    assert tiny.usable_memory_bytes == (128 - tiny.machine.os_reserved_mb) * 1024 * 1024


def test_sentinel_cannot_match_the_command_that_prints_it() -> None:
    """The echoed command line must never look like the end of the command."""
    import re

    spec = load_profile("tiny686").console
    line = spec.command_template.replace("{id}", "abc123").replace("{command}", "true")
    assert re.search(spec.sentinel_pattern.replace("{id}", "abc123"), line) is None


def _write_variant(tmp_path: Path, edit) -> Path:
    document = yaml.safe_load(load_profile("tiny686").source.read_text())
    edit(document)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["machine"].pop("cpu"), "'machine.cpu' is missing"),
    (lambda d: d["console"].update(kind="telnet"), "'console.kind' must be one of posix-shell, agent98"),
    (lambda d: d["machine"].update(memory_mb="lots"), "'machine.memory_mb' must be an integer"),
    (lambda d: d["console"].update(command_template="{command}"), "must contain the placeholder {id}"),
    (lambda d: d["console"].update(sentinel_pattern="END-{id}"), "named group (?P<code>"),
    (lambda d: d["files"]["checksum"].update(pattern="(["), "is not a valid regex"),
    (lambda d: d["console"].update(encoding="klingon"), "unknown encoding"),
    (lambda d: d["machine"].update(os_reserved_mb=500), "must be smaller than machine.memory_mb"),
    (lambda d: d["ftp"].update(passive=None), "'ftp.default_mode' is 'passive' but ftp.passive is not set"),
])
def test_bad_profile_is_one_line_naming_the_field(tmp_path: Path, edit, expected: str) -> None:
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_unknown_name_lists_the_available_profiles() -> None:
    with pytest.raises(ProfileError, match=r"unknown guest profile 'dos622' \(available: .*tiny686.*\)"):
        load_profile("dos622")


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("machine: [unclosed\n")
    with pytest.raises(ProfileError, match="is not valid YAML") as info:
        load_profile(broken)
    assert "\n" not in str(info.value)
    with pytest.raises(ProfileError, match="cannot read guest profile"):
        load_profile(tmp_path / "absent.yaml")
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- a\n- b\n")
    with pytest.raises(ProfileError, match="must be a mapping"):
        load_profile(not_mapping)
