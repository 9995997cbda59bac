"""Secrets out of what we print: database URLs, and any URL inside a message.

A URL can carry a password in two places, its user part (`user:password@`) and its query
(`?password=...`, `sslpassword`, a token). Everything a command prints, logs or sends to Prefect
passes through here first.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["redact_urls", "safe_database_url"]

_SECRET_WORDS = ("password", "secret", "token", "key")
_HIDDEN = "***"
# A URL's user part: a user alone, or a user, a colon and a password that runs to the token's
# last @, as SQLAlchemy reads a password (which may hold / or ?) and as a password with an
# unencoded @ (`user:p@ss@host`) would need. It may hide more than the password (a query
# holding an @): never less.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s/@:]*:\S*|[^\s/@:]+)@")
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&][^=&\s]*(?:" + "|".join(_SECRET_WORDS) + r")[^=&\s]*=)[^&\s#]*", re.I
)


def safe_database_url(url: str) -> str:
    """A database URL fit for messages: its password and secret query values as ***."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return "<unparseable database URL>"
    if parsed.host is not None and "@" in parsed.host:
        # `user:p@ss@host`: SQLAlchemy ends the password at the first @ and takes the rest of
        # it for the host; the host is what follows the last one.
        parsed = parsed.set(host=parsed.host.rpartition("@")[2], password="***")
    hidden = {k: _HIDDEN for k in parsed.query if any(w in k.lower() for w in _SECRET_WORDS)}
    text = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return text.replace(quote(_HIDDEN), _HIDDEN)  # the query's *** as written, not %2A%2A%2A


def redact_urls(text: str) -> str:
    """`text` with the user part of every URL in it and its secret query values as ***."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _QUERY_SECRET.sub(r"\g<name>***", text)
