"""What the CLI prints."""

from __future__ import annotations

import logging

from registrator.ops.logs import configure_logging
from registrator.ops.views import table


def test_a_table_shows_control_and_invisible_characters_escaped_never_raw():
    """Another host's service named with ESC[2J cleared the operator's terminal; U+202E turned a line around (issue 21)."""
    row = {"name": "evil\x1b[2J", "id": "x\u202ey", "address": "10.0.0.5", "port": 80, "tags": ["a\nb"], "checks": "passing",
           "container": "", "node": "n1"}
    assert table([row], with_node=True).splitlines()[1] == "evil\\x1b[2J  x\\u202ey  10.0.0.5:80  a\\nb  passing  n1"


def test_log_lines_show_what_a_container_or_consul_supplied_escaped(capsys):
    """A newline in a name forged a whole log line; ESC[2J cleared the terminal; NUL made the log binary (issue 21)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for form in ("text", "json"):
            configure_logging("info", form)
            logging.getLogger("registrator.test").info("service %s", "web\n2026-12-03 INFO forged\x1b[2J\x00\u202e")
            line = capsys.readouterr().err
            assert line.count("\n") == 1 and "\x1b" not in line and "\x00" not in line and "\u202e" not in line, line
            assert "web\\n2026-12-03 INFO forged\\x1b[2J\\x00\\u202e" in line.replace("\\\\", "\\")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
