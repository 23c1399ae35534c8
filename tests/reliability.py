"""Collects the reliability cases of a test run and writes them up as `docs/reliability.md`.

A test joins the report with `@pytest.mark.reliability("<section>")`. Its case label is the test
name in words (a parametrized test: its id). Through the `reliability` fixture it may say what
the user saw (`saw`) and record figures (`figure`). Figures named in `SUMMED` or `PEAKS` feed
the summary. The report always goes to `test-artifacts/reliability.md`; with
`SECURE_LAYERS_UPDATE_DOCS=1` and every case passed, also to `docs/reliability.md`.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "reliability.md"
ARTIFACT = REPO_ROOT / "test-artifacts" / "reliability.md"

SECTIONS = (
    "Bad input",
    "Parsing",
    "Secrets",
    "Faults",
    "Load",
    "Third-party peer (Koop)",
)
SUMMED = ("secrets found", "places scanned")
PEAKS = ("sessions held",)
FAULT_SECTION = "Faults"


@dataclass
class Case:
    section: str
    label: str
    nodeid: str
    outcome: str = "not run"
    seen: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)


class Recorder:
    """What one reliability test tells the report."""

    def __init__(self, case: Case) -> None:
        self._case = case

    def saw(self, text: str) -> None:
        """What the user was shown (first line kept): it goes into the report as evidence."""
        text = re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")  # as read: no Markdown escapes
        first = text.strip().splitlines()[0] if text.strip() else "(nothing)"
        self._case.seen.append(first)

    def figure(self, name: str, value: object) -> None:
        self._case.figures[name] = value

    def add(self, name: str, amount: int = 1) -> None:
        """Count into a figure, e.g. once per hypothesis example."""
        self._case.figures[name] = int(self._case.figures.get(name, 0)) + amount


CASES: dict[str, Case] = {}


def label_of(item: pytest.Item) -> str:
    """The parametrized case's id, else the test's name in words; the browser's name is left out."""
    callspec = getattr(item, "callspec", None)
    browser = callspec.params.get("browser_name") if callspec is not None else None
    parts = [part for part in callspec.id.split("-") if part != browser] if callspec is not None else []
    return "-".join(parts) or item.originalname.removeprefix("test_").replace("_", " ")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability(section): a case in docs/reliability.md, under that section")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("reliability")
        if marker is not None:
            section = marker.args[0]
            if section not in SECTIONS:
                raise pytest.UsageError(f"{item.nodeid}: unknown reliability section {section!r}")
            CASES[item.nodeid] = Case(section, label_of(item), item.nodeid)


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Recorder:
    case = CASES.get(request.node.nodeid)
    if case is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses the reliability fixture without the reliability mark")
    return Recorder(case)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    case = CASES.get(item.nodeid)
    if case is not None:
        if report.when == "call" or report.failed or report.skipped:
            if case.outcome in ("not run", "passed"):
                case.outcome = "skipped" if report.skipped else "failed" if report.failed else "passed"
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not CASES or not any(c.outcome != "not run" for c in CASES.values()):
        return
    text = render(list(CASES.values()))
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(text)
    complete = all(c.outcome == "passed" for c in CASES.values())
    if os.environ.get("SECURE_LAYERS_UPDATE_DOCS") == "1" and complete:
        DOC.write_text(text)


# rendering


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def summary(cases: list[Case]) -> dict[str, object]:
    ran = [c for c in cases if c.outcome != "not run"]
    totals: dict[str, object] = {
        "cases tried": len(ran),
        "passed": sum(c.outcome == "passed" for c in ran),
        "failed": sum(c.outcome == "failed" for c in ran),
        "faults survived": sum(c.section == FAULT_SECTION and c.outcome == "passed" for c in ran),
    }
    for name in PEAKS:
        totals[name] = max((c.figures[name] for c in ran if name in c.figures), default=0)
    for name in SUMMED:
        totals[name] = sum(c.figures[name] for c in ran if name in c.figures)
    return totals


def render(cases: list[Case]) -> str:
    totals = summary(cases)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability and security report",
        "",
        f"Generated by the test run (`bash scripts/test.sh`) at {when}, commit `{_commit()}`.",
        "Do not edit by hand: `SECURE_LAYERS_UPDATE_DOCS=1 bash scripts/test.sh` rewrites it when every",
        "case passes; every run also writes `test-artifacts/reliability.md`.",
        "All servers are on loopback: the strict ArcGIS Server double (`tests/arcgis_double`) and Koop.",
        "",
        "## Summary",
        "",
        "| " + " | ".join(totals) + " |",
        "|" + "---|" * len(totals),
        "| " + " | ".join(_cell(v) for v in totals.values()) + " |",
    ]
    for section in SECTIONS:
        rows = [c for c in cases if c.section == section]
        if not rows:
            continue
        lines += [
            "",
            f"## {section}",
            "",
            "| case | what the user saw / what was checked | result | test |",
            "|---|---|---|---|",
        ]
        for case in rows:
            seen = "<br>".join(_cell(s) for s in case.seen) or "–"
            lines.append(f"| {_cell(case.label)} | {seen} | {case.outcome} | `{case.nodeid}` |")
        with_figures = [c for c in rows if c.figures]
        if with_figures:
            lines += ["", "Figures:", ""]
            for case in with_figures:
                shown = "; ".join(f"{name} {_cell(value)}" for name, value in case.figures.items())
                lines.append(f"- {_cell(case.label)}: {shown}")
    return "\n".join(lines) + "\n"
