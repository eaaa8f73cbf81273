"""The slirp addresses in harness.vm.network are the ones every party really uses: QEMU's user networking (its
default guest address and the forwards the FTP bridge makes), the machine's netdev, the FTP server's passive
replies, the tiny686 guest's /init and, with `--vm`, the booted guest itself."""

from __future__ import annotations

import ftplib
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.core.artifacts import ArtifactDir
from harness.core.paths import project_root
from harness.vm.ftp import FileServer
from harness.vm.machine import Machine, MachineOptions
from harness.vm.network import GUEST_ADDRESS, HOST_ADDRESS, NETDEV_ID
from harness.vm.profile import load_profile

if TYPE_CHECKING:
    from harness.run.session import Session

SLIRP_NETWORK = ipaddress.ip_network("10.0.2.0/24")  # QEMU's documented default for -netdev user


@pytest.fixture()
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    """The tiny686 machine on a one-sector disk that spins forever (no guest OS needed for slirp's tables)."""
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "spin.img"
    sector = bytearray(512)
    sector[0:2] = b"\xeb\xfe"
    sector[510:512] = b"\x55\xaa"
    image.write_bytes(bytes(sector) + bytes(1024 * 1024 - 512))
    with Machine(load_profile("tiny686"), image, ArtifactDir(tmp_path / "artifacts"),
                 MachineOptions(use_snapshot=False)) as running:
        yield running


def test_the_addresses_are_slirps_defaults() -> None:
    guest, host = ipaddress.ip_address(GUEST_ADDRESS), ipaddress.ip_address(HOST_ADDRESS)
    assert guest in SLIRP_NETWORK and host in SLIRP_NETWORK and guest != host
    assert str(host) == "10.0.2.2" and str(guest) == "10.0.2.15"  # gateway/host and slirp's first DHCP lease


def test_the_machine_names_its_netdev_as_the_forwards_do(machine: Machine) -> None:
    args = machine.device_args()
    assert args[args.index("-netdev") + 1] == f"user,id={NETDEV_ID}"
    assert args[args.index("-device") + 1].endswith(f",netdev={NETDEV_ID}")
    network = machine.hmp("info network")
    assert re.search(rf"\b{NETDEV_ID}: .*type=user,net={SLIRP_NETWORK.network_address}\b", network), network


def test_slirps_default_guest_is_the_guest_address(machine: Machine) -> None:
    """A forward without a guest address goes to whatever slirp hands out by DHCP (how Windows 98 gets its
    address): it must be GUEST_ADDRESS, the only target the FTP bridge forwards to."""
    assert machine.hmp(f"hostfwd_add {NETDEV_ID} tcp:127.0.0.1:0-:2121").strip() == ""
    table = machine.hmp("info usernet")
    assert re.search(rf"HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+\d+\s+{re.escape(GUEST_ADDRESS)}\s+2121\s", table), table


def test_the_bridges_forward_reaches_the_guest_address_from_loopback_only(machine: Machine) -> None:
    host_port = machine.add_host_forward(20021)
    table = machine.hmp("info usernet")
    line = next(line for line in table.splitlines() if f" {host_port} " in line)
    assert line.split()[2:6] == ["127.0.0.1", str(host_port), GUEST_ADDRESS, "20021"], line
    machine.remove_host_forward(host_port)
    assert (host_port, 20021) not in machine.host_forwards()


def test_the_ftp_server_announces_the_host_address_for_passive_mode(tmp_path: Path) -> None:
    with FileServer(ArtifactDir(tmp_path / "artifacts")) as server:
        assert server.guest_host == HOST_ADDRESS
        with ftplib.FTP() as client:
            client.connect("127.0.0.1", server.port, timeout=10)
            client.login(server.user, server.password)
            reply = client.sendcmd("PASV")
    numbers = re.search(r"\((\d+,\d+,\d+,\d+),\d+,\d+\)", reply)
    assert numbers is not None and numbers.group(1) == HOST_ADDRESS.replace(".", ","), reply


def test_the_tiny686_init_configures_the_same_addresses() -> None:
    init = (project_root() / "vm" / "tiny686" / "init").read_text()
    assert f"ip addr add {GUEST_ADDRESS}/{SLIRP_NETWORK.prefixlen} dev eth0" in init
    assert f"ip route add default via {HOST_ADDRESS}" in init


@pytest.mark.vm
def test_the_booted_guest_has_the_guest_address_and_reaches_the_host_through_it(guest: Session) -> None:
    if guest.profile.console.kind != "posix-shell":
        pytest.skip(f"reads the network with a shell; --vm is a {guest.profile.name} guest")
    assert guest.guest is not None
    addresses = guest.guest.run_checked("ip -o -4 addr show eth0", 30).output
    assert f"inet {GUEST_ADDRESS}/{SLIRP_NETWORK.prefixlen}" in addresses, addresses
    routes = guest.guest.run_checked("ip route", 30).output
    assert f"default via {HOST_ADDRESS}" in routes, routes
