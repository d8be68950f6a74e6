"""A renderer that renders each (text, rate) once: benches and tests that replay sessions."""

from __future__ import annotations

import logging

from voicecoach.speaking.render import Rendered, Renderer

_LOGGER = logging.getLogger(__name__)


class CachedRenderer:
    """A real renderer that renders each (text, rate) once: a replay then hears the coach
    exactly as long as the session the user's track was recorded against did, and a soak of
    hours renders its bounded set of texts once (cues repeat)."""

    def __init__(self, inner: Renderer) -> None:
        self.inner = inner
        self.cache: dict[tuple[str, int], Rendered] = {}

    @property
    def rate(self) -> int:
        return int(getattr(self.inner, "rate", 160))

    @rate.setter
    def rate(self, value: int) -> None:
        self.inner.rate = value  # type: ignore[attr-defined]

    def render(self, text: str) -> Rendered:
        key = (text, self.rate)
        if key not in self.cache:
            self.cache[key] = self.inner.render(text)
        return self.cache[key]

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
