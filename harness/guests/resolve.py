"""Which guest a run uses: `--vm` names the built-in stand-in (`tiny686`, built on demand) or a user's image,
whose profile is detected unless `--vm-profile` names one."""

from __future__ import annotations

import logging
from pathlib import Path

from harness.guests import BUILTIN_GUEST
from harness.guests.detect import detect_profile
from harness.vm.profile import GuestProfile, load_profile

log = logging.getLogger(__name__)


def resolve_guest(vm: str | None, profile_name: str = "auto") -> tuple[GuestProfile, Path]:
    """The profile and disk image for `--vm` / `--vm-profile` (the built-in tiny686 is built on demand)."""
    if vm is None or vm == BUILTIN_GUEST:
        from harness.guests.tiny686.image import build_guest

        log.info("guest image: tiny686 (built from Debian packages on first use, then cached)")
        image = build_guest(BUILTIN_GUEST)
        return load_profile(profile_name if profile_name != "auto" else BUILTIN_GUEST), image
    image = Path(vm)
    name = detect_profile(image) if profile_name == "auto" else profile_name
    return load_profile(name), image
