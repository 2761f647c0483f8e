"""streams/faust_fastpath.py: pinned to the faust it copies, and delivers as faust does."""

from __future__ import annotations

import asyncio
import inspect
import logging
import textwrap

import faust
import pytest
from faust.transport import consumer as faust_consumer
from mode import Service

from streams import faust_fastpath


def test_installed_faust_is_the_pinned_version() -> None:
    # Fails when faust-streaming is upgraded: re-read its Consumer._drain_messages, port
    # the change into streams/faust_fastpath.py (or drop the patch), then update the pins.
    assert faust.__version__ == faust_fastpath.FAUST_VERSION


def test_patched_function_is_unchanged_upstream() -> None:
    assert faust_fastpath.original_sha256() == faust_fastpath.ORIGINAL_SHA256


def _code_lines(source: str) -> list[str]:
    lines = []
    for line in textwrap.dedent(source).splitlines():
        code = line.split("  # ", 1)[0].rstrip()
        if code.strip() and not code.strip().startswith("#"):
            lines.append(code)
    return lines


def test_the_copy_differs_from_upstream_only_in_the_delivery() -> None:
    upstream = _code_lines(faust_fastpath.original_source())
    ours = _code_lines(inspect.getsource(faust_fastpath._drain_messages))
    # the lines that differ on purpose
    delivery = [
        "                        await self.wait_first(",
        "                            callback(message), self.suspend_flow.wait()",
        "                        )",
    ]
    at = next(i for i in range(len(upstream)) if upstream[i : i + 3] == delivery)
    upstream[at : at + 3] = ["                        await deliver(self, callback, message)"]
    upstream[0] = "async def _drain_messages(self: Any, fetcher: ServiceT) -> None:"
    upstream = [
        line.replace("= CONSUMER_FETCHING", "= faust_consumer.CONSUMER_FETCHING")
        for line in upstream
    ]
    ours.remove("    deliver = _deliver")
    assert ours == upstream


def test_refuses_other_versions(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    faust_fastpath.apply(False)
    monkeypatch.setattr(faust, "__version__", "0.15.4")
    with caplog.at_level(logging.WARNING, logger="omni.faust_fastpath"):
        assert faust_fastpath.apply(True) is False
    assert faust_fastpath.mode() == "stock"
    assert faust_fastpath.app_options(True) == {}
    assert "running faust unpatched" in caplog.text


def test_apply_and_switch_off() -> None:
    try:
        assert faust_fastpath.apply(True) is True
        assert faust_consumer.Consumer._drain_messages is faust_fastpath._drain_messages
        assert faust_fastpath.mode() == "patched"
        assert faust_fastpath.app_options(True)["Monitor"] is faust_fastpath.QuietMonitor
        assert faust_fastpath.app_options(False) == {}
    finally:
        faust_fastpath.apply(False)
    assert faust_fastpath.mode() == "stock"


class _Consumer(Service):
    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_a_callback_that_need_not_wait_runs_without_tasks() -> None:
    async def main() -> None:
        consumer = _Consumer()
        delivered = []
        tasks_before = len(asyncio.all_tasks())

        async def callback(message: int) -> None:
            assert len(asyncio.all_tasks()) == tasks_before  # no task per message
            delivered.append(message)

        for n in range(3):
            await faust_fastpath._deliver(consumer, callback, n)
        assert delivered == [0, 1, 2]

    _run(main())


def test_a_waiting_callback_finishes_when_flow_is_not_suspended() -> None:
    async def main() -> None:
        consumer = _Consumer()
        room = asyncio.Event()
        delivered = []

        async def callback(message: int) -> int:
            await asyncio.sleep(0)
            await room.wait()
            delivered.append(message)
            return message

        delivery = asyncio.ensure_future(faust_fastpath._deliver(consumer, callback, 7))
        await asyncio.sleep(0.01)
        assert not delivery.done()
        room.set()
        await delivery
        assert delivered == [7]

    _run(main())


@pytest.mark.parametrize("how", ["suspend", "stop"])
def test_a_waiting_callback_is_aborted_when_a_rebalance_or_stop_begins(how: str) -> None:
    async def main() -> None:
        consumer = _Consumer()
        room = asyncio.Event()
        delivered, cancelled = [], []

        async def callback(message: int) -> None:
            try:
                await room.wait()  # e.g. the stream's buffer is full
            except asyncio.CancelledError:
                cancelled.append(message)
                raise
            delivered.append(message)

        delivery = asyncio.ensure_future(faust_fastpath._deliver(consumer, callback, 9))
        await asyncio.sleep(0.01)
        if how == "suspend":
            consumer.suspend_flow.set()
        else:
            consumer._stopped.set()
        await asyncio.wait_for(delivery, 1)
        room.set()
        await asyncio.sleep(0.01)
        assert (delivered, cancelled) == ([], [9])

    _run(main())


def test_suspended_flow_takes_fausts_own_path() -> None:
    async def main() -> None:
        consumer = _Consumer()
        consumer.suspend_flow.set()
        ran = []

        async def callback(message: int) -> None:
            await asyncio.sleep(0.05)
            ran.append(message)

        await faust_fastpath._deliver(consumer, callback, 1)
        await asyncio.sleep(0.1)
        assert ran == []  # as wait_first: the suspend event won, the delivery was cancelled

    _run(main())


def test_errors_of_the_callback_propagate() -> None:
    async def main() -> None:
        consumer = _Consumer()

        async def fails_at_once(message: int) -> None:
            raise ValueError(message)

        async def fails_later(message: int) -> None:
            await asyncio.sleep(0)
            raise KeyError(message)

        with pytest.raises(ValueError):
            await faust_fastpath._deliver(consumer, fails_at_once, 1)
        with pytest.raises(KeyError):
            await faust_fastpath._deliver(consumer, fails_later, 2)

    _run(main())
