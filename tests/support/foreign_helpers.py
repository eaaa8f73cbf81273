"""Foreign llama2.c-style binaries for the tests, built here from our own sources or from C the tests write.

`LLAMA98_FORK_STYLE` builds our port the way the field's forks behave (llama2.c's flags only, no run report,
chatter around the text); `LLAMA98_ROPE_BASE` makes a deliberately wrong one. The misbehaving programs (one that
crashes, one that prints nothing, one that never ends) are a few lines of C compiled for the guest."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.port_helpers import built

FORK_STYLE = ("LLAMA98_FORK_STYLE",)
WRONG_ROPE = ("LLAMA98_FORK_STYLE", "LLAMA98_ROPE_BASE=5000.0f")  # another RoPE base: text diverges after a while

MISBEHAVING = {
    "crash": "#include <signal.h>\nint main(void) { raise(SIGSEGV); return 0; }\n",
    "silent": "int main(void) { return 0; }\n",
    "hang": "int main(void) { volatile unsigned long n = 0; for (;;) { n++; } return 0; }\n",
}


def fork_binary(target: str, defines: tuple[str, ...] = FORK_STYLE) -> Path:
    """A fork-style build of our sources for `target` (native, tiny686 or win32); skips without the toolchain."""
    return built(target, defines=defines)


def misbehaving_binary(kind: str, directory: Path) -> Path:
    """A static i386 program that crashes, prints nothing or never ends, for the tiny686 guest."""
    source = directory / f"{kind}.c"
    source.write_text(MISBEHAVING[kind])
    binary = directory / kind
    subprocess.run(["gcc", "-m32", "-static", "-O0", "-o", str(binary), str(source)], check=True,
                   capture_output=True)
    return binary
