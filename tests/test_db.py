"""The database layer on SQLite files and PostgreSQL alike: schema, constraints, types, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from articlegen.core.errors import DatabaseError
from articlegen.db import Article, Base, Database, Job, JobStatus, Prompt, PromptStatus
from articlegen.db.migrate import current_revision, head_revision
from articlegen.db.models import ModelKind, RegisteredModel
from articlegen.db.search import ignore_search_objects


def _prompt(**values: object) -> Prompt:
    return Prompt(content_key="k" * 64, topic="Night trains", **values)


def test_first_use_creates_the_schema_at_head(database_url: str) -> None:
    db = Database.open(database_url)
    try:
        assert current_revision(db.engine) == head_revision()
        tables = set(inspect(db.engine).get_table_names())
        assert {"prompts", "jobs", "articles", "alembic_version"} <= tables
    finally:
        db.close()


def test_migrations_match_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        # As `make migration` compares: without the full-text search's own objects.
        context = MigrationContext.configure(
            connection, opts={"include_name": ignore_search_objects}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_reopening_is_a_no_op(database_url: str) -> None:
    Database.open(database_url).close()
    db = Database.open(database_url)
    try:
        assert current_revision(db.engine) == head_revision()
    finally:
        db.close()


def test_defaults_and_round_trip(database: Database) -> None:
    with database.session() as session:
        prompt = _prompt(tags=["a", "b"], extra={"audience": "everyone"}, decoding={"top_p": 0.9})
        session.add(prompt)
        session.flush()
        prompt_id = prompt.id
    with database.session() as session:
        stored = session.get_one(Prompt, prompt_id)
        assert stored.status is PromptStatus.PENDING
        assert stored.attempts == 0
        assert stored.variants == 1
        assert stored.tags == ["a", "b"]
        assert stored.extra == {"audience": "everyone"}
        assert stored.decoding == {"top_p": 0.9}
        # Timestamps come back timezone-aware in UTC on every backend.
        assert stored.created_at.tzinfo is not None
        assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_article_unique_key_forbids_a_second_write(database: Database) -> None:
    with database.session() as session:
        prompt = _prompt()
        job = Job(status=JobStatus.RUNNING)
        session.add_all([prompt, job])
        session.flush()
        ids = (prompt.id, job.id)

    def article() -> Article:
        return Article(
            prompt_id=ids[0],
            job_id=ids[1],
            variant=1,
            version=1,
            raw_text="t",
            title="t",
            body="t",
            seed=1,
            model_name="m",
        )

    with database.session() as session:
        session.add(article())
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(article())
    with database.session() as session:
        assert len(session.scalars(select(Article)).all()) == 1


def test_external_id_is_unique(database: Database) -> None:
    with database.session() as session:
        session.add(_prompt(external_id="A-1"))
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(Prompt(external_id="A-1", content_key="x" * 64, topic="Other"))


def test_status_is_constrained_in_the_database(database: Database) -> None:
    with database.session() as session:
        session.add(_prompt())
    # Bypass the ORM's enum: the CHECK constraint itself must refuse an unknown status.
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        connection.execute(text("UPDATE prompts SET status = 'exploded'"))


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(Article(prompt_id=999, raw_text="", title="", body="", seed=0, model_name="m"))


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    db = Database.open(sqlite_url)
    try:
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.close()


def test_in_memory_sqlite_keeps_its_schema_across_sessions() -> None:
    db = Database.open("sqlite://")
    try:
        with db.session() as session:
            session.add(_prompt())
        with db.session() as session:
            assert len(session.scalars(select(Prompt)).all()) == 1
    finally:
        db.close()


def test_a_failed_transaction_writes_nothing(database: Database) -> None:
    def crash_after_flush() -> None:
        with database.session() as session:
            session.add(_prompt())
            session.flush()
            raise RuntimeError("crash mid-transaction")

    with pytest.raises(RuntimeError):
        crash_after_flush()
    with database.session() as session:
        assert session.scalars(select(Prompt)).all() == []


def test_unreachable_server_names_it_and_hides_the_password() -> None:
    url = "postgresql://writer:s3cret-pw@127.0.0.1:1/articles"
    with pytest.raises(DatabaseError) as caught:
        Database.open(url)
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "postgresql+psycopg://writer:***@127.0.0.1:1/articles" in message
    assert "Check that the server is running and ARTICLEGEN_DATABASE_URL is right" in message


def test_not_a_url() -> None:
    with pytest.raises(DatabaseError, match="is not a database URL"):
        Database.open("articles.db")


def test_sqlite_file_in_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError) as caught:
        Database.open(f"sqlite:///{tmp_path / 'missing' / 'a.db'}")
    assert str(caught.value) == (
        f"cannot connect to database sqlite:///{tmp_path / 'missing' / 'a.db'}: unable to open "
        "database file. Check that its directory exists and is writable"
    )


def test_upgrade_from_0001_keeps_prompts_and_articles(database_url: str) -> None:
    from sqlalchemy import create_engine

    from articlegen.db.migrate import upgrade

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO prompts (content_key, topic, decoding, tags, priority, variants, "
                "extra, status, attempts, created_at, updated_at) VALUES ('k', 'Old topic', '{}', "
                "'[]', 0, 1, '{}', 'done', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        prompt_id = connection.execute(text("SELECT id FROM prompts")).scalar_one()
        # Models as articles named them before the registry: one at two revisions, and two
        # names longer than a registry name that agree in their first 100 characters.
        long_a, long_b = "x" * 120 + "a", "x" * 120 + "b"
        written = [("m", None), ("m", "sha256:0123456789abcdef"), (long_a, None), (long_b, None)]
        for variant, (model, revision) in enumerate(written, start=1):
            connection.execute(
                text(
                    "INSERT INTO articles (prompt_id, variant, version, raw_text, title, body, "
                    "rendered, seed, decoding, model_name, model_revision, prompt_tokens, "
                    "tokens_generated, generation_seconds, timings, metrics, review_status, "
                    "created_at) VALUES (:p, :v, 1, 'raw', 'Kept', 'body', '{}', 1, '{}', :m, "
                    ":r, 1, 1, 0.1, '{}', '{}', 'approved', CURRENT_TIMESTAMP)"
                ),
                {"p": prompt_id, "v": variant, "m": model, "r": revision},
            )
    engine.dispose()
    db = Database.open(database_url)  # migrates to head
    with db.session(write=False) as session:
        (prompt,) = session.scalars(select(Prompt)).all()
        assert (prompt.topic, prompt.regenerate) == ("Old topic", [])
        articles = session.scalars(select(Article).order_by(Article.variant)).all()
        assert {(a.title, a.prompt_id) for a in articles} == {("Kept", prompt.id)}
        # The registry (0005) gave each model and revision that wrote articles a row, named
        # as `ensure_model` names them, and each article its link.
        rows = {m.id: m for m in session.scalars(select(RegisteredModel))}
        linked = [
            (rows[a.model_id].name, rows[a.model_id].kind, rows[a.model_id].source)
            for a in articles
            if a.model_id is not None
        ]
        assert linked == [
            ("m", ModelKind.HUB, "m"),
            ("m@0123456789ab", ModelKind.LOCAL, "m"),
            ("x" * 100, ModelKind.HUB, "x" * 120 + "a"),
            ("x" * 92 + "@unknown", ModelKind.HUB, "x" * 120 + "b"),
        ]
        # And 0006 gave each article its model's kind, in a column of its own.
        assert [a.model_kind for a in articles] == [
            ModelKind.HUB,
            ModelKind.LOCAL,
            ModelKind.HUB,
            ModelKind.HUB,
        ]
    assert current_revision(db.engine) == head_revision()
    db.close()


def test_upgrade_from_0005_copies_each_article_its_models_kind(database_url: str) -> None:
    from sqlalchemy import create_engine

    from articlegen.db.migrate import upgrade

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    upgrade(engine, "0005")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO prompts (content_key, topic, decoding, tags, priority, variants, "
                "extra, status, attempts, created_at, updated_at) VALUES ('k', 'Old topic', '{}', "
                "'[]', 0, 2, '{}', 'done', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        prompt_id = connection.execute(text("SELECT id FROM prompts")).scalar_one()
        connection.execute(
            text(
                "INSERT INTO models (name, kind, source, corpus, hyperparameters, epochs, "
                "memorisation, progress, status, created_at) VALUES ('reports-v1', "
                "'from_scratch', '/m', '{}', '{}', '[]', '{}', '{}', 'ready', CURRENT_TIMESTAMP)"
            )
        )
        model_id = connection.execute(text("SELECT id FROM models")).scalar_one()
        # One article of the trained model, one whose model was removed (its link cleared).
        for variant, linked in ((1, model_id), (2, None)):
            connection.execute(
                text(
                    "INSERT INTO articles (prompt_id, model_id, variant, version, raw_text, "
                    "title, body, rendered, seed, decoding, model_name, prompt_tokens, "
                    "tokens_generated, generation_seconds, timings, metrics, review_status, "
                    "created_at) VALUES (:p, :m, :v, 1, 'raw', 'Kept', 'body', '{}', 1, '{}', "
                    "'reports-v1', 1, 1, 0.1, '{}', '{}', 'approved', CURRENT_TIMESTAMP)"
                ),
                {"p": prompt_id, "m": linked, "v": variant},
            )
    engine.dispose()
    db = Database.open(database_url)  # migrates to head
    try:
        with db.session(write=False) as session:
            kinds = session.execute(
                select(Article.variant, Article.model_kind).order_by(Article.variant)
            ).all()
        assert kinds == [(1, ModelKind.FROM_SCRATCH), (2, None)]
        # The registry's check knows the new kind now, and still refuses an unknown one.
        with db.engine.begin() as connection:
            connection.execute(text("UPDATE models SET kind = 'random'"))
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(text("UPDATE models SET kind = 'imagined'"))
    finally:
        db.close()


def test_0007_adds_prompt_formats_in_place_and_goes_back(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    from articlegen.db.migrate import _config, upgrade

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    upgrade(engine, "0006")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO prompts (content_key, topic, decoding, tags, priority, variants, "
                "extra, regenerate, status, attempts, created_at, updated_at) VALUES ('k', "
                "'Old topic', '{}', '[]', 0, 1, '{}', '[]', 'pending', 0, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )

    def objects() -> set[str]:
        # SQLite's search triggers and view: a table copy would drop them silently.
        if engine.dialect.name != "sqlite":
            return set()
        with engine.connect() as connection:
            query = "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'view')"
            return set(connection.exec_driver_sql(query).scalars())

    def columns(table: str) -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns(table)}

    search = objects()
    upgrade(engine, "0007")
    # The prompt keeps everything, and takes its preset's, then the settings' framing.
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT topic, prompt_format, system FROM prompts"))
        assert stored.all() == [("Old topic", None, None)]
    assert {"prompt_format", "system"} <= columns("prompts")
    assert "prompt_format" in columns("articles")
    assert objects() == search
    with engine.begin() as connection:
        command.downgrade(_config(connection), "0006")
    assert not {"prompt_format", "system"} & columns("prompts")
    assert "prompt_format" not in columns("articles")
    assert objects() == search
    with engine.connect() as connection:
        assert connection.execute(text("SELECT topic FROM prompts")).scalars().all() == [
            "Old topic"
        ]
    engine.dispose()
