"""Device profiles: what points a kind of device has and how to read them.

A profile is YAML in ``config/profiles/``. The Modbus driver plans its reads
from it, the MQTT driver maps topics and JSON fields with it, the BACnet driver
reads its objects and the SNMP driver its OIDs, and the simulators serve the
very same map, so a profile is tested from both ends.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from monitord.core.schema import Strict, in_range
from monitord.core.units import Duration
from monitord.ingest.registers import ByteOrder, DataType, PointEncoding, RegisterKind, StringOrder

# The BACnet object types a profile may name (ASHRAE 135 clause 12): inputs, outputs and values.
BACNET_OBJECT = r"^(analog|binary|multi-state)-(input|output|value):\d{1,7}$"
BACNET_MAX_INSTANCE = 4194303  # 22 bits; 4194303 itself means "unconfigured" but is still valid
AssetType = Literal[
    "elevator", "pump", "ahu", "chiller", "power_meter", "sensor", "gateway", "drive", "water_meter", "ups"
]
ASSET_TYPES: tuple[str, ...] = AssetType.__args__  # type: ignore[attr-defined]
FIELD_PATH = r"^[^.\[\]]+(\[\d+\])*(\.[^.\[\]]+(\[\d+\])*)*$"  # names between dots, [n] indexes


class PointSpec(Strict):
    unit: str = ""
    description: str = ""
    kind: RegisterKind | None = None
    address: Annotated[int, in_range(0, 65535)] | None = None
    type: DataType | None = None
    order: ByteOrder | None = None
    scale: float = 1.0
    offset: float = 0.0
    bit: Annotated[int, in_range(0, 15)] = 0
    min: float | None = None
    max: float | None = None
    field: str | None = Field(
        None,
        pattern=FIELD_PATH,
        description="JSON field path of the point in an MQTT payload: names between dots, [n] indexes",
    )
    states: dict[int, str] | None = Field(None, description="names of coded values, for people")
    object: str | None = Field(
        None,
        pattern=BACNET_OBJECT,
        description="BACnet object the point is read from, as type:instance (analog-input:1)",
    )
    property: Literal["present-value", "status-flags"] = Field(
        "present-value", description="BACnet property; status-flags reads as in_alarm 1 + fault 2 + ..."
    )
    oid: str | None = Field(None, pattern=r"^\d+(\.\d+)+$", description="SNMP object instance, dotted")

    @model_validator(mode="after")
    def _scale_not_zero(self) -> PointSpec:
        if self.scale == 0:
            raise PydanticCustomError("scale", "scale must not be 0")
        return self

    @field_validator("object")
    @classmethod
    def _instance_fits(cls, value: str | None) -> str | None:
        if value is not None and int(value.split(":")[1]) > BACNET_MAX_INSTANCE:
            text = "instance must be 0..{top}, got {got}"
            raise PydanticCustomError("range", text, {"top": BACNET_MAX_INSTANCE, "got": repr(value)})
        return value


class BacnetSettings(Strict):
    cov: bool = Field(True, description="subscribe to change-of-value where the device accepts it")
    cov_lifetime: Annotated[int, in_range(10, 86400)] = Field(
        300, description="seconds a COV subscription lasts before it is renewed"
    )


class SnmpSettings(Strict):
    version: Literal["2c"] = "2c"


class InfoSpec(Strict):
    """A device fact held as an ASCII string in registers (serial number, model, firmware).

    Read when the device first answers and again after each outage, logged and exposed as
    ``monitord_device_info``; never a sample, so no rule can read it (samples are floats)."""

    kind: Literal["holding", "input"] = "holding"
    address: Annotated[int, in_range(0, 65535)]
    registers: Annotated[int, in_range(1, 125)] = Field(description="two characters per register")
    order: StringOrder = Field("ABCD", description="ABCD: first character in the high byte; BADC: swapped")
    description: str = ""


class ModbusDefaults(Strict):
    kind: RegisterKind = "holding"
    type: DataType = "uint16"
    order: ByteOrder = "ABCD"


class ModbusSettings(Strict):
    max_registers: Annotated[int, in_range(1, 125)] = 125
    max_bits: Annotated[int, in_range(1, 2000)] = 2000
    max_gap: Annotated[int, in_range(0, 124)] = 8
    even_count: bool = False
    pause: Duration = 0.0
    defaults: ModbusDefaults = ModbusDefaults()


#: How an MQTT device reports: every field in every message, or only what changed (ThingsBoard's
#: gateway "reportStrategy: ON_CHANGE", many IoT boxes): docs/devices.md#what-a-message-leaves-out
Publishes = Literal["whole", "changes"]


class MqttSettings(Strict):
    topic: str = Field(
        description="pattern with {site}, {asset} (the device's name on the wire: a topic level) and, "
        "for plain payloads, {point}; + and # are MQTT wildcards"
    )
    status_topic: str | None = Field(
        None,
        description="pattern ({site}, {asset}) of a topic whose payload says online/offline (a last will, "
        "Homie $state ready/lost/disconnected)",
    )
    format: Literal["json", "plain"] = "json"
    ts_field: str | None = Field(None, pattern=FIELD_PATH)
    seq_field: str | None = Field(
        None,
        pattern=FIELD_PATH,
        description="JSON field path of a message sequence number; skipped numbers are counted",
    )

    publishes: Publishes = Field(
        "whole",
        description="whole: every message carries every mapped field; changes: a message carries what "
        "changed (a device reporting on change), and a value holds while the device is online",
    )

    @model_validator(mode="after")
    def _seq_needs_json(self) -> MqttSettings:
        if self.seq_field and self.format != "json":
            raise PydanticCustomError("seq_field", "seq_field needs format: json")
        return self


class DeviceProfile(Strict):
    profile: str
    asset_type: AssetType
    source: str = ""
    description: str = ""
    modbus: ModbusSettings | None = None
    mqtt: MqttSettings | None = None
    bacnet: BacnetSettings | None = None
    snmp: SnmpSettings | None = None
    points: dict[str, PointSpec]
    info: dict[str, InfoSpec] = Field({}, description="ASCII device facts in registers, read when it appears")
    params: dict[str, float] = {}

    @model_validator(mode="after")
    def _info_is_not_a_point(self) -> DeviceProfile:
        if both := sorted(set(self.info) & set(self.points)):
            raise PydanticCustomError(
                "connection", "{names}: both a point and an info string", {"names": ", ".join(both)}
            )
        return self

    def modbus_encodings(self) -> list[PointEncoding]:
        """Every point that has a register address, with defaults applied."""
        d = (self.modbus or ModbusSettings()).defaults
        return [
            PointEncoding(
                name=name,
                kind=p.kind or d.kind,
                address=p.address,
                dtype=p.type or d.type,
                order=p.order or d.order,
                scale=p.scale,
                offset=p.offset,
                bit=p.bit,
            )
            for name, p in self.points.items()
            if p.address is not None
        ]

    def bacnet_points(self) -> dict[str, tuple[str, str]]:
        """Point name → (BACnet object, property) for every point read over BACnet."""
        return {n: (p.object, p.property) for n, p in self.points.items() if p.object is not None}

    def snmp_points(self) -> dict[str, str]:
        """Point name → OID for every point read over SNMP."""
        return {n: p.oid for n, p in self.points.items() if p.oid is not None}

    def json_fields(self) -> dict[str, str]:
        """Point name → JSON field path for MQTT JSON payloads."""
        return {name: p.field or name for name, p in self.points.items() if p.field or self.mqtt}
