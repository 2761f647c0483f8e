"""The deployment files name only what the code has: settings, commands, topics, columns."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from streams.cli import main as cli
from streams.settings import Settings
from streams.wiring import all_topics

ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = {f"OMNI_{name.upper()}" for name in Settings.model_fields}
K8S = ROOT / "deploy" / "k8s"
GRAFANA_DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "omni.json"


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def k8s_documents() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(K8S.glob("*.yaml"))}


def test_compose_environment_names_are_settings() -> None:
    for name, service in compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("OMNI_"):
                assert key in SETTING_NAMES, f"{name}: {key} is not a setting"


def test_compose_app_commands_are_cli_commands() -> None:
    for name, service in compose()["services"].items():
        if service.get("image", "").startswith("omni-touchpoints"):
            assert service["command"][0] in cli.commands, name


def test_compose_creates_exactly_the_topics_of_the_code() -> None:
    topics_service = compose()["services"]["topics"]
    named = topics_service["environment"]["TOPICS"].split()
    assert sorted(named) == sorted(all_topics(Settings(topic_prefix="omni")))


def test_compose_dependencies_exist_and_have_health_checks() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_kustomization_lists_every_manifest() -> None:
    docs = k8s_documents()
    listed = set(docs.pop("kustomization.yaml")["resources"])
    assert listed == set(docs)


def test_k8s_config_and_secret_keys_are_settings() -> None:
    docs = k8s_documents()
    keys = set(docs["configmap.yaml"]["data"]) | set(docs["secret.yaml"]["stringData"])
    assert keys <= SETTING_NAMES, keys - SETTING_NAMES


def test_k8s_deployments_run_cli_commands_as_non_root() -> None:
    for name, doc in k8s_documents().items():
        if doc.get("kind") != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert container["args"][0] in cli.commands, name


def migration_columns() -> set[str]:
    sql = "\n".join(p.read_text() for p in (ROOT / "connectors" / "migrations").glob("*.sql"))
    return set(re.findall(r"^\s+([a-z_]+)\s+[A-Z]", sql, flags=re.MULTILINE))


def dashboard_panels() -> list[dict[str, Any]]:
    return json.loads(GRAFANA_DASHBOARD.read_text("utf-8"))["panels"]


def dashboard_generator() -> ModuleType:
    path = ROOT / "deploy" / "grafana" / "build_dashboard.py"
    spec = importlib.util.spec_from_file_location("build_dashboard", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboard_is_what_the_generator_builds() -> None:
    assert GRAFANA_DASHBOARD.read_text("utf-8") == dashboard_generator().render(), (
        "deploy/grafana/dashboards/omni.json is out of date with connectors/dashboard/*.sql: "
        "run `python deploy/grafana/build_dashboard.py`"
    )


def test_dashboard_has_a_panel_per_saved_query() -> None:
    names = sorted(p.stem for p in (ROOT / "connectors" / "dashboard").glob("*.sql"))
    sources = [
        re.findall(r"\(connectors/dashboard/(\w+)\.sql\)$", p["description"])
        for p in dashboard_panels()
    ]
    assert sorted(name for found in sources for name in found) == names
    assert all(len(found) == 1 for found in sources)


def test_dashboard_queries_use_existing_tables() -> None:
    sql = [t["rawSql"] for p in dashboard_panels() for t in p["targets"]]
    assert sql, "the dashboard has no queries"
    tables = set(
        re.findall(
            r"CREATE (?:TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS (\w+)",
            "\n".join(p.read_text() for p in (ROOT / "connectors" / "migrations").glob("*.sql")),
        )
    )
    for query in sql:
        named = set(re.findall(r"(?:\bWITH|,)\s+(\w+) AS \(", query))  # WITH name AS (...)
        for table in re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", query):
            assert table in tables | named, f"dashboard reads unknown table {table}"
    assert {"event_time", "one_id", "amount"} <= migration_columns()


def test_dashboard_variables_are_the_query_parameters_with_their_settings_defaults() -> None:
    from connectors.clickhouse import dashboard_parameters

    variables = {v["name"]: v["query"] for v in json.loads(GRAFANA_DASHBOARD.read_text())[
        "templating"]["list"]}  # fmt: skip
    defaults = {name: Settings.model_fields[name].default for name in dashboard_parameters("")}
    assert variables == defaults
    sql = "\n".join(t["rawSql"] for p in dashboard_panels() for t in p["targets"])
    assert not re.search(r"\{\w+:\w+\}", sql), "a query parameter Grafana cannot fill"


def test_every_required_variable_is_exported_before_the_first_compose_command() -> None:
    """Compose fills in every ${VAR:?} of the file on every command: the usage at the top
    must export them all before its first `docker compose`."""
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    usage = [ln.lstrip("# ").strip() for ln in text.splitlines()]
    first = next(i for i, ln in enumerate(usage) if ln.startswith("docker compose"))
    exported = {m.group(1) for ln in usage[:first] if (m := re.match(r"export (\w+)=", ln))}
    assert required and required <= exported, required - exported
