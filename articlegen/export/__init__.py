"""Articles out: rows as plain records (`records`), and files to hand over (`files`: CSV,
JSON Lines, Markdown or HTML folders)."""

from articlegen.export.files import EXPORT_FORMATS, Exported, export_articles, neutralise_formula
from articlegen.export.records import (
    ARTICLE_COLUMNS,
    JOB_COLUMNS,
    RANDOM_WEIGHTS_NOTE,
    article_columns,
    article_record,
    event_record,
    job_record,
    kind_note,
    prompt_record,
)

__all__ = [
    "ARTICLE_COLUMNS",
    "EXPORT_FORMATS",
    "JOB_COLUMNS",
    "RANDOM_WEIGHTS_NOTE",
    "Exported",
    "article_columns",
    "article_record",
    "event_record",
    "export_articles",
    "job_record",
    "kind_note",
    "neutralise_formula",
    "prompt_record",
]
