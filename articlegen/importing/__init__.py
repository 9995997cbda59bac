"""Prompts in: a client's CSV becomes validated `PromptSpec`s, then stored prompts.

- `specs`: `PromptSpec`, one validated prompt, whatever its source;
- `prompts_csv`: reading and validating a prompts CSV, and importing it all or nothing;
- `events`: the `articlegen.prompts.imported` event an import that wrote prompts announces.
"""

from articlegen.importing.events import (
    PROMPTS_IMPORTED,
    ImportEvent,
    database_identity,
    import_event,
    resource_id,
)
from articlegen.importing.prompts_csv import (
    KNOWN_COLUMNS,
    ImportReport,
    ParsedCsv,
    RejectedRow,
    import_prompts_csv,
    read_prompts_csv,
)
from articlegen.importing.specs import BASE_COLUMNS, EXTRA_PREFIX, PromptSpec

__all__ = [
    "BASE_COLUMNS",
    "EXTRA_PREFIX",
    "KNOWN_COLUMNS",
    "PROMPTS_IMPORTED",
    "ImportEvent",
    "ImportReport",
    "ParsedCsv",
    "PromptSpec",
    "RejectedRow",
    "database_identity",
    "import_event",
    "import_prompts_csv",
    "read_prompts_csv",
    "resource_id",
]
