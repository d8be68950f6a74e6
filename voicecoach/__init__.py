"""voicecoach: a hands-free, offline voice coach for backward treadmill walking."""

from __future__ import annotations

__version__ = "0.1.0"
