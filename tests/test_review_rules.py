"""The review commands' rules, through the CLI: a rejection needs a reason, an approval without a
note keeps the article's note, and an id repeated in one command counts once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from articlegen.db import Database
from articlegen.db.models import Article, ArticleReviewStatus, ReviewEvent

from .conftest import CliHarness
from .webapp import seed

NO_REASON = "Error: a rejection needs a reason: say what is wrong, for the record\n"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url)
    yield database
    database.close()


def _state(db: Database, article_id: int) -> tuple[ArticleReviewStatus, str | None, int]:
    """The article's status and note, and how many review events it has."""
    with db.session(write=False) as session:
        article = session.get_one(Article, article_id)
        events = session.scalars(select(ReviewEvent).where(ReviewEvent.article_id == article_id))
        return article.review_status, article.reviewer_note, len(list(events))


@pytest.mark.parametrize("reason", ["", " ", "\t\n  ", "\u202e", " \x1b\u2066 "])
def test_reject_needs_a_reason_that_is_not_blank(
    reason: str, run_cli: CliHarness, db: Database
) -> None:
    (article_id,) = seed(db, 1)
    result = run_cli("review", "reject", str(article_id), "--reason", reason)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", NO_REASON)
    assert _state(db, article_id) == (ArticleReviewStatus.PENDING_REVIEW, None, 0)


def test_reject_without_the_reason_option_is_a_usage_error(
    run_cli: CliHarness, db: Database
) -> None:
    (article_id,) = seed(db, 1)
    result = run_cli("review", "reject", str(article_id))
    assert result.exit_code == 2
    assert result.stderr.endswith("Error: Missing option '--reason'.\n")
    assert _state(db, article_id) == (ArticleReviewStatus.PENDING_REVIEW, None, 0)


def test_a_reason_is_kept_trimmed(run_cli: CliHarness, db: Database) -> None:
    (article_id,) = seed(db, 1)
    result = run_cli("review", "reject", str(article_id), "--reason", "  off topic \n")
    assert (result.exit_code, result.stdout) == (0, f"Rejected: {article_id}.\n")
    assert _state(db, article_id) == (ArticleReviewStatus.REJECTED, "off topic", 1)


def test_approve_keeps_the_note_unless_note_is_given(run_cli: CliHarness, db: Database) -> None:
    (article_id,) = seed(db, 1)
    assert run_cli("review", "reject", str(article_id), "--reason", "too long").exit_code == 0
    kept = run_cli("review", "approve", str(article_id))
    assert (kept.exit_code, kept.stdout) == (0, f"Approved: {article_id}.\n")
    assert _state(db, article_id) == (ArticleReviewStatus.APPROVED, "too long", 2)
    replaced = run_cli("review", "approve", str(article_id), "--note", "shortened")
    assert replaced.exit_code == 0
    assert _state(db, article_id) == (ArticleReviewStatus.APPROVED, "shortened", 3)
    blank = run_cli("review", "approve", str(article_id), "--note", "  ")
    assert blank.exit_code == 0  # a blank note is no note: the one there stays
    assert _state(db, article_id) == (ArticleReviewStatus.APPROVED, "shortened", 4)


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_an_id_repeated_in_one_command_counts_once(
    verb: str, run_cli: CliHarness, db: Database
) -> None:
    first, second = seed(db, 2)
    ids = [str(first)] * 3 + [str(second), str(first)]
    result = run_cli("review", verb, *ids, "--reason" if verb == "reject" else "--note", "why")
    done = "Approved" if verb == "approve" else "Rejected"
    assert (result.exit_code, result.stdout) == (0, f"{done}: {first}, {second}.\n")
    status = ArticleReviewStatus.APPROVED if verb == "approve" else ArticleReviewStatus.REJECTED
    assert _state(db, first) == (status, "why", 1)
    assert _state(db, second) == (status, "why", 1)
