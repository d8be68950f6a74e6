"""Entry point for ``python -m voicecoach``."""

from __future__ import annotations

from voicecoach.cli import main

raise SystemExit(main())
