"""Data sets tierwise reads: real photos shipped in installed packages, and the shared sets."""
