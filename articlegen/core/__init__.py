"""The ground floor: what every layer of articlegen shares, importing nothing of articlegen.

- `errors`: the one exception tree;
- `settings`: the `ARTICLEGEN_*` environment, read once at the edge;
- `bounds`: limits that several layers check, each defined once;
- `describe`: validation errors phrased for a user;
- `safe_text`: text on its way out (exports, rendered articles) made safe;
- `files`: the files a user hands us, checked before they are read or written.
"""

from articlegen.core import bounds
from articlegen.core.describe import closest, describe_error, describe_validation_error
from articlegen.core.errors import (
    ArticlegenError,
    ConfigError,
    ConflictError,
    DatabaseError,
    ImportRejected,
    InputError,
    JobStateError,
    ModelError,
    NotFoundError,
    PromptsFailed,
    TemplateError,
)
from articlegen.core.settings import Settings, load_settings

__all__ = [
    "ArticlegenError",
    "ConfigError",
    "ConflictError",
    "DatabaseError",
    "ImportRejected",
    "InputError",
    "JobStateError",
    "ModelError",
    "NotFoundError",
    "PromptsFailed",
    "Settings",
    "TemplateError",
    "bounds",
    "closest",
    "describe_error",
    "describe_validation_error",
    "load_settings",
]
