"""The snapshot cache's key and files: a saved guest state is reused only for the same image bytes, profile file,
QEMU version and virtual hardware, never because of per-run details (sockets, overlays, artifacts), and a cached
overlay is published only whole."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.core.artifacts import ArtifactDir
from harness.vm.machine import Machine, MachineOptions
from harness.vm.profile import GuestProfile, load_profile
from harness.vm.snapshots import SnapshotCache

IMAGE_SHA = "a" * 64
VERSION = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"


@pytest.fixture()
def tiny686() -> GuestProfile:
    return load_profile("tiny686")


def _device_args(profile: GuestProfile, tmp_path: Path, name: str, **options: object) -> list[str]:
    """The Machine's own hardware arguments for a run with its own artifact directory (never started)."""
    machine = Machine(profile, tmp_path / "image.raw", ArtifactDir(tmp_path / name), MachineOptions(**options))
    return machine.device_args()


def _profile_copy(profile: GuestProfile, tmp_path: Path, edit: str = "") -> GuestProfile:
    """The profile loaded from a copy of its file, optionally with a line appended."""
    copy = tmp_path / f"copy-{len(list(tmp_path.glob('copy-*')))}.yaml"
    copy.write_text(profile.source.read_text() + edit)
    return load_profile(copy)


def test_same_inputs_same_key_and_the_key_is_a_directory_name(tiny686: GuestProfile, tmp_path: Path) -> None:
    args = _device_args(tiny686, tmp_path, "run1")
    key = SnapshotCache.key(IMAGE_SHA, tiny686, VERSION, args)
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    assert key == SnapshotCache.key(IMAGE_SHA, load_profile("tiny686"), VERSION, list(args))
    # Another run of the same guest: other artifacts, other (future) sockets and overlay, the same key.
    assert key == SnapshotCache.key(IMAGE_SHA, tiny686, VERSION, _device_args(tiny686, tmp_path, "run2"))
    assert key == SnapshotCache.key(IMAGE_SHA, _profile_copy(tiny686, tmp_path), VERSION, args)  # same bytes


def test_device_args_hold_no_per_run_paths(tiny686: GuestProfile, tmp_path: Path) -> None:
    args = _device_args(tiny686, tmp_path, "artifacts-here")
    assert not [arg for arg in args if str(tmp_path) in arg or "/" in arg], args


@pytest.mark.parametrize("change", ["image", "profile name", "profile file", "qemu version", "icount", "memory",
                                    "accel", "extra args", "argument order"])
def test_each_input_of_the_saved_state_changes_the_key(change: str, tiny686: GuestProfile, tmp_path: Path) -> None:
    args = _device_args(tiny686, tmp_path, "base")
    base = SnapshotCache.key(IMAGE_SHA, tiny686, VERSION, args)
    image, profile, version = IMAGE_SHA, tiny686, VERSION
    if change == "image":
        image = "b" + IMAGE_SHA[1:]
    elif change == "profile name":
        profile = load_profile("win98")  # same hardware arguments, another guest
    elif change == "profile file":  # even a comment: the digest is of the file's bytes
        profile = _profile_copy(tiny686, tmp_path, "\n# tuned\n")
        assert profile.name == tiny686.name and profile.machine == tiny686.machine
    elif change == "qemu version":
        version = VERSION.replace("7.2.22", "7.2.23")
    elif change == "icount":
        args = _device_args(tiny686, tmp_path, "icount", icount_shift=1)
    elif change == "memory":
        args = _device_args(tiny686, tmp_path, "memory", memory_mb=256)
    elif change == "accel":
        args = _device_args(tiny686, tmp_path, "kvm", accel="kvm")
    elif change == "extra args":
        args = _device_args(tiny686, tmp_path, "extra", extra_args=("-smp", "2"))
    else:
        args = args[2:] + args[:2]
    assert SnapshotCache.key(image, profile, version, args) != base


def test_the_machines_hardware_choices_are_in_its_device_args(tiny686: GuestProfile, tmp_path: Path) -> None:
    """What the key relies on: every hardware choice of a run shows up in device_args."""
    default = _device_args(tiny686, tmp_path, "default")
    assert default != _device_args(tiny686, tmp_path, "icount", icount_shift=1)
    assert default != _device_args(tiny686, tmp_path, "memory", memory_mb=64)
    assert default != _device_args(load_profile("win98"), tmp_path, "win98")
    for part in ("pentium2", "e1000,netdev=net0", str(tiny686.machine.memory_mb)):
        assert part in default


def test_lookup_store_and_paths(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snapshots")
    key = "0123456789abcdef0123456789abcdef01234567"
    assert cache.path(key) == tmp_path / "snapshots" / key / "overlay.qcow2"
    assert cache.lookup(key) is None
    overlay = tmp_path / "run-overlay.qcow2"
    overlay.write_bytes(b"QFI\xfb first state")
    stored = cache.store(key, overlay)
    assert stored == cache.path(key) and cache.lookup(key) == stored
    assert stored.read_bytes() == overlay.read_bytes() and overlay.exists()  # copied, the run keeps its own
    overlay.write_bytes(b"QFI\xfb second state")
    assert cache.store(key, overlay).read_bytes() == b"QFI\xfb second state"  # replaced whole
    assert sorted(p.name for p in stored.parent.iterdir()) == ["overlay.qcow2"]  # no partial copy left
    assert cache.lookup("f" * 40) is None


def test_a_failed_store_leaves_neither_a_snapshot_nor_a_partial_file(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snapshots")
    key = "1" * 40
    with pytest.raises(FileNotFoundError):
        cache.store(key, tmp_path / "vanished-overlay.qcow2")
    assert cache.lookup(key) is None
    assert not list((tmp_path / "snapshots").rglob("*.partial-*"))


def test_a_directory_at_the_snapshot_path_is_not_a_snapshot(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snapshots")
    cache.path("2" * 40).mkdir(parents=True)
    assert cache.lookup("2" * 40) is None


def test_default_cache_lives_under_llama98_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "private-cache"))
    root = SnapshotCache.default().root
    assert root == tmp_path / "private-cache" / "snapshots" and root.is_dir()
    shutil.rmtree(root)
