"""docs/reliability.md stays true to the suite: it lists exactly the reliability cases there are."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.reliability import DOC, REPO_ROOT, SECTIONS, Case, render, summary

REGENERATING = pytest.mark.skipif(
    os.environ.get("SECURE_LAYERS_UPDATE_DOCS") == "1", reason="this run rewrites docs/reliability.md"
)


def collected_cases() -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "reliability", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {line for line in done.stdout.splitlines() if line.startswith("tests/") and "::" in line}


def documented_cases() -> set[str]:
    return set(re.findall(r"\| `(tests/[^`]+)` \|$", DOC.read_text(), flags=re.MULTILINE))


@REGENERATING
def test_the_report_lists_every_reliability_case_and_no_other():
    documented, collected = documented_cases(), collected_cases()
    assert collected, "no test carries the reliability mark"
    assert documented == collected, (
        "docs/reliability.md is out of date; rerun with SECURE_LAYERS_UPDATE_DOCS=1 bash scripts/test.sh\n"
        f"missing: {sorted(collected - documented)}\nno longer a test: {sorted(documented - collected)}"
    )


@REGENERATING
def test_every_case_in_the_report_passed():
    rows = re.findall(r"^\| .* \| (\w[\w ]*) \| `tests/", DOC.read_text(), flags=re.MULTILINE)
    assert rows and set(rows) == {"passed"}


def test_the_summary_counts_from_the_cases():
    cases = [
        Case("Faults", "server down and back", "tests/a.py::t1", "passed"),
        Case("Faults", "stall", "tests/a.py::t2", "failed"),
        Case("Secrets", "two users", "tests/b.py::t3", "passed", figures={"secrets found": 0, "places scanned": 40}),
        Case("Secrets", "debug logs", "tests/b.py::t4", "passed", figures={"secrets found": 1, "places scanned": 9}),
        Case("Load", "soak", "tests/c.py::t5", "passed", figures={"sessions held": 20}),
        Case("Load", "not run", "tests/c.py::t6"),
    ]
    totals = summary(cases)
    assert totals["cases tried"] == 5 and totals["passed"] == 4 and totals["failed"] == 1
    assert totals["faults survived"] == 1
    assert totals["secrets found"] == 1 and totals["places scanned"] == 49
    assert totals["sessions held"] == 20
    text = render(cases)
    assert "| 5 | 4 | 1 | 1 | 20 | 1 | 49 |" in text
    assert text.index("## Secrets") < text.index("## Faults") and "## Bad input" not in text
    assert all(section in SECTIONS for section in ("Faults", "Secrets", "Load"))
