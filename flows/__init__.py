"""Prefect flows: orchestration only. Each flow calls into `generator` and `db`.

The import and generation flows arrive with the Prefect issue; the CLI already covers imports.
"""

__all__: list[str] = []
