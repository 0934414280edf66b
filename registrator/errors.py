"""Errors that more than one layer raises or catches."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting that cannot work; the message names the flag or variable."""
