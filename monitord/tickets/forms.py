"""What a dispatcher types in at the duty desk, checked before it becomes a ticket event.

Part of the ticket stage, below ``desk``: a resident's repair request (报修), a follow-up call
(回访) and a complaint (投诉) and its close, as strict values the API and the CLI share, plus the
masking of residents' phone numbers for every log line. Nothing here changes a ticket.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from monitord.core.i18n import N_
from monitord.core.schema import Strict, in_range

#: A follow-up at or below this satisfaction is flagged for the dispatcher.
LOW_SATISFACTION = 2
#: What people read, in one place, marked for the message catalogs: the console shows them translated.
TEXT = {
    "blank": N_("must not be blank"),
    "phone": N_(
        "not a phone number: an 11-digit mobile (13812345678) or area code and number (021-62345678)"
    ),
}
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}(?:-\d{1,6})?$")  # area code, number, extension
_PHONE_IN_TEXT = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def _filled(v: str) -> str:
    v = v.strip()
    if not v:
        raise PydanticCustomError("blank", TEXT["blank"])
    return v


def _phone(v: str) -> str:
    v = re.sub(r"[\s()]", "", v).removeprefix("+86")
    if not (_MOBILE.match(v) or _LANDLINE.match(v)):
        raise PydanticCustomError("phone", TEXT["phone"])
    return v


Filled = Annotated[str, AfterValidator(_filled), Field(max_length=500)]
Text = Annotated[str, Field(max_length=2000)]


def mask_phone(phone: str) -> str:
    """``13812345678`` → ``138****5678``: enough to recognise, not enough to call."""
    digits = phone.replace("-", "")
    if len(digits) <= 4:
        return "*" * len(digits)
    head = digits[:3] if len(digits) >= 11 else ""
    return head + "*" * (len(digits) - len(head) - 4) + digits[-4:]


def redact_phones(data: Any) -> Any:
    """``data`` (JSON-like) with every ``phone`` value masked: what a viewer reads (a technician
    and up sees it whole)."""
    if isinstance(data, dict):
        return {
            k: mask_phone(v) if k == "phone" and isinstance(v, str) and v else redact_phones(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [redact_phones(v) for v in data]
    return data


def mask_phones(text: str) -> str:
    """Any mobile number written into free text (a description, a note), masked for a log line."""
    return _PHONE_IN_TEXT.sub(r"\1****\2", text)


class RepairRequest(Strict):
    """报修: a resident's request, as the dispatcher takes it on the phone."""

    building: Filled
    floor: Filled
    unit: Annotated[str, Field(max_length=100)] = ""
    trade: Filled  # the roster skill that does the work (plumbing, electrical, ...)
    priority: Literal["P1", "P2", "P3", "P4"] = "P3"
    reporter: Filled
    phone: Annotated[str, AfterValidator(_phone)]
    description: Filled
    actor: Annotated[str, Field(max_length=200)] = ""  # the dispatcher (default: the caller's name)
    # An active ticket of the trade in the building may be this very incident: the request is then
    # refused with those tickets, and the dispatcher adds it to one (``to``) or opens anyway (``new``).
    to: Annotated[str, Field(max_length=100)] = ""
    new: bool = False

    @model_validator(mode="after")
    def _to_or_new(self) -> RepairRequest:
        if self.to and self.new:
            raise PydanticCustomError("to_or_new", N_("give to (add to that ticket) or new, not both"))
        return self

    @property
    def location(self) -> str:
        return " / ".join(p for p in (self.building, self.floor, self.unit) if p)


class FollowUpForm(Strict):
    """回访: the call after the fix; it closes the resolved ticket."""

    satisfaction: Annotated[int, in_range(1, 5)]
    contact: Annotated[str, Field(max_length=200)] = ""  # whom you called (default: the reporter)
    note: Text = ""
    actor: Annotated[str, Field(max_length=200)] = ""


class ComplaintForm(Strict):
    """投诉 about a ticket: who complains and about what."""

    complainant: Filled
    text: Filled
    actor: Annotated[str, Field(max_length=200)] = ""


class ComplaintClose(Strict):
    """A complaint closed with its resolution; ``valid: false`` dismisses it (not a 有效投诉)."""

    resolution: Filled
    valid: bool = True
    actor: Annotated[str, Field(max_length=200)] = ""
