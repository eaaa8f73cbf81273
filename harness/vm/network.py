"""The guest's network as QEMU user networking (slirp) lays it out: the only addresses the harness ever uses.

Why one place: the guest reaches the host only through slirp, where the host's loopback appears as 10.0.2.2 and
the guest is always 10.0.2.15; the FTP server, the active-mode bridge and the machine's netdev must agree.
"""

GUEST_ADDRESS = "10.0.2.15"  # the address slirp's DHCP gives the (only) guest
HOST_ADDRESS = "10.0.2.2"  # the host's 127.0.0.1 as the guest sees it
NETDEV_ID = "net0"  # the -netdev id that hostfwd_add/remove name
