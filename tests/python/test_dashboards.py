"""Lint of the Grafana dashboards the chart ships (charts/gregor/dashboards/*.json, one
ConfigMap each for Grafana's dashboard sidecar) and of the alert rules' runbook links. No
broker and no Grafana: the JSON model is checked for what Grafana needs to load a provisioned
dashboard, and every query is checked as PromQL by Debian's promtool.

- each file parses, holds the top-level keys of a provisioned dashboard (no `__inputs`, `id`
  null, schemaVersion 39, refresh 30s) and is named after its `uid`; uids are unique;
- panel ids are unique, nested panels of collapsed rows included; every panel fits the 24
  columns and none overlaps another;
- every target has a refId unique in its panel and an expression, and every datasource is the
  `datasource` template variable;
- every `$variable` a query uses is defined; every selector of a broker series filters by
  `gregor_cluster="$gregor_cluster"`, so that one Prometheus can hold several clusters;
  every rate() and increase() range is `$__rate_interval`;
- every series name is a documented one: the first column of docs/metrics.md's tables when
  that file exists, else DOCUMENTED below;
- every expression, with Grafana's variables replaced, passes `promtool check rules` as a
  recording rule (under CI=true a missing promtool fails, elsewhere it skips);
- every alert of charts/gregor/rules/gregor.rules.yaml links to its section of
  docs/runbook.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "charts" / "gregor" / "dashboards"
RULES = ROOT / "charts" / "gregor" / "rules" / "gregor.rules.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
FILES = sorted(DASHBOARDS.glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# The series Gregor exports (brokers, then the operator), for when docs/metrics.md is absent.
# Histograms are listed by their base name (their _bucket, _sum and _count series are used).
DOCUMENTED = set("""
gregor_requests_total gregor_request_errors_total gregor_bytes_in_total gregor_bytes_out_total
gregor_produce_bytes_total gregor_fetch_bytes_total gregor_messages_in_total
gregor_isr_shrinks_total gregor_isr_expands_total gregor_raft_elections_total
gregor_raft_leader_changes_total gregor_authentications_total
gregor_request_duration_seconds gregor_request_queue_seconds
gregor_produce_acks_all_wait_seconds gregor_fetch_wait_seconds gregor_request_size_bytes
gregor_response_size_bytes gregor_log_append_seconds gregor_log_flush_seconds
gregor_connections gregor_replica_partitions gregor_leader_partitions
gregor_under_replicated_partitions gregor_under_min_isr_partitions
gregor_at_min_isr_partitions gregor_replica_max_lag_messages gregor_consumer_groups
gregor_log_size_bytes gregor_log_dir_free_bytes gregor_log_dir_total_bytes gregor_raft_term
gregor_raft_leader gregor_raft_state gregor_metadata_applied_offset gregor_metadata_lag_records
gregor_active_controller gregor_global_topics gregor_global_partitions
gregor_offline_partitions gregor_fenced_brokers gregor_registered_brokers
gregor_topic_bytes_in_total gregor_topic_bytes_out_total gregor_topic_messages_in_total
gregor_topic_failed_produce_requests_total gregor_topic_failed_fetch_requests_total
gregor_partition_log_end_offset gregor_partition_log_start_offset gregor_partition_size_bytes
gregor_partition_high_watermark
gregor_consumer_group_committed_offset gregor_consumer_group_lag
gregor_consumer_group_members gregor_consumer_groups_by_state
process_resident_memory_bytes process_cpu_seconds_total process_open_fds process_max_fds
gregor_operator_reconciliations_total gregor_operator_reconcile_failures_total
gregor_operator_reconcile_duration_seconds gregor_operator_brokers_ready
gregor_operator_brokers_desired gregor_operator_under_replicated_partitions
gregor_operator_roll_in_progress gregor_operator_scale_in_progress
gregor_operator_last_successful_reconcile_timestamp_seconds gregor_operator_resource_ready
gregor_operator_certificate_expiry_timestamp_seconds gregor_operator_leader
""".split())

# Names matching the series pattern that are labels, not series.
LABELS = {"gregor_cluster"}
SERIES = re.compile(r"(?<![A-Za-z0-9_:])((?:gregor|process)_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's own interval variables, and what promtool gets instead.
GRAFANA_INTERVALS = {"rate_interval": "1m", "interval": "1m", "range": "1h"}
INTERVAL = re.compile(r"\$\{?__(" + "|".join(GRAFANA_INTERVALS) + r")\}?")
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
# A label matcher whose value holds a template variable.
VARIABLE_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"[^"]*\$[^"]*"')
LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)$", re.S)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def all_panels(dash: dict):
    """(panel, its collapsed row or None) for every panel, rows' nested panels too."""
    for panel in dash.get("panels", []):
        yield panel, None
        for nested in panel.get("panels", []):
            yield nested, panel


def queries(dash: dict):
    """(where, expression) for every target of every panel and every query variable."""
    for panel, _ in all_panels(dash):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('id')} {target.get('refId')}", target.get("expr", "")
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            if isinstance(query, dict):
                query = query.get("query", "")
            yield f"variable {var.get('name')}", query


def selectors(query: str) -> list[str]:
    """The PromQL of a query: a variable's label_values(SELECTOR, label) gives SELECTOR (or
    nothing), a panel's expression is itself."""
    m = LABEL_VALUES.match(query.strip())
    if m:
        return [m.group(1)] if m.group(1) else []
    return [query]


def documented() -> set[str]:
    if METRICS_DOC.exists():
        names = documented_in(METRICS_DOC.read_text())
        assert names, (f"{METRICS_DOC} lists no series: expected tables whose first column "
                       "holds the series name in backticks")
        return names
    return DOCUMENTED


def documented_in(markdown: str) -> set[str]:
    """The backticked `gregor_*`/`process_*` names in the first column of markdown tables."""
    names = set()
    for line in markdown.splitlines():
        cells = line.strip().split("|")
        if line.strip().startswith("|") and len(cells) > 2:
            names |= set(re.findall(r"`((?:gregor|process)_[a-z0-9_]+)", cells[1]))
    return names


def is_documented(name: str, names: set[str]) -> bool:
    if name in names:
        return True
    return any(name.endswith(s) and name[: -len(s)] in names for s in HISTOGRAM_SUFFIXES)


def as_promql(expr: str) -> str:
    """`expr` with Grafana's variables replaced: intervals by durations, matchers on template
    variables by `=~".*"`. A variable anywhere else is left, for the caller to refuse."""
    expr = INTERVAL.sub(lambda m: GRAFANA_INTERVALS[m.group(1)], expr)
    return VARIABLE_MATCHER.sub(r'\1=~".*"', expr)


def test_the_dashboards_exist():
    names = {p.stem for p in FILES}
    assert {"gregor-cluster", "gregor-topics", "gregor-consumer-groups",
            "gregor-operator"} <= names, names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_the_file_is_a_provisionable_dashboard(path):
    text = path.read_text()
    # The chart's ConfigMap holds the file in a YAML block scalar, which keeps exactly one
    # final newline and no carriage returns (scripts/helm-check.sh compares the bytes).
    assert text.endswith("}\n") and "\r" not in text, "end the file with one newline"
    dash = json.loads(text)
    for key in ("title", "uid", "schemaVersion", "panels", "time", "templating",
                "annotations", "refresh"):
        assert key in dash, f"no top-level {key}"
    assert "__inputs" not in dash, "the sidecar does not resolve __inputs; use the variable"
    assert dash.get("id") is None, "id must be null for provisioning"
    assert dash["schemaVersion"] == 39
    assert dash["refresh"] == "30s"
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dash["uid"]), dash["uid"]
    assert path.name == f"{dash['uid']}.json", "name the file after its uid"
    assert {"from", "to"} <= set(dash["time"])
    assert isinstance(dash["annotations"].get("list"), list)
    assert "gregor" in dash.get("tags", [])


def test_uids_and_titles_are_unique():
    dashes = [load(p) for p in FILES]
    uids = [d["uid"] for d in dashes]
    titles = [d["title"] for d in dashes]
    assert len(set(uids)) == len(uids), uids
    assert len(set(titles)) == len(titles), titles


def check_grid(panels: list[dict], where: str, min_y: int = 0) -> list[str]:
    """Problems with the gridPos of panels laid out together."""
    errors, taken = [], {}
    for p in panels:
        g = p.get("gridPos", {})
        name = f"{where} panel {p.get('id')} ({p.get('title')})"
        if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")):
            errors.append(f"{name}: gridPos {g}")
            continue
        if g["w"] < 1 or g["h"] < 1 or g["x"] < 0 or g["y"] < min_y or g["x"] + g["w"] > 24:
            errors.append(f"{name}: gridPos {g} outside the grid")
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in taken:
                    errors.append(f"{name} overlaps panel {taken[(x, y)]}")
                    break
                taken[(x, y)] = p.get("id")
            else:
                continue
            break
    return errors


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_panels_have_unique_ids_and_do_not_overlap(path):
    dash = load(path)
    ids = [p.get("id") for p, _ in all_panels(dash)]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(set(ids)) == len(ids), f"duplicate panel ids {sorted(ids)}"
    errors = check_grid(dash["panels"], path.stem)
    for row in dash["panels"]:
        nested = row.get("panels", [])
        if row.get("type") != "row":
            assert not nested, f"panel {row.get('id')} nests panels but is no row"
            continue
        assert row["gridPos"]["h"] == 1 and row["gridPos"]["w"] == 24, row["gridPos"]
        if not row.get("collapsed"):
            assert nested == [], f"expanded row {row['id']} keeps panels inside"
        assert all(p.get("type") != "row" for p in nested), "a row inside a row"
        # A collapsed row's panels are laid out below it, as they show when it opens.
        errors += check_grid(nested, f"{path.stem} row {row['id']}", row["gridPos"]["y"] + 1)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_targets_and_datasources(path):
    dash = load(path)
    variables = {v.get("name"): v for v in dash["templating"]["list"]}
    ds = variables.get("datasource", {})
    assert ds.get("type") == "datasource" and ds.get("query") == "prometheus", ds
    errors = []
    for v in variables.values():
        if v.get("type") == "query" and v.get("datasource") != DATASOURCE:
            errors.append(f"variable {v.get('name')}: datasource {v.get('datasource')}")
    for panel, _ in all_panels(dash):
        if panel.get("type") == "row":
            continue
        name = f"panel {panel.get('id')} ({panel.get('title')})"
        for key in ("type", "title"):
            if not panel.get(key):
                errors.append(f"{name}: no {key}")
        if panel.get("datasource") != DATASOURCE:
            errors.append(f"{name}: datasource {panel.get('datasource')}")
        targets = panel.get("targets", [])
        if not targets:
            errors.append(f"{name}: no targets")
        refs = [t.get("refId") for t in targets]
        if not all(refs) or len(set(refs)) != len(refs):
            errors.append(f"{name}: refIds {refs}")
        for t in targets:
            if t.get("datasource") != DATASOURCE:
                errors.append(f"{name} {t.get('refId')}: datasource {t.get('datasource')}")
            if not str(t.get("expr", "")).strip():
                errors.append(f"{name} {t.get('refId')}: empty expr")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_variables_clusters_and_rate_intervals(path):
    dash = load(path)
    defined = {v.get("name") for v in dash["templating"]["list"]}
    errors = []
    broker_series = False
    for where, query in queries(dash):
        for var in VARIABLE.findall(INTERVAL.sub("", query)):
            if var not in defined:
                errors.append(f"{where}: ${var} is not a template variable")
        for sel in selectors(query):
            for m in re.finditer(r"\b(up|(?:gregor|process)_[a-z0-9_]+)\b(\s*\{[^}]*\})?", sel):
                name, matchers = m.group(1), m.group(2) or ""
                if name in LABELS or name.startswith("gregor_operator_"):
                    continue
                broker_series = True
                # The gregor_cluster variable lists the clusters, so it cannot filter by one.
                if (where != "variable gregor_cluster"
                        and 'gregor_cluster="$gregor_cluster"' not in matchers):
                    errors.append(f"{where}: {name} not filtered by gregor_cluster")
            for m in re.finditer(r"\b(rate|irate|increase)\(([^\[]*)\[([^\]]*)\]", sel):
                if m.group(3) != "$__rate_interval":
                    errors.append(f"{where}: {m.group(1)}(...[{m.group(3)}]), "
                                  "use $__rate_interval")
    if broker_series:
        assert "gregor_cluster" in defined, "broker series without a gregor_cluster variable"
    assert not errors, "\n".join(errors)


def test_series_names_are_documented():
    names = documented()
    used = {}
    for path in FILES:
        for where, query in queries(load(path)):
            for name in SERIES.findall(query):
                if name not in LABELS:
                    used.setdefault(name, f"{path.stem} {where}")
    unknown = {n: w for n, w in used.items() if not is_documented(n, names)}
    source = METRICS_DOC if METRICS_DOC.exists() else "DOCUMENTED in this test"
    assert not unknown, f"series not in {source}: {unknown}"


def test_documented_names_are_read_from_the_first_column_of_tables():
    doc = """# Metrics
| series | type | labels |
|---|---|---|
| `gregor_requests_total` | counter | `api` |
| `gregor_request_duration_seconds{api}` | histogram | mentions `gregor_not_a_series` |
| `process_open_fds` / `process_max_fds` | gauge | |
Text with `gregor_in_prose`.
"""
    assert documented_in(doc) == {"gregor_requests_total", "gregor_request_duration_seconds",
                                  "process_open_fds", "process_max_fds"}
    assert is_documented("gregor_request_duration_seconds_bucket", documented_in(doc))
    assert not is_documented("gregor_requests", documented_in(doc))


def test_grafana_variables_become_promql():
    assert as_promql('sum(rate(x{a="$a", b=~"${b}"}[$__rate_interval]))') == \
        'sum(rate(x{a=~".*", b=~".*"}[1m]))'
    assert as_promql("increase(y[$__range])") == "increase(y[1h])"


def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    message = "promtool not found: apt-get install prometheus (Debian's package ships it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def test_expressions_are_valid_promql(tmp_path):
    tool = promtool()
    groups, errors = [], []
    for path in FILES:
        dash = load(path)
        uid = dash["uid"].replace("-", "_")
        rules = []
        for where, query in queries(dash):
            for i, sel in enumerate(selectors(query)):
                expr = as_promql(sel)
                if "$" in expr:
                    errors.append(f"{path.stem} {where}: a variable outside a label matcher: "
                                  f"{sel}")
                    continue
                record = f"dashboard:{uid}:{re.sub(r'[^A-Za-z0-9_]', '_', where)}_{i}"
                rules.append({"record": record, "expr": expr})
        groups.append({"name": dash["uid"], "rules": rules})
    assert not errors, "\n".join(errors)
    assert sum(len(g["rules"]) for g in groups) > 0
    rule_file = tmp_path / "dashboards.rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000))
    checked = subprocess.run([tool, "check", "rules", str(rule_file)], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_to_its_runbook_section():
    anchors = {github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines()
               if re.match(r"#{1,6} ", line)}
    alerts = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
              if "alert" in r]
    assert alerts
    errors = []
    for rule in alerts:
        link = rule.get("annotations", {}).get("runbook", "")
        want = f"docs/runbook.md#{rule['alert'].lower()}"
        if link != want:
            errors.append(f"{rule['alert']}: runbook {link!r}, expected {want!r}")
        elif link.split("#", 1)[1] not in anchors:
            errors.append(f"{rule['alert']}: docs/runbook.md has no section #{link.split('#')[1]}")
    assert not errors, "\n".join(errors)
