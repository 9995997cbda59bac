"""Reviewing articles: the use cases the CLI and the web workspace share.

- `actions`: approve, reject, edit then approve, regenerate; one article or many, each with its
  row in the audit trail and an optimistic check on the version the reviewer saw;
- `diff`: word-level differences, side by side;
- `accounts`: reviewer accounts, hashed passwords, slowed-down logins.
"""

from articlegen.review.accounts import Login, add_account, session_reviewer, try_login
from articlegen.review.actions import (
    approve,
    edit_and_approve,
    regenerate,
    reject,
    review_ids,
    review_matching,
    unique_ids,
)
from articlegen.review.diff import SideBySide, word_diff

__all__ = [
    "Login",
    "SideBySide",
    "add_account",
    "approve",
    "edit_and_approve",
    "regenerate",
    "reject",
    "review_ids",
    "review_matching",
    "session_reviewer",
    "try_login",
    "unique_ids",
    "word_diff",
]
