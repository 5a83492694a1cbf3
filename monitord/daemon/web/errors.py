"""The API's words for a request it cannot take (400, 404), in the request's language; a 422's
fields are said by ``core.fieldwords``. How the catalogs are kept: docs/i18n.md.
"""

from __future__ import annotations

from monitord.core.i18n import N_

#: 400: a body that is not a JSON object (a list, a string, broken JSON, bad UTF-8, nested too deep).
NOT_AN_OBJECT = N_("body must be a JSON object")
#: 404: no route at that path.
NOT_FOUND = N_("not found")
