"""llama98-harness: prove that real Windows 98 binaries of a llama2.c port run, and how fast.

The layers and the data flow of a run are described in ARCHITECTURE.md at the top of the repository: a Session
drives a Machine (QEMU), a Console (serial + pexpect), a FileServer (FTP) and a Guest profile; the Oracle
(numpy) checks what the port printed.
"""

__version__ = "0.1.0"
