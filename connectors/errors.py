"""Transient failures of the services at the edges. Workers back off and retry on these;
they never drop or acknowledge the batch in hand."""

from __future__ import annotations


class ServiceUnavailable(RuntimeError):
    """A service the pipeline writes to did not answer; retry later."""


class ViewsUnavailable(ServiceUnavailable):
    pass


class WarehouseUnavailable(ServiceUnavailable):
    pass


class DeliveryFailed(ServiceUnavailable):
    pass
