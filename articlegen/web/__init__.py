"""The review workspace: a server-rendered web app where editors read, compare, edit, approve,
reject and regenerate articles (`articlegen web`).

`app` builds it; `security` holds sessions, CSRF and roles; `pages` renders; `login`, `queue`,
`article` and `jobs` are its routes; `static/` its own stylesheet and script.
"""

from articlegen.web.app import create_app

__all__ = ["create_app"]
