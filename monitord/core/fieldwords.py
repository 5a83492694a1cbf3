"""pydantic's validation errors in the reader's words: a message of ours per error ``type``.

Core layer: the API's 422 (``daemon/web``) and the duty desk's forms (``daemon/frontdesk``) say a
bad field with it. A message is chosen by pydantic's error ``type`` and filled with the error's
``ctx`` (the limit, the choices). The English msgids are pydantic's own wording where it suits a
JSON client, so English answers read as they always did; the exceptions are ``model_type``
(pydantic names a Python class the client cannot send) and our ``duration`` (see ``MESSAGES``).
How the catalogs are kept: docs/i18n.md.
"""

from __future__ import annotations

import gettext
from collections.abc import Callable, Mapping
from typing import Any

from monitord.core.i18n import N_, translations

#: An error type's message in one language: a template for ``str.format`` with the error's ctx.
Words = Callable[[gettext.NullTranslations, Mapping[str, Any]], str]


def _plain(msgid: str) -> Words:
    return lambda t, ctx: t.gettext(msgid)


_ONE_OF = _plain(N_("Input should be {expected}"))  # literal_error and enum: pydantic says both alike

#: pydantic's error type → our message. Types that occur in the API's bodies, paths and queries
#: (models.py, the console's forms), and the common ones a new field would bring. The counted ones
#: are plurals in English, like pydantic's ("at most 1 character").
MESSAGES: dict[str, Words] = {
    "missing": _plain(N_("Field required")),
    "extra_forbidden": _plain(N_("Extra inputs are not permitted")),
    "string_type": _plain(N_("Input should be a valid string")),
    "string_too_short": lambda t, ctx: t.ngettext(
        "String should have at least {min_length} character",
        "String should have at least {min_length} characters",
        int(ctx["min_length"]),
    ),
    "string_too_long": lambda t, ctx: t.ngettext(
        "String should have at most {max_length} character",
        "String should have at most {max_length} characters",
        int(ctx["max_length"]),
    ),
    "string_pattern_mismatch": _plain(N_("String should match pattern '{pattern}'")),
    "int_type": _plain(N_("Input should be a valid integer")),
    "int_parsing": _plain(N_("Input should be a valid integer, unable to parse string as an integer")),
    "int_from_float": _plain(N_("Input should be a valid integer, got a number with a fractional part")),
    "float_type": _plain(N_("Input should be a valid number")),
    "float_parsing": _plain(N_("Input should be a valid number, unable to parse string as a number")),
    "bool_type": _plain(N_("Input should be a valid boolean")),
    "bool_parsing": _plain(N_("Input should be a valid boolean, unable to interpret input")),
    "greater_than": _plain(N_("Input should be greater than {gt}")),
    "greater_than_equal": _plain(N_("Input should be greater than or equal to {ge}")),
    "less_than": _plain(N_("Input should be less than {lt}")),
    "less_than_equal": _plain(N_("Input should be less than or equal to {le}")),
    "literal_error": _ONE_OF,
    "enum": _ONE_OF,
    # The text a validator of ours raised stays as written (English): see docs/i18n.md.
    "value_error": _plain(N_("Value error, {error}")),
    "too_short": lambda t, ctx: t.ngettext(
        "{field_type} should have at least {min_length} item after validation, not {actual_length}",
        "{field_type} should have at least {min_length} items after validation, not {actual_length}",
        int(ctx["min_length"]),
    ),
    "too_long": lambda t, ctx: t.ngettext(
        "{field_type} should have at most {max_length} item after validation, not {actual_length}",
        "{field_type} should have at most {max_length} items after validation, not {actual_length}",
        int(ctx["max_length"]),
    ),
    "list_type": _plain(N_("Input should be a valid list")),
    "dict_type": _plain(N_("Input should be a valid dictionary")),
    # pydantic's "valid dictionary or instance of Matcher" names a Python class; a JSON client
    # sends an object.
    "model_type": _plain(N_("Input should be an object")),
    "model_attributes_type": _plain(N_("Input should be an object")),
    # Our own type (core/units.py: expires_in): its ctx is an English sentence, so the message is
    # made here from the input instead; for a text (the usual mistake) it reads as units.py's.
    "duration": _plain(N_("must be a duration like 500ms, 5s, 2m, 1h, got {input}")),
}

#: The kinds of collection too_long/too_short name ("List should have..."): pydantic's words, which
#: ``said`` translates.
FIELD_TYPES = (N_("List"), N_("Tuple"), N_("Set"), N_("Frozenset"), N_("Dictionary"))


def _choices(t: gettext.NullTranslations, expected: str) -> str:
    """pydantic's choices ``'a', 'b' or 'c'`` with the conjunction in the reader's language.

    pydantic gives the choices as one English text, not a list; its last `` or `` is the only
    English in it (our literals are codes, which hold no `` or ``)."""
    head, sep, last = expected.rpartition(" or ")
    return t.gettext("{choices} or {last}").format(choices=head, last=last) if sep else expected


def _shown(value: Any) -> str:
    """A ctx value as pydantic writes it: a whole float without its ``.0`` (``lt=1`` on a float is ``1``)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def said(error: Mapping[str, Any], locale: str) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) in ``locale``'s words, without its field.

    An error type we have no message for — or whose ctx lacks a value our message names (another
    pydantic version, a set's uncounted length) — is said in pydantic's own English: a reason in
    English beats none, and a message must never turn a 422 into a 500. Unless its text is a msgid
    of ours (a validator's ``PydanticCustomError``, ``must not be blank``): then in the reader's.
    """
    words = MESSAGES.get(str(error.get("type")))
    ctx = error.get("ctx") or {}
    t = translations(locale)
    if words is None or any(v is None for v in ctx.values()):
        return t.gettext(str(error.get("msg", "")))
    values = {k: _shown(v) for k, v in ctx.items()} | {"input": repr(error.get("input"))}
    if "expected" in values:
        values["expected"] = _choices(t, values["expected"])
    if values.get("field_type") in FIELD_TYPES:
        values["field_type"] = t.gettext(values["field_type"])
    try:
        return words(t, ctx).format(**values)
    except (KeyError, ValueError, IndexError):
        return str(error.get("msg", ""))
