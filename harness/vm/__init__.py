"""The virtual machine layer: one QEMU process (disk overlay, QMP, snapshots), its serial console, the FTP server
that feeds it, and the profile-driven Guest verbs built on them. Knows no model and no port."""
