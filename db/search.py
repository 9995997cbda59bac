"""Full-text search of articles: their title and text (the editor's, once edited) and their
prompt's topic, by words, each word also matching as the start of a longer one.

SQLite answers from two FTS5 tables that triggers keep in step with `articles` and `prompts`;
PostgreSQL from a generated `search_vector` column on each (`to_tsvector('simple', ...)` of the
same columns, stored, so a search matching most articles reads vectors instead of parsing every
text) with a GIN index. Migration 0004 creates both; they are not part of `db.models`, so
autogenerate ignores them (`ignore_search_objects`). Both cut texts into the same words (runs of
letters and digits, any case, accents kept; PostgreSQL needs a UTF-8 locale, its default, to
know non-ASCII letters), and match an article when every word of the search is in its title and
text together, or every word is in its topic.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Integer, column, false, text

from articlegen.db.models import Article

__all__ = ["MAX_SEARCH_WORDS", "ignore_search_objects", "matches", "words"]

MAX_SEARCH_WORDS = 16
# Made by migration 0004 outside the models: SQLite's FTS5 tables (and the tables FTS5 keeps
# for them) and their source view; PostgreSQL's generated columns and their indexes.
_SEARCH_PREFIXES = ("article_search", "prompt_search")
_SEARCH_INDEXES = ("ix_articles_search", "ix_prompts_search")
_SEARCH_COLUMN = "search_vector"


def words(query: str) -> list[str]:
    """The words of a search: runs of letters and digits, lower-cased, at most 16."""
    return [w.lower() for w in re.findall(r"[^\W_]+", query)][:MAX_SEARCH_WORDS]


def matches(dialect: str, query: str) -> ColumnElement[bool]:
    """Whether an article matches the search `query` (no words: nothing matches).

    One `IN` over the union of what each index finds: the database builds that list of ids
    once, then pages and counts along its own indexes (an OR of the two conditions inline
    sends PostgreSQL to compute every row's vector, and SQLite to fetch every matching row).
    """
    found = words(query)
    if not found:
        return false()
    if dialect == "postgresql":
        terms = " & ".join(f"{w}:*" for w in found)
        match = f"{_SEARCH_COLUMN} @@ to_tsquery('simple', :terms)"
        in_text = f"SELECT articles.id FROM articles WHERE articles.{match}"
        in_topic = f"SELECT prompts.id FROM prompts WHERE prompts.{match}"
    else:
        # FTS5: quoted words (letters and digits only, so nothing in them is syntax), each a
        # prefix, all of them required.
        terms = " ".join(f'"{w}"*' for w in found)
        in_text = "SELECT rowid FROM article_search WHERE article_search MATCH :terms"
        in_topic = "SELECT rowid FROM prompt_search WHERE prompt_search MATCH :terms"
    ids = text(
        f"{in_text} UNION SELECT articles.id FROM articles WHERE articles.prompt_id IN ({in_topic})"
    )
    return Article.id.in_(ids.bindparams(terms=terms).columns(column("id", Integer)))


def ignore_search_objects(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name` hook: False for the search's own tables, views and indexes."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(_SEARCH_PREFIXES)
    if type_ == "index":
        return name not in _SEARCH_INDEXES
    if type_ == "column":
        return name != _SEARCH_COLUMN
    return True
