"""Shared plumbing: errors, the manifest, hashing, atomic writes, console output."""
