"""The one error vocabulary for bad input."""

from __future__ import annotations


class InvalidTouchpoint(ValueError):
    """A record that decoded but breaks a rule. ``field`` is a dotted path, ``reason`` a
    short stable code; ``detail`` never contains a personal value."""

    def __init__(self, field: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{field}: {reason}" + (f" ({detail})" if detail else ""))
        self.field = field
        self.reason = reason
        self.detail = detail
