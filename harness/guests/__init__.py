"""The guests the harness can boot: the built-in tiny686 stand-in (built from Debian packages) and a user's
Windows 98 image (prepared copy, image detection, the Wine lane for its agent)."""
