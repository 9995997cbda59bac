"""The `import-prompts` flow: the CLI's import, runnable from the UI or on a schedule.

Given a folder (a drop folder), it imports each CSV in it in name order and moves the file to
`imported/` or, when it is rejected, to `rejected/` with the reason beside it, so a scheduled
run never imports a file twice. A file that wrote prompts announces it with the event
`articlegen.prompts.imported`, on which `articlegen serve` starts a generate-articles run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from articlegen.core.errors import ConfigError, InputError
from articlegen.core.settings import Settings, load_settings
from articlegen.importing import import_event, import_prompts_csv
from articlegen.runs import context_for

__all__ = ["import_prompts"]


@task(
    name="import-csv",
    task_run_name="import-{path.name}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[5, 30],
)
def import_csv(
    settings: Settings, path: Path, dry_run: bool, skip_invalid: bool, rejects: Path | None
) -> dict[str, Any]:
    """Import one file, and announce the prompts it wrote. A bad file is reported, not raised,
    so the others go on; a database that is down raises, so the task retries and the file
    stays where it is."""
    try:
        context = context_for(settings)
        report = import_prompts_csv(
            context.database,
            path,
            context.presets,
            dry_run=dry_run,
            skip_invalid=skip_invalid,
            rejects_path=rejects,
        )
    except (InputError, ConfigError) as exc:
        return {"file": path.name, "error": str(exc)}
    event = import_event(context.database, report)
    if event is not None:
        # Prefect adds this flow run and task run as related resources; a failure to send is
        # logged by Prefect and never fails the import, whose prompts are committed.
        emit_event(event=event.event, resource=event.resource, payload=event.payload)
    return {
        "file": path.name, "inserted": report.inserted, "updated": report.updated,
        "unchanged": report.unchanged, "rejected": report.rejected,
    }  # fmt: skip


@flow(name="import-prompts")
def import_prompts(
    path: str, dry_run: bool = False, skip_invalid: bool = False
) -> list[dict[str, Any]]:
    """Import topic prompts from a CSV file, or from every CSV in a drop folder.

    Args:
        path: A CSV file, or a folder whose CSV files are imported and then moved aside.
        dry_run: Validate and count; write nothing and move nothing.
        skip_invalid: Import the valid rows of a file and write its rejects beside it.
    """
    settings = load_settings()
    target = Path(path)
    files = sorted(target.glob("*.csv")) if target.is_dir() else [target]

    # A drop folder keeps its rejects out of the way, or the next run would import them.
    def rejects(file: Path) -> Path | None:
        return target / "rejected" / f"{file.stem}.rejects.csv" if target.is_dir() else None

    if target.is_dir() and skip_invalid and not dry_run:
        (target / "rejected").mkdir(exist_ok=True)
    results = [import_csv(settings, f, dry_run, skip_invalid, rejects(f)) for f in files]
    if target.is_dir() and not dry_run:
        for file, result in zip(files, results, strict=True):
            folder = target / ("rejected" if "error" in result else "imported")
            folder.mkdir(exist_ok=True)
            file.rename(folder / file.name)
            if "error" in result:
                (folder / f"{file.name}.error.txt").write_text(result["error"], encoding="utf-8")
    lines = [f"- {r['file']}: " + (r.get("error") or f"{r['inserted']} inserted, "
             f"{r['updated']} updated, {r['unchanged']} unchanged, {r['rejected']} rejected")
             for r in results]  # fmt: skip
    create_markdown_artifact("# Import\n\n" + ("\n".join(lines) or "No CSV files."))
    return results
