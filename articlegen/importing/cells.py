"""What no cell of an imported file may hold, whatever its column: characters that change how
text displays or behaves elsewhere, refused with the row and field named before anything is
stored.

- Control characters (C0 but tab, line feed and carriage return, which are ordinary whitespace
  in a cell; DEL; C1): invisible in an editor, they reach terminals (an ESC starts an escape
  sequence), templates and exports.
- Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they make
  text display in an order other than the one it is stored in ("Trojan Source"), so a reviewer
  would approve one text and the client receive another.
- A leading `=`: a spreadsheet runs the cell as a formula (=HYPERLINK(...), =cmd|...). No prompt
  starts with `=` on purpose; exports neutralise such cells too, this keeps them out.

Refused, not stripped: a stripped cell would be stored as something the client did not write,
and its content key would no longer match the row they re-import.
"""

from __future__ import annotations

from articlegen.core.safe_text import control_problem

__all__ = ["control_problem", "control_problems", "formula_problems"]


def control_problems(cells: dict[str, str]) -> list[str]:
    """One problem per cell holding a control or bidi character, as "`column`: what is wrong:
    the fix". Cells are given as read (untrimmed: trimming drops some controls)."""
    return [
        f"`{name}`: {problem}"
        for name, raw in cells.items()
        if (problem := control_problem(raw)) is not None
    ]


def formula_problems(values: dict[str, str]) -> list[str]:
    """One problem per (trimmed) cell that starts with `=`."""
    problems: list[str] = []
    for name, value in values.items():
        if value.startswith("="):
            shown = value if len(value) <= 40 else value[:37] + "..."
            problems.append(
                f"`{name}`: starts with `=` ({shown}), which a spreadsheet runs as a formula: "
                "reword the cell so it does not start with `=`"
            )
    return problems
