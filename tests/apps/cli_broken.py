"""A `recurjobs run` target whose import fails inside the module itself."""

from __future__ import annotations

raise RuntimeError("the app's settings are missing")
