"""Logging set-up: readable text by default, one JSON object per line with `--log-format json`."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from registrator.ops.text import shown

_CONTAINER = re.compile(r"^container ([^:\s]+):")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, and `container` for every line about one (they start "container NAME:")."""

    def format(self, record: logging.LogRecord) -> str:
        message = shown(record.getMessage())
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if match := _CONTAINER.match(message):
            entry["container"] = match.group(1)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One line per record: what a container or Consul supplied cannot forge another line or drive the terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = shown(record.message)
        return super().formatMessage(record)


def configure_logging(level: str, form: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
