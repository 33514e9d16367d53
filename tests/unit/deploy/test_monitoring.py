"""deploy/monitoring: Prometheus accepts the alert rules and the scrape example, and every
metric the rules and the Grafana dashboard name is one the services really expose."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics_core import Metric
from sqlalchemy.ext.asyncio import create_async_engine

from control_plane.observability.metrics import ControlPlaneMetrics
from node_agent.metrics import AgentMetrics, ServerStateCollector
from tests.conftest import require_tool

MONITORING = Path(__file__).resolve().parents[3] / "deploy" / "monitoring"
METRIC_NAME = re.compile(r"\bstellar_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _samples(family: Metric) -> set[str]:
    return {family.name + suffix for suffix in SUFFIXES[family.type]}


async def exposed_names() -> set[str]:
    """Every sample name the two services' registries can expose (the families exist before
    any sample: a labelled metric is described even with no label values yet)."""
    control_plane = ControlPlaneMetrics()
    engine = create_async_engine("sqlite+aiosqlite://")
    control_plane.watch_pools({"main": engine.sync_engine.pool})
    agent = AgentMetrics()
    agent.registry.register(ServerStateCollector(lambda: ["running"]))
    names: set[str] = set()
    for registry in (control_plane.registry, agent.registry):
        for family in registry.collect():
            names |= _samples(family)
    await engine.dispose()
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_alerts_the_operators_need_are_there() -> None:
    names = {rule["alert"] for rule in rules()}
    assert {
        "StellarNodeDown",
        "StellarNodeClockOff",
        "StellarNodeEventStreamLag",
        "StellarHigh5xxRate",
        "StellarServerDiskNearlyFull",
        "StellarBackupFailures",
    } <= names


async def test_every_metric_an_alert_names_is_exposed() -> None:
    exposed = await exposed_names()
    for rule in rules():
        named = set(METRIC_NAME.findall(rule["expr"]))
        assert named, f"{rule['alert']} names no StellarStack metric"
        assert named <= exposed, f"{rule['alert']}: {sorted(named - exposed)} are not exposed"


async def test_every_metric_the_dashboard_graphs_is_exposed() -> None:
    exposed = await exposed_names()
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8"))
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            named = set(METRIC_NAME.findall(target["expr"]))
            assert named, f"{panel['title']}: no StellarStack metric"
            assert named <= exposed, f"{panel['title']}: {sorted(named - exposed)}"


def test_promtool_accepts_the_rules_and_the_scrape_example(tmp_path: Path) -> None:
    require_tool("promtool", "prometheus")
    checked = subprocess.run(
        ["promtool", "check", "rules", str(MONITORING / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    # The example names the key file an operator writes; promtool wants it to exist.
    key = tmp_path / "stellar-metrics.key"
    key.write_text("stl_000000000000_" + "x" * 43, encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        (MONITORING / "prometheus.yml")
        .read_text(encoding="utf-8")
        .replace("/etc/prometheus/stellar-metrics.key", str(key)),
        encoding="utf-8",
    )
    (tmp_path / "alerts.yml").write_bytes((MONITORING / "alerts.yml").read_bytes())
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


CLOCK_RULE_TEST = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'stellar_node_clock_offset_seconds{{node="fast"}}'
        values: '90x20'
      - series: 'stellar_node_clock_offset_seconds{{node="slow"}}'
        values: '-90x20'
      - series: 'stellar_node_clock_offset_seconds{{node="fine"}}'
        values: '0.4x20'
    alert_rule_test:
      - eval_time: 5m
        alertname: StellarNodeClockOff
        exp_alerts: []
      - eval_time: 15m
        alertname: StellarNodeClockOff
        exp_alerts:
          - exp_labels: {{severity: warning, node: fast}}
            exp_annotations:
              summary: "The clock of node fast is 90s off the control plane's"
              description: {description}
          - exp_labels: {{severity: warning, node: slow}}
            exp_annotations:
              summary: "The clock of node slow is 90s off the control plane's"
              description: {description}
"""


def test_a_node_clock_off_either_way_alerts_and_a_small_offset_does_not(tmp_path: Path) -> None:
    require_tool("promtool", "prometheus")
    test_file = tmp_path / "clock_test.yml"
    (rule,) = [r for r in rules() if r["alert"] == "StellarNodeClockOff"]
    description = rule["annotations"]["description"]
    test_file.write_text(
        CLOCK_RULE_TEST.format(
            rules=json.dumps(str(MONITORING / "alerts.yml")), description=json.dumps(description)
        ),
        encoding="utf-8",
    )
    checked = subprocess.run(
        ["promtool", "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
