"""Text that came from a container or from Consul, made safe for a terminal or a log file."""

from __future__ import annotations

from registrator.mapping.services import unprintable


def shown(text: str) -> str:
    """Control and invisible characters escaped (ESC[2J would clear a terminal, a newline forge a log
    line, U+202E turn text around); the rest as it is."""
    return "".join(repr(char)[1:-1] if unprintable(char) else char for char in text)
