"""The docs cannot drift from the code: the site builds strict, every reference lists exactly what
the code has, and every measured figure names the committed results file it comes from."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml  # PyYAML comes with mkdocs

import cli
from registrator.mapping.checks import SETTINGS, TYPES
from registrator.mapping.services import SERVICE_KEYS
from registrator.metrics import COUNTERS, GAUGES, SUMMARIES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
EXPORTED = set(COUNTERS) | set(GAUGES) | set(SUMMARIES)


def table_keys(page: str, header: str) -> list[str]:
    """The backticked spans of the first column of the table whose header row starts with `header`."""
    lines = (DOCS / page).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        first = re.split(r"(?<!\\)\|", line)[1]
        rows += re.findall(r"`([^`]+)`", first)
    return rows


def test_the_site_builds_strict_with_no_broken_link_no_missing_anchor_and_no_orphan_page(tmp_path):
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr


def test_the_readme_is_short_with_both_set_up_commands_on_its_first_screen():
    assert len(README.splitlines()) <= 200
    first_screen = "\n".join(README.splitlines()[:40])
    assert ".venv/bin/registrator run consul://127.0.0.1:8500" in first_screen and "bash .ci/run" in first_screen


def test_ci_runs_exactly_the_readmes_test_command():
    command = ".venv/bin/python -m pytest"
    assert f"`{command}`" in README
    assert (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == command


def test_every_page_the_readme_links_exists():
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert links and [link for link in links if not (ROOT / link).is_file()] == []


def test_the_flags_reference_lists_exactly_the_flags_run_help_shows():
    run = cli.main.commands["run"]  # type: ignore[attr-defined]
    shown = [p for p in run.params if isinstance(p, click.Option) and not p.hidden]
    documented = {span.split()[0] for span in table_keys("flags.md", "flag")}
    spellings = {opt for option in shown for opt in (*option.opts, *option.secondary_opts)}
    assert documented - spellings == set(), "documented, but no flag of run"
    assert [option.opts for option in shown if not documented & {*option.opts, *option.secondary_opts}] == [], "undocumented"


def test_the_service_keys_reference_lists_exactly_the_keys_the_mapping_reads():
    documented = {key for span in table_keys("service-keys.md", "key") for key in re.findall(r"SERVICE_([A-Z_]+)", span)}
    read = {key.upper() for key in SERVICE_KEYS}
    assert documented - {"CHECK_"} == read


def test_the_health_checks_reference_lists_every_check_type_and_setting():
    documented = {key.split("=")[0].lower()
                  for span in table_keys("health-checks.md", "key (`SERVICE_[<port>_][<proto>_]CHECK_[<n>_]…`)")
                  for key in re.findall(r"\b([A-Z][A-Z0-9_]*)(?:=|\b)", span)}
    assert set(TYPES) | set(SETTINGS) | {"header"} == documented - {"SERVICE", "CHECK"}


def test_the_operations_page_lists_exactly_the_metrics_the_agent_exports():
    assert set(table_keys("operations.md", "metric")) - {"call", "outcome", "action", "loop"} == EXPORTED


def test_every_metric_the_alerting_rules_name_is_exported():
    rules = (DOCS / "alerting-rules.yml").read_text()
    named = set(re.findall(r"\b(registrator_[a-z_]+|up)\{", rules))
    assert named and named - {"up"} <= EXPORTED


def results_named(text: str) -> list[str]:
    return re.findall(r"\b((?:bench|docs)/results/[\w.-]+\.(?:json|txt))", text)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_every_results_file_a_page_names_is_committed(page):
    text = (DOCS / page).read_text().replace("](results/", "](docs/results/")
    named = [name for name in results_named(text) if name != "bench/results/latest.json"]  # what a run writes, never committed
    assert [name for name in named if not (ROOT / name).is_file()] == []


FIGURE = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|MB|×)(?![\w-])")


@pytest.mark.parametrize("page", ["performance.md", "fleets.md"])
def test_every_section_with_measured_figures_names_its_results_file(page):
    sections = re.split(r"\n(?=## )", (DOCS / page).read_text())
    unsourced = [section.splitlines()[0] for section in sections if FIGURE.search(section) and not results_named(section)]
    assert unsourced == []


def test_the_alerting_rules_are_a_prometheus_rules_file_every_rule_of_which_the_alerts_page_explains():
    rules = yaml.safe_load((DOCS / "alerting-rules.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert all(set(rule) >= {"alert", "expr", "labels", "annotations"} for rule in alerts)
    assert {rule["alert"] for rule in alerts} == set(table_keys("alerts.md", "alert"))
