"""Which articlegen migrated the schema to each revision: an older articlegen that meets a
revision it does not know can then say which version wrote it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from articlegen.db.models.base import Base, utcnow

__all__ = ["SchemaWriter"]


class SchemaWriter(Base):
    """One row per schema revision this database was migrated to, by the articlegen that did."""

    __tablename__ = "schema_writers"

    # An Alembic revision id, as `alembic_version` holds it.
    revision: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))  # articlegen's version, e.g. 0.4.0
    migrated_at: Mapped[datetime] = mapped_column(default=utcnow)
