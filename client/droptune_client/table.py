"""Plain aligned tables for the terminal, and trials flattened into rows."""

from __future__ import annotations

from typing import Any

EMPTY = "-"


def cell(value: Any) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows as text columns under a header; numbers right-aligned, text left-aligned. Columns are
    `columns`, else every key in the order first seen."""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    right = [any(is_number(row.get(c)) for row in rows) for c in columns]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns)] + [line(r) for r in cells])


def trial_rows(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials as flat rows: a column per hyperparameter and per metric at the best epoch."""
    rows = []
    for trial in trials:
        row: dict[str, Any] = {"number": trial["number"], "status": trial["status"]}
        row.update(trial.get("hyperparameters") or {})
        row["score"] = trial.get("score")
        row["best_epoch"] = trial.get("best_epoch")
        row.update(trial.get("metrics") or {})
        row["duration_s"] = trial.get("duration_s")
        row["started_at"] = trial.get("started_at")
        row["error"] = trial.get("error")
        rows.append(row)
    return rows
