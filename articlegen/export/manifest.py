"""What an export wrote into a folder, so the next export into it replaces it.

A Markdown or HTML export writes one file per article and an index. Exported again into the same
folder, it must not leave the files of articles no longer exported (rejected since, say) beside
the new ones, nor touch a file it did not write. So each export records, in
`.articlegen-export.json` in the folder, the files it wrote per format and a digest of each; the
next export of that format removes those it does not write again, if they are still as written.
A file you put in the folder, or changed since, stays. A manifest articlegen cannot read as its
own is refused, and nothing is written or removed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from articlegen.core.errors import InputError

__all__ = ["MANIFEST_NAME", "Manifest"]

MANIFEST_NAME = ".articlegen-export.json"
_VERSION = 1
# The names an export gives its files: `{id:05d}-{slug}.{fmt}` and `index.{fmt}`. A manifest
# naming anything else (another folder, a dotfile) was not written by us.
_NAME = re.compile(r"(?:\d{5,10}-[a-z0-9-]{1,60}|index)\.(md|html)")


def digest(path: Path) -> str:
    """The SHA-256 of the file at `path`, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Manifest:
    """The files articlegen's exports wrote into one folder: per format, name -> digest."""

    def __init__(self, folder: Path, files: Mapping[str, Mapping[str, str]]) -> None:
        self.folder = folder
        self.files = {fmt: dict(names) for fmt, names in files.items()}

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The folder's manifest (empty if it has none); `InputError` if it holds one that is
        not articlegen's, or is damaged."""
        path = folder / MANIFEST_NAME
        if not path.exists() and not path.is_symlink():
            return cls(folder, {})
        try:
            if path.is_symlink() or not path.is_file():
                raise ValueError("it is not a regular file")
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(folder, _parse(data))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(
                f"{path} is not an export manifest articlegen wrote ({exc}): export into "
                "another folder, or remove the file if nothing in the folder needs keeping "
                "from an earlier export"
            ) from None

    def write(self) -> None:
        """Save the manifest into its folder."""
        data = {"articlegen_export": _VERSION, "files": self.files}
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        (self.folder / MANIFEST_NAME).write_text(text, encoding="utf-8")

    def check_writable(self, fmt: str, names: Sequence[str]) -> None:
        """`InputError` unless an export of `fmt` may write each of `names` into the folder:
        nothing there under that name, or a regular file an earlier export wrote. A link would
        be written through, to wherever it points; a file of someone else's would be lost."""
        ours = {name for written in self.files.values() for name in written}
        for name in names:
            path = self.folder / name
            if path.is_symlink():
                raise InputError(
                    f"{path} is a symbolic link: an export writes files, never through links; "
                    "remove it, or export into another folder"
                )
            if path.exists() and (name not in ours or not path.is_file()):
                raise InputError(
                    f"{path} is in the way: no earlier export into {self.folder} wrote it, and "
                    "an export overwrites only its own files; move it, or export into another "
                    "folder"
                )

    def remove_stale(self, fmt: str, kept: Mapping[str, str]) -> list[Path]:
        """Record `kept` (name -> digest) as what the export of `fmt` wrote, and remove the
        files an earlier one wrote that it did not write again, if they are as written then.
        Returns the files removed."""
        removed = []
        for name, written in self.files.get(fmt, {}).items():
            path = self.folder / name
            if name in kept or path.is_symlink() or not path.is_file():
                continue
            if digest(path) == written:  # changed since: someone's own now, left alone
                path.unlink()
                removed.append(path)
        self.files[fmt] = dict(kept)
        return removed


def _parse(data: object) -> dict[str, dict[str, str]]:
    if not isinstance(data, dict) or data.get("articlegen_export") != _VERSION:
        raise ValueError(f"no `articlegen_export: {_VERSION}` in it")
    files = data.get("files")
    if not isinstance(files, dict):
        raise ValueError("no `files` table in it")
    parsed: dict[str, dict[str, str]] = {}
    for fmt, names in files.items():
        if fmt not in ("md", "html") or not isinstance(names, dict):
            raise ValueError(f"unknown format {fmt!r}")
        for name, written in names.items():
            match = _NAME.fullmatch(name) if isinstance(name, str) else None
            if match is None or match.group(1) != fmt or not isinstance(written, str):
                raise ValueError(f"{name!r} is not a file an export writes")
        parsed[fmt] = dict(names)
    return parsed
