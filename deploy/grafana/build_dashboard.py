"""Build the Grafana dashboard deploy/grafana/dashboards/omni.json from the saved dashboard
queries, so Grafana shows the same panels as the sink's own dashboard (streams/web/).

    python deploy/grafana/build_dashboard.py           # rewrite omni.json
    python deploy/grafana/build_dashboard.py --check   # exit 1 if omni.json is out of date

One panel per connectors/dashboard/<name>.sql, titled as PANELS in streams/web/dashboard.js,
laid out and drawn as LAYOUT below says. The query is the saved one, adapted for Grafana
only in grafana_sql(): the fixed "last 24 hours" window follows the time picker, a time
series names its time column `time`, WITH TOTALS becomes the table's footer. Edit the
queries or this script, never omni.json. Standard library only.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "connectors" / "dashboard"
WEB_PANELS = ROOT / "streams" / "web" / "dashboard.js"
OUT = ROOT / "deploy" / "grafana" / "dashboards" / "omni.json"

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "omni-clickhouse"}
YUAN = "prefix:¥"
GRID_WIDTH = 24

#: query name -> how Grafana draws it, in display order (panels fill rows left to right).
#: kind: timeseries (time: the time column, series: what is drawn), piechart (value),
#: barchart (x, draw: the bars, tooltip: the other columns, shown only there), stat, table
#: (gauge, alert: a column drawn as a gauge, red/orange when low; footer_sum: WITH TOTALS).
#: units: column -> Grafana unit; time_from: a fixed range for this panel.
LAYOUT: dict[str, dict[str, Any]] = {
    "gmv_per_minute": {
        "kind": "timeseries", "w": 16, "h": 9, "time": "minute",
        "series": ["channel", "gmv"], "units": {"gmv": YUAN}, "stack": True,
    },
    "online_offline_split": {
        "kind": "piechart", "w": 8, "h": 9, "value": "gmv", "units": {"gmv": YUAN},
    },
    "store_leaderboard": {
        "kind": "table", "w": 12, "h": 10, "units": {"gmv": YUAN}, "gauge": "gmv",
        "sort": "gmv",
    },
    "new_members_per_day": {
        "kind": "timeseries", "w": 12, "h": 10, "time": "day", "bars": True,
        "series": ["new_members", "from_public", "public_to_own"], "time_from": "30d",
    },
    "livestream_conversion": {
        "kind": "barchart", "w": 12, "h": 9, "x": "room_id", "draw": ["viewers", "buyers"],
        "tooltip": ["clicks", "orders", "gmv", "conversion"],
        "units": {"gmv": YUAN, "conversion": "percentunit"},
    },
    "red_envelope_conversion": {
        "kind": "barchart", "w": 12, "h": 9, "x": "campaign_id",
        "draw": ["claims", "refused", "orders"], "tooltip": ["buyers", "gmv", "conversion"],
        "units": {"gmv": YUAN, "conversion": "percentunit"},
    },
    "average_order_value": {
        "kind": "barchart", "w": 8, "h": 8, "x": "channel", "draw": ["aov"],
        "tooltip": ["orders", "gmv"], "units": {"aov": YUAN, "gmv": YUAN, "orders": "short"},
    },
    "repurchase_rate": {
        "kind": "stat", "w": 8, "h": 8, "units": {"repurchase_rate": "percentunit"},
    },
    "points_liability": {
        "kind": "table", "w": 8, "h": 8, "footer_sum": ["entries", "points"],
    },
    "low_stock": {
        "kind": "table", "w": 24, "h": 10, "alert": "available",
    },
}  # fmt: skip

FIXED_WINDOW = re.compile(r"\b(\w+) >= now\(\) - INTERVAL 24 HOUR")
#: a query parameter of the saved queries (connectors.clickhouse.dashboard_parameters)
PARAMETER = re.compile(r"\{(\w+):String\}")
#: the dashboard's variables for them, with OMNI_* defaults (streams/settings.py)
VARIABLES = {"reporting_time_zone": ("Reporting time zone", "Asia/Shanghai")}


def saved_queries() -> dict[str, str]:
    """name -> SQL of connectors/dashboard/*.sql."""
    return {p.stem: p.read_text("utf-8") for p in sorted(QUERIES.glob("*.sql"))}


def web_titles() -> dict[str, str]:
    """name -> title of the sink dashboard's PANELS (streams/web/dashboard.js)."""
    js = WEB_PANELS.read_text("utf-8")
    return dict(re.findall(r'^\s+(\w+): \{\s*title: "([^"]*)"', js, flags=re.MULTILINE))


def split_comment(sql: str) -> tuple[str, str]:
    """(the comment lines joined as one sentence, the query without them)."""
    lines = sql.strip().splitlines()
    comment = " ".join(ln.strip().removeprefix("--").strip() for ln in lines if is_comment(ln))
    return comment, "\n".join(ln for ln in lines if not is_comment(ln)).strip()


def is_comment(line: str) -> bool:
    return line.strip().startswith("--")


def grafana_sql(name: str, sql: str, spec: dict[str, Any]) -> str:
    """The saved query as Grafana runs it: every Grafana adaptation is here."""
    # the fixed window of the saved query follows Grafana's time picker instead
    sql = FIXED_WINDOW.sub(r"$__timeFilter(\1)", sql)
    # a query parameter is the dashboard variable of its name
    for parameter in PARAMETER.findall(sql):
        if parameter not in VARIABLES:
            raise SystemExit(f"{name}.sql: no dashboard variable for {{{parameter}:String}}")
    sql = PARAMETER.sub(r"'${\1}'", sql)
    if "now()" in sql:
        raise SystemExit(f"{name}.sql: a time window other than the last 24 hours")
    # the table footer sums instead (Grafana would not show the totals row)
    if spec.get("footer_sum"):
        sql, totals = re.subn(r" WITH TOTALS\b", "", sql)
        if not totals:
            raise SystemExit(f"{name}.sql: footer_sum without WITH TOTALS")
    # a time series: its time column named `time`, first, and in order; only what is drawn
    if spec["kind"] == "timeseries":
        columns = ", ".join([f"{spec['time']} AS time", *spec["series"]])
        body = "\n".join("    " + line for line in sql.splitlines())
        sql = f"SELECT {columns}\nFROM\n(\n{body}\n)\nORDER BY time"
    return sql


def grafana_notes(sql: str, spec: dict[str, Any]) -> list[str]:
    """What a reader of the panel's description should know grafana_sql() changed."""
    notes = []
    if FIXED_WINDOW.search(sql):
        notes.append("Here over the dashboard's time range.")
    if "time_from" in spec:
        notes.append(f"Drawn for the last {spec['time_from']}.")
    if "footer_sum" in spec:
        notes.append("The totals are the footer.")
    if spec["kind"] == "timeseries" and len(spec["series"]) == 2:
        notes.append(f"Drawn: {spec['series'][1]}.")
    return notes


def overrides(properties: dict[str, list[tuple[str, Any]]]) -> list[dict[str, Any]]:
    """Field name -> its (property, value) pairs, as Grafana overrides."""
    return [
        {
            "matcher": {"id": "byName", "options": field},
            "properties": [{"id": key, "value": value} for key, value in pairs],
        }
        for field, pairs in properties.items()
    ]


def unit_properties(spec: dict[str, Any], skip: str = "") -> dict[str, list[tuple[str, Any]]]:
    units = spec.get("units", {})
    return {field: [("unit", unit)] for field, unit in units.items() if field != skip}


def timeseries(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    value = spec["series"][-1]
    labelled = len(spec["series"]) == 2 and not spec.get("bars")
    custom: dict[str, Any] = {
        "drawStyle": "bars" if spec.get("bars") else "line",
        "fillOpacity": 80 if spec.get("bars") else 10,
        "stacking": {"mode": "normal" if spec.get("stack") else "none"},
    }
    defaults: dict[str, Any] = {"unit": spec.get("units", {}).get(value, "short"), "custom": custom}
    if not spec.get("units"):
        defaults["decimals"] = 0
    by_label = []
    if labelled:  # one series per value of the label column, named after it
        label = spec["series"][0]
        by_label.append(
            {
                "matcher": {"id": "byFrameRefID", "options": "A"},
                "properties": [{"id": "displayName", "value": f"${{__field.labels.{label}}}"}],
            }
        )
    legend = {"showLegend": True, "displayMode": "table", "placement": "right", "calcs": ["sum"]}
    if not labelled:
        legend = {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []}
    options = {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}
    return {"defaults": defaults, "overrides": by_label}, options


def piechart(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    value = spec["value"]
    defaults = {"unit": spec.get("units", {}).get(value, "short")}
    options = {
        "reduceOptions": {"values": True, "calcs": ["lastNotNull"], "fields": f"/^{value}$/"},
        "pieType": "donut",
        "displayLabels": ["name", "percent"],
        "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
        "tooltip": {"mode": "single"},
    }
    return {"defaults": defaults, "overrides": []}, options


def barchart(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    draw = spec["draw"]
    units = spec.get("units", {})
    defaults = {
        "unit": units.get(draw[0], "short"),
        "custom": {"fillOpacity": 80, "lineWidth": 1},
    }
    properties = unit_properties(spec, skip=draw[0])
    for field in spec["tooltip"]:  # in the tooltip, not drawn: another scale
        properties.setdefault(field, []).append(
            ("custom.hideFrom", {"viz": True, "legend": True, "tooltip": False})
        )
    options = {
        "xField": spec["x"],
        "orientation": "auto",
        "groupWidth": 0.7,
        "barWidth": 0.9,
        "showValue": "auto",
        "stacking": "none",
        "xTickLabelRotation": 0,
        "legend": {"showLegend": len(draw) > 1, "displayMode": "list", "placement": "bottom"},
        "tooltip": {"mode": "multi", "sort": "none"},
    }
    return {"defaults": defaults, "overrides": overrides(properties)}, options


def stat(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    defaults = {"unit": "short", "decimals": 0}
    properties = {field: [("unit", unit), ("decimals", 1)] for field, unit in spec["units"].items()}
    options = {
        "reduceOptions": {"values": False, "calcs": ["lastNotNull"], "fields": ""},
        "orientation": "horizontal",
        "textMode": "value_and_name",
        "colorMode": "none",
        "graphMode": "none",
        "justifyMode": "auto",
    }
    return {"defaults": defaults, "overrides": overrides(properties)}, options


def table(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    properties = unit_properties(spec)
    if "gauge" in spec:
        properties.setdefault(spec["gauge"], []).append(
            ("custom.cellOptions", {"type": "gauge", "mode": "basic"})
        )
    if "alert" in spec:  # nothing left red, little left orange
        steps = [{"color": "red", "value": None}, {"color": "orange", "value": 1}]
        properties.setdefault(spec["alert"], []).extend(
            [
                ("thresholds", {"mode": "absolute", "steps": steps}),
                ("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
            ]
        )
    options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm"}
    if "sort" in spec:
        options["sortBy"] = [{"displayName": spec["sort"], "desc": True}]
    if "footer_sum" in spec:
        options["footer"] = {
            "show": True,
            "reducer": ["sum"],
            "fields": spec["footer_sum"],
            "countRows": False,
        }
    return {"defaults": {}, "overrides": overrides(properties)}, options


DRAW = {
    "timeseries": timeseries,
    "piechart": piechart,
    "barchart": barchart,
    "stat": stat,
    "table": table,
}


def panel(pid: int, name: str, title: str, sql: str, spec: dict[str, Any]) -> dict[str, Any]:
    comment, query = split_comment(sql)
    source = f"(connectors/dashboard/{name}.sql)"
    series = spec["kind"] == "timeseries"
    field_config, options = DRAW[spec["kind"]](spec)
    out: dict[str, Any] = {
        "id": pid,
        "type": spec["kind"],
        "title": title,
        "description": " ".join([comment, *grafana_notes(query, spec), source]),
        "gridPos": {"h": spec["h"], "w": spec["w"], "x": 0, "y": 0},
        "datasource": DATASOURCE,
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorType": "sql",
                "queryType": "timeSeries" if series else "table",
                "format": 0 if series else 1,
                "rawSql": grafana_sql(name, query, spec),
            }
        ],
        "fieldConfig": field_config,
        "options": options,
    }
    if "time_from" in spec:
        out["timeFrom"] = spec["time_from"]
    return out


def place(panels: list[dict[str, Any]]) -> None:
    """Fill rows left to right; a panel that does not fit starts the next row."""
    x = y = row_height = 0
    for p in panels:
        pos = p["gridPos"]
        if x + pos["w"] > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        pos["x"], pos["y"] = x, y
        x += pos["w"]
        row_height = max(row_height, pos["h"])


def variable(name: str, label: str, default: str) -> dict[str, Any]:
    """A text box the saved queries' parameter of that name reads."""
    current = {"text": default, "value": default}
    return {"type": "textbox", "name": name, "label": label, "query": default,
            "current": current, "options": [current], "hide": 0}  # fmt: skip


def build() -> dict[str, Any]:
    queries = saved_queries()
    titles = web_titles()
    for name in queries:
        if name not in LAYOUT:
            raise SystemExit(f"connectors/dashboard/{name}.sql has no entry in LAYOUT")
        if name not in titles:
            raise SystemExit(f"connectors/dashboard/{name}.sql has no title in {WEB_PANELS}")
    for name in LAYOUT:
        if name not in queries:
            raise SystemExit(f"LAYOUT names {name}, but connectors/dashboard/{name}.sql is gone")
    panels = [
        panel(pid, name, titles[name], queries[name], spec)
        for pid, (name, spec) in enumerate(LAYOUT.items(), start=1)
    ]
    place(panels)
    return {
        "uid": "omni-touchpoints",
        "title": "Omni touchpoints",
        "description": (
            "The saved dashboard queries (connectors/dashboard/*.sql) on ClickHouse, written "
            "by `omni sink`. Built by deploy/grafana/build_dashboard.py: edit the queries or "
            "the script and run it, never this file."
        ),
        "tags": ["omni"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [variable(n, *v) for n, v in VARIABLES.items()]},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text("utf-8") != text:
            print(f"{OUT} is out of date: run python deploy/grafana/build_dashboard.py")
            return 1
        return 0
    OUT.write_text(text, "utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(json.loads(text)['panels'])} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
