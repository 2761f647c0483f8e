"""The touchpoint contract: Avro schemas (the ``*.avsc`` files beside this module are the
source of truth), the pydantic models that mirror them, and the wire codec."""

from schemas.codec import DecodeError, decode, encode
from schemas.contract import TOUCHPOINT_TYPES, Contract, SchemaInfo, contract

__all__ = [
    "TOUCHPOINT_TYPES",
    "Contract",
    "DecodeError",
    "SchemaInfo",
    "contract",
    "decode",
    "encode",
]
