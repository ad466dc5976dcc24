"""The burst's own errors."""

from __future__ import annotations


class BurstError(RuntimeError):
    """The burst cannot run (bad settings, nothing deployed); the message says what to fix.
    Raised before anything is sent."""
