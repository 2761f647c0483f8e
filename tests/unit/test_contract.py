"""The pydantic models mirror the ``.avsc`` files field by field, every type survives the
wire unchanged, and every schema has its own single-object fingerprint."""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

import pytest
from fastavro.schema import parse_schema
from pydantic import AwareDatetime, BaseModel

from schemas.codec import SINGLE_OBJECT_MAGIC, decode, encode
from schemas.contract import (
    INTERNAL_TYPES,
    TOUCHPOINT_TYPES,
    common_types,
    contract,
    expanded_source,
    load_schema_info,
    schema_source,
)
from schemas.models import MODELS, IdentifierKind

from .factories import FULL, MINIMAL

ALL_TYPES = (
    *TOUCHPOINT_TYPES,
    "touchpoint_fact",
    "identity_event",
    "points_entry",
    "stock_movement",
    "minute_aggregate",
)
_PRIMITIVES: dict[str, type] = {
    "string": str,
    "boolean": bool,
    "int": int,
    "long": int,
    "float": float,
    "double": float,
    "bytes": bytes,
}
_MISSING = object()


# -- the comparison ---------------------------------------------------------------------


@dataclass
class Walk:
    """What a walk of one schema against one model found."""

    named: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    records: set[str] = field(default_factory=set)
    enums: dict[str, list[str]] = field(default_factory=dict)
    decimals: list[str] = field(default_factory=list)
    timestamps: list[str] = field(default_factory=list)


def _split(annotation: Any) -> tuple[Any, bool, list[Any]]:
    """(inner type, accepts None, constraint metadata) of a model field annotation."""
    nullable = False
    metadata: list[Any] = []
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        nullable = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return annotation, nullable, metadata
        annotation = rest[0]
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        for extra in extras:
            metadata.extend(getattr(extra, "metadata", [extra]))
    return annotation, nullable, metadata


def _plain(value: Any) -> Any:
    """A model-side default in the shape of an Avro JSON default."""
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in value.model_dump().items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down (False == 0 is not good enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _resolve(avro_type: Any, walk: Walk) -> Any:
    if isinstance(avro_type, str) and avro_type not in _PRIMITIVES and avro_type != "null":
        return walk.named[avro_type]
    return avro_type


def _compare_type(avro_type: Any, annotation: Any, meta: list[Any], walk: Walk, at: str) -> None:
    avro_type = _resolve(avro_type, walk)
    if isinstance(avro_type, str):
        expected = _PRIMITIVES[avro_type]
        if annotation is not expected:
            walk.problems.append(f"{at}: avro {avro_type} but model {annotation!r}")
        return
    kind = avro_type["type"]
    logical = avro_type.get("logicalType")
    if logical == "decimal":
        walk.decimals.append(at)
        if kind != "bytes" or annotation is not Decimal:
            walk.problems.append(f"{at}: avro {kind}+decimal but model {annotation!r}")
        for m in meta:
            digits = getattr(m, "max_digits", None)
            places = getattr(m, "decimal_places", None)
            if digits is not None and digits != avro_type["precision"]:
                walk.problems.append(f"{at}: precision {avro_type['precision']} vs {digits}")
            if places is not None and places != avro_type["scale"]:
                walk.problems.append(f"{at}: scale {avro_type['scale']} vs {places}")
        return
    if logical == "timestamp-millis":
        walk.timestamps.append(at)
        if kind != "long" or annotation not in (datetime, AwareDatetime):
            walk.problems.append(f"{at}: avro {kind}+timestamp-millis but model {annotation!r}")
        return
    if kind == "enum":
        name = avro_type["name"].rsplit(".", 1)[-1]
        walk.enums[name] = list(avro_type["symbols"])
        if not (isinstance(annotation, type) and issubclass(annotation, StrEnum)):
            walk.problems.append(f"{at}: avro enum {name} but model {annotation!r}")
            return
        if annotation.__name__ != name:
            walk.problems.append(f"{at}: enum {name} vs {annotation.__name__}")
        members = [m.value for m in annotation]
        if members != avro_type["symbols"]:
            walk.problems.append(f"{at}: symbols {avro_type['symbols']} vs {members}")
        return
    if kind == "array":
        if typing.get_origin(annotation) is not list:
            walk.problems.append(f"{at}: avro array but model {annotation!r}")
            return
        (item,) = typing.get_args(annotation)
        item, _, item_meta = _split(item)
        _compare_type(avro_type["items"], item, item_meta, walk, f"{at}[]")
        return
    if kind == "record":
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            walk.problems.append(f"{at}: avro record but model {annotation!r}")
            return
        _compare_record(avro_type, annotation, walk, at)
        return
    walk.problems.append(f"{at}: avro type {kind} is not handled by this comparison")


def _compare_field(avro_field: dict[str, Any], model: type[BaseModel], walk: Walk, at: str) -> None:
    info = model.model_fields[avro_field["name"]]
    annotation, model_nullable, meta = _split(info.annotation)
    meta = [*info.metadata, *meta]
    avro_type = avro_field["type"]
    avro_nullable = isinstance(avro_type, list) and "null" in avro_type
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            walk.problems.append(f"{at}: union {avro_type} is not [null, T]")
            return
        avro_type = branches[0]
    if avro_nullable != model_nullable:
        walk.problems.append(
            f"{at}: avro nullable={avro_nullable}, model nullable={model_nullable}"
        )
    avro_default = avro_field.get("default", _MISSING)
    if (avro_default is _MISSING) != info.is_required():
        walk.problems.append(
            f"{at}: avro has default={avro_default is not _MISSING}, "
            f"model required={info.is_required()}"
        )
    elif avro_default is not _MISSING:
        model_default = _plain(info.get_default(call_default_factory=True))
        if not _same(avro_default, model_default):
            walk.problems.append(f"{at}: default {avro_default!r} vs {model_default!r}")
    _compare_type(avro_type, annotation, meta, walk, at)


def _compare_record(schema: dict[str, Any], model: type[BaseModel], walk: Walk, at: str) -> None:
    name = schema["name"].rsplit(".", 1)[-1]
    walk.records.add(name)
    if name != model.__name__:
        walk.problems.append(f"{at}: record {name} vs model {model.__name__}")
    avro_names = [f["name"] for f in schema["fields"]]
    model_names = list(model.model_fields)
    if avro_names != model_names:
        walk.problems.append(f"{at}: fields {avro_names} vs {model_names}")
    for avro_field in schema["fields"]:
        if avro_field["name"] in model.model_fields:
            _compare_field(avro_field, model, walk, f"{at}.{avro_field['name']}")


def mirror(parsed: dict[str, Any], model: type[BaseModel]) -> Walk:
    """Walk a parsed record schema and a model side by side."""
    walk = Walk(named=dict(parsed.get("__named_schemas", {})))
    _compare_record(parsed, model, walk, model.__name__)
    return walk


def _parse_with_common(type_name: str, common: list[Any]) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for named_type in common:
        parse_schema(named_type, named)
    return parse_schema(schema_source(type_name), named)


# -- the models mirror the schemas ----------------------------------------------------------


def test_every_contract_type_has_a_model_and_a_schema() -> None:
    assert (*TOUCHPOINT_TYPES, *INTERNAL_TYPES) == ALL_TYPES
    assert set(MODELS) == set(ALL_TYPES)
    assert set(contract().by_type) == set(ALL_TYPES)


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_model_mirrors_schema(type_name: str) -> None:
    walk = mirror(contract().schema(type_name).parsed, MODELS[type_name])
    assert walk.problems == []


@pytest.mark.parametrize("type_name", TOUCHPOINT_TYPES)
def test_touchpoint_walk_reaches_the_shared_records(type_name: str) -> None:
    walk = mirror(contract().schema(type_name).parsed, MODELS[type_name])
    assert {"Envelope", "Identifier", "Consent"} <= walk.records
    assert walk.enums["IdentifierKind"] == [
        "phone",
        "unionid",
        "openid",
        "app_user",
        "member_card",
        "device",
    ]
    assert walk.enums["DeviceRole"] == ["personal", "shared_store_device", "guide_scanner"]
    assert walk.timestamps == [
        f"{MODELS[type_name].__name__}.envelope.event_time",
        f"{MODELS[type_name].__name__}.envelope.produced_time",
    ]


def test_every_enum_and_record_is_visited() -> None:
    records: set[str] = set()
    enums: dict[str, list[str]] = {}
    for type_name in ALL_TYPES:
        walk = mirror(contract().schema(type_name).parsed, MODELS[type_name])
        records |= walk.records
        enums.update(walk.enums)
    assert records == {
        "StoreScan",
        "LivestreamClick",
        "RedEnvelopeClaim",
        "AppOrder",
        "OrderStatus",
        "InventoryAdjustment",
        "TouchpointFact",
        "IdentityEvent",
        "PointsEntry",
        "StockMovement",
        "MinuteAggregate",
        "Envelope",
        "Identifier",
        "Consent",
        "OrderLine",
        "Fulfilment",
    }
    assert enums == {
        "IdentifierKind": ["phone", "unionid", "openid", "app_user", "member_card", "device"],
        "DeviceRole": ["personal", "shared_store_device", "guide_scanner"],
        "ScanKind": ["checkout", "member_code"],
        "PaymentMethod": ["wechat_pay", "alipay", "unionpay", "card", "cash", "none", "other"],
        "LivePlatform": ["douyin", "wechat_channels", "taobao_live", "kuaishou", "other"],
        "ClaimChannel": ["wechat", "app", "mini_program", "livestream", "store", "other"],
        "AppKind": ["app", "mini_program"],
        "FulfilmentMode": ["delivery", "pickup"],
        "OrderStatusKind": ["paid", "cancelled", "refunded", "picked_up", "shipped"],
        "AdjustmentKind": ["receipt", "transfer", "count"],
    }


@pytest.mark.parametrize(
    ("type_name", "decimals"),
    [
        ("store_scan", ["StoreScan.lines[].unit_price", "StoreScan.paid_amount"]),
        ("livestream_click", []),
        ("red_envelope_claim", ["RedEnvelopeClaim.face_value"]),
        (
            "app_order",
            [
                "AppOrder.lines[].unit_price",
                "AppOrder.total_amount",
                "AppOrder.discount_amount",
                "AppOrder.paid_amount",
            ],
        ),
        ("order_status", ["OrderStatus.refund_amount"]),
        ("inventory_adjustment", []),
        ("touchpoint_fact", ["TouchpointFact.amount"]),
        ("identity_event", []),
        ("points_entry", []),
    ],
)
def test_decimal_fields_are_found(type_name: str, decimals: list[str]) -> None:
    walk = mirror(contract().schema(type_name).parsed, MODELS[type_name])
    assert walk.decimals == decimals


def test_fact_timestamps_are_datetimes() -> None:
    walk = mirror(contract().schema("touchpoint_fact").parsed, MODELS["touchpoint_fact"])
    assert walk.timestamps == ["TouchpointFact.event_time", "TouchpointFact.processed_time"]
    assert walk.problems == []


# -- the comparison itself can fail -----------------------------------------------------------


def test_comparison_reports_an_added_field() -> None:
    source = copy.deepcopy(expanded_source("store_scan"))
    source["fields"].append({"name": "loyalty_tier", "type": "string"})
    parsed = load_schema_info("store_scan", source).parsed
    walk = mirror(parsed, MODELS["store_scan"])
    assert len(walk.problems) == 1
    assert walk.problems[0].startswith("StoreScan: fields [")
    assert "'loyalty_tier'" in walk.problems[0]


def _mutate(fields: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(f for f in fields if f["name"] == name)


def _not_nullable(src: dict[str, Any]) -> None:
    staff = _mutate(src["fields"], "staff_id")
    staff["type"] = "string"
    del staff["default"]


def _other_default(src: dict[str, Any]) -> None:
    _mutate(src["fields"], "payment_method")["default"] = "cash"


def _swapped_symbols(src: dict[str, Any]) -> None:
    _mutate(src["fields"], "scan_kind")["type"]["symbols"] = ["member_code", "checkout"]


def _other_scale(src: dict[str, Any]) -> None:
    _mutate(src["fields"], "paid_amount")["type"]["scale"] = 3


def _decimal_as_double(src: dict[str, Any]) -> None:
    _mutate(src["fields"], "paid_amount")["type"] = "double"


def _renamed_field(src: dict[str, Any]) -> None:
    _mutate(src["fields"], "staff_id")["name"] = "cashier_id"


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (_not_nullable, "StoreScan.staff_id: avro nullable=False, model nullable=True"),
        (_other_default, "StoreScan.payment_method: default 'cash' vs 'other'"),
        (
            _swapped_symbols,
            "StoreScan.scan_kind: symbols ['member_code', 'checkout'] "
            "vs ['checkout', 'member_code']",
        ),
        (_other_scale, "StoreScan.paid_amount: scale 3 vs 2"),
        (
            _decimal_as_double,
            "StoreScan.paid_amount: avro double but model <class 'decimal.Decimal'>",
        ),
    ],
)
def test_comparison_reports_a_changed_field(mutation: Any, expected: str) -> None:
    source = copy.deepcopy(expanded_source("store_scan"))
    mutation(source)
    walk = mirror(load_schema_info("store_scan", source).parsed, MODELS["store_scan"])
    assert expected in walk.problems


def test_comparison_reports_a_renamed_field() -> None:
    source = copy.deepcopy(expanded_source("store_scan"))
    _renamed_field(source)
    walk = mirror(load_schema_info("store_scan", source).parsed, MODELS["store_scan"])
    assert walk.problems == [
        "StoreScan: fields ['envelope', 'store_id', 'cashier_id', 'scan_kind', 'lines', "
        "'paid_amount', 'payment_method'] vs ['envelope', 'store_id', 'staff_id', 'scan_kind', "
        "'lines', 'paid_amount', 'payment_method']"
    ]


def test_comparison_recurses_into_shared_records() -> None:
    common = copy.deepcopy(common_types())
    identifier = next(t for t in common if t["name"] == "Identifier")
    identifier["fields"].append({"name": "issuer", "type": ["null", "string"], "default": None})
    consent = next(t for t in common if t["name"] == "Consent")
    consent["fields"][1]["default"] = False
    walk = mirror(_parse_with_common("store_scan", common), MODELS["store_scan"])
    assert walk.problems == [
        "StoreScan.envelope.identifiers[]: fields ['kind', 'value', 'app_id', 'device_role', "
        "'issuer'] vs ['kind', 'value', 'app_id', 'device_role']",
        "StoreScan.envelope.consent.analytics: default False vs True",
    ]


def test_comparison_checks_the_default_of_a_nested_record() -> None:
    common = copy.deepcopy(common_types())
    envelope = next(t for t in common if t["name"] == "Envelope")
    _mutate(envelope["fields"], "consent")["default"] = {"marketing": True, "analytics": True}
    walk = mirror(_parse_with_common("order_status", common), MODELS["order_status"])
    assert walk.problems == [
        "OrderStatus.envelope.consent: default {'marketing': True, 'analytics': True} vs "
        "{'marketing': False, 'analytics': True}"
    ]


def test_strict_default_comparison_tells_false_from_zero() -> None:
    assert _same({"a": False}, {"a": False})
    assert not _same(False, 0)
    assert not _same([1, 2], [1, 2.0])


# -- round trips ---------------------------------------------------------------------------


def _nulls(value: Any, at: str = "") -> list[str]:
    if value is None:
        return [at]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{at}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{at}[{i}]")]
    return []


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_full_instance_sets_every_optional_field(type_name: str) -> None:
    model = FULL[type_name]()
    record = model.to_avro()
    if "envelope" in record:
        identifiers = record["envelope"]["identifiers"]
        assert [i["kind"] for i in identifiers] == [k.value for k in IdentifierKind]
        # app_id belongs to openids and device_role to devices: only those must carry them
        for ident in identifiers:
            if ident["kind"] != IdentifierKind.openid:
                del ident["app_id"]
            if ident["kind"] != IdentifierKind.device:
                del ident["device_role"]
    assert _nulls(record) == []
    assert model.model_fields_set == set(type(model).model_fields)


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_minimal_instance_sets_only_required_fields(type_name: str) -> None:
    model = MINIMAL[type_name]()
    required = {n for n, f in type(model).model_fields.items() if f.is_required()}
    assert model.model_fields_set == required


@pytest.mark.parametrize("build", [FULL, MINIMAL], ids=["full", "minimal"])
@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_round_trip(type_name: str, build: dict[str, Any]) -> None:
    original = build[type_name]()
    raw = encode(type_name, original.to_avro())
    decoded_type, record = decode(raw)
    assert decoded_type == type_name
    again = MODELS[type_name].model_validate(record)
    assert again == original
    assert again.to_avro() == original.to_avro()
    # and the decoded record encodes to the very same bytes
    assert encode(type_name, record) == raw


def test_round_trip_keeps_the_instant_and_normalises_the_zone_to_utc() -> None:
    original = FULL["store_scan"]()
    _, record = decode(encode("store_scan", original.to_avro()))
    event_time = record["envelope"]["event_time"]
    assert event_time.utcoffset().total_seconds() == 0
    assert event_time.isoformat() == "2024-06-01T11:55:00.123000+00:00"


def test_minimal_round_trip_fills_the_schema_defaults() -> None:
    _, record = decode(encode("store_scan", MINIMAL["store_scan"]().to_avro()))
    assert record["envelope"]["time_zone"] == "Asia/Shanghai"
    assert record["envelope"]["identifiers"] == []
    assert record["envelope"]["consent"] == {"marketing": False, "analytics": True}
    assert record["staff_id"] is None
    assert record["scan_kind"] == "checkout"
    assert record["lines"] == []
    assert record["paid_amount"] == Decimal("0.00")
    assert record["payment_method"] == "other"


def test_round_trip_of_decimals_is_exact() -> None:
    _, record = decode(encode("app_order", FULL["app_order"]().to_avro()))
    assert [ln["unit_price"] for ln in record["lines"]] == [Decimal("199.00"), Decimal("0.99")]
    assert str(record["total_amount"]) == "202.96"
    assert str(record["discount_amount"]) == "2.96"
    assert str(record["paid_amount"]) == "200.00"
    assert record["fulfilment"] == {
        "mode": "pickup",
        "store_id": "S003",
        "latitude": 31.2304,
        "longitude": 121.4737,
    }


# -- fingerprints ----------------------------------------------------------------------------


def _crc64_avro(data: bytes) -> bytes:
    """The Avro spec's CRC-64-AVRO (Rabin) fingerprint, little-endian as on the wire."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty if fp & 1 else 0)
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def test_crc64_reference_matches_the_spec_value_for_null() -> None:
    # Avro's own test vector: the fingerprint of "null" is 7195948357588979594
    assert _crc64_avro(b'"null"') == (7195948357588979594).to_bytes(8, "little")


def test_fingerprints_are_eight_distinct_bytes() -> None:
    prints = [contract().schema(t).fingerprint for t in ALL_TYPES]
    assert all(type(fp) is bytes and len(fp) == 8 for fp in prints)
    assert len(set(prints)) == len(ALL_TYPES)
    assert {fp: contract().by_fingerprint[fp].type_name for fp in prints} == dict(
        zip(prints, ALL_TYPES, strict=True)
    )


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_fingerprint_is_crc64_of_the_canonical_form(type_name: str) -> None:
    info = contract().schema(type_name)
    assert info.fingerprint == _crc64_avro(info.canonical_form.encode("utf-8"))
    assert info.fingerprint_hex == info.fingerprint.hex()


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_encoded_message_starts_with_magic_and_fingerprint(type_name: str) -> None:
    info = contract().schema(type_name)
    raw = encode(type_name, MINIMAL[type_name]().to_avro())
    assert SINGLE_OBJECT_MAGIC == b"\xc3\x01"
    assert raw[:10] == b"\xc3\x01" + info.fingerprint


@pytest.mark.parametrize(
    ("type_name", "full_name"),
    [
        ("store_scan", "omni.touchpoint.StoreScan"),
        ("livestream_click", "omni.touchpoint.LivestreamClick"),
        ("red_envelope_claim", "omni.touchpoint.RedEnvelopeClaim"),
        ("app_order", "omni.touchpoint.AppOrder"),
        ("order_status", "omni.touchpoint.OrderStatus"),
        ("inventory_adjustment", "omni.touchpoint.InventoryAdjustment"),
        ("touchpoint_fact", "omni.fact.TouchpointFact"),
        ("identity_event", "omni.fact.IdentityEvent"),
        ("points_entry", "omni.fact.PointsEntry"),
    ],
)
def test_full_names(type_name: str, full_name: str) -> None:
    assert contract().schema(type_name).full_name == full_name


def test_a_changed_schema_has_another_fingerprint() -> None:
    source = copy.deepcopy(expanded_source("store_scan"))
    source["fields"].append({"name": "loyalty_tier", "type": "string"})
    changed = load_schema_info("store_scan", source)
    assert changed.fingerprint != contract().schema("store_scan").fingerprint


def test_docs_do_not_change_the_fingerprint() -> None:
    source = copy.deepcopy(expanded_source("store_scan"))
    source["doc"] = "another description"
    assert load_schema_info("store_scan", source).fingerprint == (
        contract().schema("store_scan").fingerprint
    )


def test_unknown_type_name_is_a_key_error_listing_the_known_ones() -> None:
    with pytest.raises(KeyError) as info:
        contract().schema("loyalty_points")
    assert "unknown event type 'loyalty_points'" in str(info.value)
    assert (
        "app_order, identity_event, inventory_adjustment, livestream_click, minute_aggregate, "
        "order_status, points_entry" in str(info.value)
    )


@pytest.mark.parametrize("written", ["1.000", "1E+1", "0E-5", "999999999999.990", "129.9"])
def test_money_written_with_other_places_is_kept_in_cents(written: str) -> None:
    """A valid amount spelled with more or fewer places, or an exponent, is held in cents,
    so Avro's decimal(14, 2) writes it (it refused "1.000" as written)."""
    data = FULL["store_scan"]().model_dump(mode="json")
    record = MODELS["store_scan"].model_validate({**data, "paid_amount": written})
    avro = record.to_avro()
    assert avro["paid_amount"] == Decimal(written) and avro["paid_amount"].as_tuple().exponent == -2
    assert decode(encode("store_scan", record.to_avro()))[1]["paid_amount"] == Decimal(written)
