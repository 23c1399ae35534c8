"""Identify results as one table per layer of each service, and as CSV a spreadsheet opens safely."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .mapserver import IdentifyResult

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AttributeTable:
    map_name: str
    layer_name: str
    rows: pd.DataFrame


def attribute_tables(found: Sequence[tuple[str, str, IdentifyResult]]) -> list[AttributeTable]:
    """(service key, map name, result) in answer order -> a table per sublayer of each service.

    Grouped by service and layer id, not by names: two services (or two sublayers) may share one.
    """
    groups: dict[tuple[str, int], list[IdentifyResult]] = {}
    names: dict[tuple[str, int], tuple[str, str]] = {}
    for service_key, map_name, result in found:
        key = (service_key, result.layer_id)
        groups.setdefault(key, []).append(result)
        names.setdefault(key, (map_name, result.layer_name))
    return [AttributeTable(*names[key], pd.DataFrame([r.attributes for r in rows])) for key, rows in groups.items()]


def csv_text(table: pd.DataFrame) -> str:
    """The table as CSV, with text a spreadsheet would run as a formula kept as text (a leading '), headers too."""
    safe = table.map(_as_text_if_formula).rename(columns=_as_text_if_formula)
    return safe.to_csv(index=False)


def _as_text_if_formula(cell: object) -> object:
    return f"'{cell}" if isinstance(cell, str) and cell.startswith(_FORMULA_START) else cell
