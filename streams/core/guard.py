"""The invalid-share guard: a worker that sees mostly invalid messages is not unlucky, it
is reading from a misconfigured producer (wrong schema, wrong topic), and dead-lettering
everything would only hide that. Over a sliding window of the last ``window`` messages,
more than ``max_share`` invalid stops the worker with a clear error."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class InvalidShareExceeded(RuntimeError):
    pass


class InvalidShareGuard:
    def __init__(self, max_share: float, window: int, min_messages: int | None = None):
        if not 0 < max_share <= 1:
            raise ValueError("max_share must be in (0, 1]")
        self.max_share = max_share
        self.window = window
        self.min_messages = min_messages if min_messages is not None else max(1, window // 5)
        self._flags: deque[int] = deque(maxlen=window)

    def check(self, invalid: Sequence[bool]) -> None:
        """Record a batch, one flag a message in the order they came (True: invalid);
        raise ``InvalidShareExceeded`` if the window's share now passes the limit. A batch
        that trips the guard is not recorded, so checking it again trips again. (The
        order matters once a batch is longer than the window: the window holds its end.)"""
        kept = list(self._flags)
        self._flags.extend(1 if flag else 0 for flag in invalid)
        seen = len(self._flags)
        bad = sum(self._flags)
        if seen >= self.min_messages and bad / seen > self.max_share:
            self._flags = deque(kept, maxlen=self.window)
            raise InvalidShareExceeded(
                f"{bad} of the last {seen} messages were invalid ({bad / seen:.0%}, limit "
                f"{self.max_share:.0%}): a producer is probably misconfigured; the batch is left "
                "unacknowledged. See `omni dlq ls` for the reasons."
            )
