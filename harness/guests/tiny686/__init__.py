"""Build the tiny686 stand-in guest image from Debian i386 packages, without root, loop devices or downloads
beyond the package registry."""
