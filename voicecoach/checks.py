"""One health check's result, as doctor prints it: what was checked, ok/warn/FAIL, the fix."""

from __future__ import annotations

import logging
from dataclasses import dataclass

_LOGGER = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    """One result: what was checked, ok/warn/FAIL, what was found and, for problems, the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return text + (f" -> fix: {self.fix}" if self.fix and self.status != OK else "")
