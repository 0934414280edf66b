"""Logging set-up: readable text by default, one JSON object per line with `--log-format json`."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_CONTAINER = re.compile(r"^container ([^:\s]+):")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, and `container` for every line about one (they start "container NAME:")."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
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


def configure_logging(level: str, form: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
