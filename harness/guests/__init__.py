"""The guests the harness can boot: the built-in tiny686 stand-in (built from Debian packages) and a user's
Windows 98 image (prepared copy, image detection, the Wine lane for its agent)."""

BUILTIN_GUEST = "tiny686"  # the stand-in guest `--vm tiny686` names; built from Debian packages on demand
