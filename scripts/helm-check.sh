#!/usr/bin/env bash
# Checks the Helm chart charts/gregor:
#   1. helm lint --strict, with the default values and with watchNamespaces={a,b} plus a
#      ServiceMonitor, the PrometheusRule and the Grafana dashboards' ConfigMaps;
#   2. helm template with both value sets, every document parsed and checked for what it must
#      hold (kinds and names, the operator's arguments, a non-root read-only container, RBAC
#      granting exactly the verbs the operator uses, in the scope asked for);
#   3. with kube-apiserver and etcd at hand (GREGOR_KUBE_BIN, as scripts/kube-dist.sh prints;
#      --no-server skips this): `helm install` into a real API server, then the operator binary
#      run with the rendered Deployment's arguments as the chart's ServiceAccount (a token from
#      the TokenRequest API), once cluster-wide and once after `helm upgrade` to
#      watchNamespaces: each time a KafkaCluster with spec.rack must get its cluster id and
#      StatefulSet, which only happens when the chart's RBAC lets every call of the reconcile
#      through, and its broker pods' ClusterRoleBinding, deleted by the finalizer when the
#      KafkaCluster is (the cluster-scoped calls, and `bind`, checked in both modes). The first
#      run also takes a KafkaTopic through creation (finalizer, topic created in a local
#      `gregor dev` broker reached through --bootstrap-override, Ready) and deletion (topic
#      deleted, finalizer removed), and a KafkaUser with a SCRAM password through Ready (its
#      Secret written) and deletion, so the KafkaTopic and KafkaUser controllers' calls are
#      checked too. During that run a real Prometheus scrapes the operator, and every panel of
#      the operator's Grafana dashboard and its alert rule must evaluate there with data
#      (scripts/operator-dashboard-check.py, with the test venv's python: GREGOR_PYTHON).
#
# helm: HELM_VERSION from PATH, else built once with `go install` (scripts/go-tool.sh).
# Env: GREGOR_KUBE_BIN, GREGOR_OPERATOR_BIN (default: cargo build of gregor-operator, debug),
#      GREGOR_BIN (default: $CARGO_TARGET_DIR/release/gregor, built when missing),
#      CARGO_TARGET_DIR, HELM_VERSION (default v3.22.0), GREGOR_CACHE (default ~/.cache/gregor).
# No `cmd | grep -q` below: grep -q stops reading at its match, and under pipefail the writer's
# SIGPIPE would fail the check. Outputs are compared as strings instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
chart=charts/gregor
cache="${GREGOR_CACHE:-$HOME/.cache/gregor}"
helm_version="${HELM_VERSION:-v3.22.0}"
server=1
[[ "${1:-}" == "--no-server" ]] && server=0
t0=$(date +%s)
say() { echo "==> [helm-check $(( $(date +%s) - t0 ))s] $*"; }
fail() { echo "helm-check: FAILED: $*" >&2; exit 1; }

# --- helm ---------------------------------------------------------------------------------
helm="$(scripts/go-tool.sh helm helm.sh/helm/v3/cmd/helm "$helm_version")"

# --- python with PyYAML, for reading what helm renders ------------------------------------
py=python3
if ! "$py" -c 'import yaml' 2>/dev/null; then
  venv="$cache/yaml-venv"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
    say "python venv with PyYAML in $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q PyYAML==6.0.3
  fi
  py="$venv/bin/python"
fi

# --- the test suite's python, for Prometheus and the operator's dashboard -----------------
# (scripts/operator-dashboard-check.py runs tests/python/prometheus.py; .ci/run makes the venv)
test_py="${GREGOR_PYTHON:-$cache/venv/bin/python}"
if ! [[ -x "$test_py" ]] || ! "$test_py" -c 'import pytest, yaml' 2>/dev/null; then
  [[ "${CI:-}" == true ]] && fail "no test venv at $test_py (.ci/run makes it)"
  say "skipping the operator dashboard's Prometheus check: no test venv at $test_py"
  test_py=""
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1. lint --------------------------------------------------------------------------------
ns_values=(--set 'watchNamespaces={a,b}' --set metrics.serviceMonitor.enabled=true
  --set prometheusRule.enabled=true --set dashboards.enabled=true)
say "helm lint --strict $chart (defaults; watchNamespaces={a,b} + ServiceMonitor + PrometheusRule + dashboards)"
"$helm" lint --strict "$chart" --namespace gregor-system
"$helm" lint --strict "$chart" --namespace gregor-system "${ns_values[@]}"

# --- 2. template and check ------------------------------------------------------------------
say "helm template: defaults"
"$helm" template gregor "$chart" --namespace gregor-system >"$work/default.yaml"
say "helm template: watchNamespaces={a,b}, metrics.serviceMonitor.enabled=true, prometheusRule.enabled=true, dashboards.enabled=true"
"$helm" template gregor "$chart" --namespace gregor-system "${ns_values[@]}" >"$work/namespaced.yaml"
"$helm" template gregor "$chart" --set replicas=2 --set leaderElection.enabled=false \
  >/dev/null 2>&1 && fail "replicas=2 without leader election rendered"

cat >"$work/check.py" <<'PY'
"""Checks a rendering of charts/gregor. Args: FILE MODE (cluster | namespaced)."""
import sys
from pathlib import Path

import yaml

path, mode = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
errors = []


def check(ok, what):
    if not ok:
        errors.append(what)


objects = {}
for d in docs:
    for key in ("apiVersion", "kind", "metadata"):
        check(key in d, f"a document without {key}: {d}")
    meta = d.get("metadata", {})
    check(bool(meta.get("name")), f"a {d.get('kind')} without a name")
    objects[(d["kind"], meta.get("namespace"), meta["name"])] = d

release_ns, full = "gregor-system", "gregor"
expected = {
    ("ServiceAccount", release_ns, full),
    ("Deployment", release_ns, full),
    ("Service", release_ns, f"{full}-metrics"),
    ("Role", release_ns, f"{full}-leader-election"),
    ("RoleBinding", release_ns, f"{full}-leader-election"),
    # The leader-election Lease, so that helm uninstall removes it.
    ("Lease", release_ns, full),
    # Rack awareness, in either mode: the broker pods' ClusterRole, and the operator's
    # cluster-scoped rules for binding them to it.
    ("ClusterRole", None, f"{full}-broker-rack"),
    ("ClusterRole", None, f"{full}-rack-bindings"),
    ("ClusterRoleBinding", None, f"{full}-rack-bindings"),
}
watched = ["a", "b"] if mode == "namespaced" else []
if mode == "cluster":
    expected |= {("ClusterRole", None, full), ("ClusterRoleBinding", None, full)}
else:
    expected |= {("Role", ns, full) for ns in watched}
    expected |= {("RoleBinding", ns, full) for ns in watched}
    expected.add(("ServiceMonitor", release_ns, full))
    expected.add(("PrometheusRule", release_ns, full))
    # A ConfigMap per Grafana dashboard, whatever files charts/gregor/dashboards holds.
    dashboards = sorted(Path("charts/gregor/dashboards").glob("*.json"))
    check(bool(dashboards), "no dashboards in charts/gregor/dashboards")
    expected |= {("ConfigMap", release_ns, f"{full}-dashboard-{p.stem}") for p in dashboards}
check(set(objects) == expected,
      f"objects: extra {sorted(set(objects) - expected, key=str)}, "
      f"missing {sorted(expected - set(objects), key=str)}")

# The Deployment: arguments, identity, security.
dep = objects.get(("Deployment", release_ns, full), {})
pod = dep.get("spec", {}).get("template", {}).get("spec", {})
(container,) = pod.get("containers", [{}])
args = container.get("args", [])
want_args = [
    "--metrics-addr=0.0.0.0:8080",
    "--default-image=gregor:0.1.0",
    f"--rack-cluster-role={full}-broker-rack",
    "--leader-election=true",
    "--lease-name=gregor",
    f"--lease-namespace={release_ns}",
    "--identity=$(POD_NAME)",
] + [f"--namespace={ns}" for ns in watched]
check(args == want_args, f"operator args {args}, expected {want_args}")
check(container.get("command") == ["/usr/local/bin/gregor-operator"], "operator command")
check(container.get("image") == "gregor:0.1.0", f"image {container.get('image')}")
env = {e["name"]: e for e in container.get("env", [])}
check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
      == "metadata.name", "POD_NAME from the downward API")
sc = container.get("securityContext", {})
check(sc.get("readOnlyRootFilesystem") is True, "read-only root filesystem")
check(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
check(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities dropped")
check(pod.get("securityContext", {}).get("runAsNonRoot") is True, "runAsNonRoot")
check(pod.get("securityContext", {}).get("runAsUser") == 65532, "runs as 65532")
check(pod.get("serviceAccountName") == full, "service account")
ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
check(ports == {"metrics": 8080}, f"ports {ports}")
for probe in ("readinessProbe", "livenessProbe"):
    check(container.get(probe, {}).get("httpGet", {}).get("port") == "metrics", probe)
labels = pod and dep["spec"]["template"]["metadata"]["labels"]
check(labels.get("app.kubernetes.io/name") != "gregor",
      "operator pods labelled like brokers (app.kubernetes.io/name=gregor)")

# RBAC: what the operator touches, in the scope asked for, and no wildcard.
NEEDS = {
    ("gregor.dev", "kafkaclusters"): "get list watch patch",
    ("gregor.dev", "kafkatopics"): "get list watch patch",
    ("gregor.dev", "kafkausers"): "get list watch patch",
    ("gregor.dev", "kafkaclusters/status"): "patch",
    ("gregor.dev", "kafkatopics/status"): "patch",
    ("gregor.dev", "kafkausers/status"): "patch",
    ("gregor.dev", "kafkaclusters/finalizers"): "update",
    ("gregor.dev", "kafkatopics/finalizers"): "update",
    ("gregor.dev", "kafkausers/finalizers"): "update",
    # The CAs', nodes' and users' certificates and passwords; never delete (garbage
    # collection does, through owner references).
    ("", "secrets"): "get list watch create patch",
    ("apps", "statefulsets"): "get list watch create patch delete",
    ("", "configmaps"): "get list watch create patch delete",
    ("", "services"): "get list watch create patch delete",
    ("", "serviceaccounts"): "list watch create patch delete",
    ("", "pods"): "get list watch delete",
    ("", "persistentvolumeclaims"): "get list watch patch",
    ("", "events"): "create patch",
    ("events.k8s.io", "events"): "create patch",
    ("policy", "poddisruptionbudgets"): "get list watch create patch delete",
    ("monitoring.coreos.com", "servicemonitors"): "get list watch create patch delete",
}


def granted(rules):
    out = set()
    for r in rules:
        for field in ("apiGroups", "resources", "verbs"):
            check("*" not in r.get(field, []), f"wildcard in {field}: {r}")
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    out.add((g, res, v, tuple(r.get("resourceNames", []))))
    return out


def covers(rules, where):
    have = {(g, res, v) for g, res, v, names in granted(rules) if not names}
    need = {(g, res, v) for (g, res), verbs in NEEDS.items() for v in verbs.split()}
    for g, res, v in sorted(need - have):
        check(False, f"{where} lacks {v} on {g or 'core'}/{res}")
    for g, res, v in sorted(have - need):
        check(False, f"{where} grants {v} on {g or 'core'}/{res}, which the operator never uses")


def exactly(rules, want, where):
    """The rules grant `want` ({(group, resource, verb, resourceNames)}) and nothing else."""
    have = granted(rules)
    for g, res, v, names in sorted(want - have):
        check(False, f"{where} lacks {v} on {g or 'core'}/{res} {list(names) or ''}")
    for g, res, v, names in sorted(have - want):
        check(False, f"{where} grants {v} on {g or 'core'}/{res} {list(names) or ''}, "
                     "which is never used")


def bound(kind, ns, name, role_kind):
    b = objects.get((kind, ns, name), {})
    check(b.get("roleRef", {}).get("kind") == role_kind and b["roleRef"]["name"] == name,
          f"{kind} {ns}/{name} binds {b.get('roleRef')}")
    check(b.get("subjects") == [{"kind": "ServiceAccount", "name": full,
                                 "namespace": release_ns}], f"{kind} {ns}/{name} subjects")


if mode == "cluster":
    covers(objects.get(("ClusterRole", None, full), {}).get("rules", []), "ClusterRole")
    bound("ClusterRoleBinding", None, full, "ClusterRole")
else:
    for ns in watched:
        covers(objects.get(("Role", ns, full), {}).get("rules", []), f"Role {ns}/{full}")
        bound("RoleBinding", ns, full, "Role")
# Rack awareness: broker pods may get nodes; the operator may manage ClusterRoleBindings and
# bind that one ClusterRole (RBAC's escalation check), and holds nothing on nodes itself.
broker_rack = f"{full}-broker-rack"
exactly(objects.get(("ClusterRole", None, broker_rack), {}).get("rules", []),
        {("", "nodes", "get", ())}, f"ClusterRole {broker_rack}")
rbac = "rbac.authorization.k8s.io"
exactly(objects.get(("ClusterRole", None, f"{full}-rack-bindings"), {}).get("rules", []),
        {(rbac, "clusterrolebindings", v, ()) for v in ("get", "create", "patch", "delete")}
        | {(rbac, "clusterroles", "bind", (broker_rack,))},
        f"ClusterRole {full}-rack-bindings")
bound("ClusterRoleBinding", None, f"{full}-rack-bindings", "ClusterRole")
lease = granted(objects.get(("Role", release_ns, f"{full}-leader-election"), {}).get("rules", []))
for v in ("get", "update"):
    check(("coordination.k8s.io", "leases", v, ("gregor",)) in lease, f"lease {v}")
check(("coordination.k8s.io", "leases", "create", ()) in lease, "lease create")
bound("RoleBinding", release_ns, f"{full}-leader-election", "Role")

if mode == "namespaced":
    sm = objects.get(("ServiceMonitor", release_ns, full), {})
    check(sm.get("spec", {}).get("endpoints", [{}])[0].get("port") == "metrics",
          "ServiceMonitor scrapes the metrics port")
    # The PrometheusRule carries the rule file as it is (promtool checks that file).
    rules = yaml.safe_load(open("charts/gregor/rules/gregor.rules.yaml"))
    check(objects.get(("PrometheusRule", release_ns, full), {}).get("spec") == rules,
          "PrometheusRule spec differs from rules/gregor.rules.yaml")
    # Each dashboard's ConfigMap holds its file byte for byte, labelled for Grafana's sidecar.
    for p in dashboards:
        cm = objects.get(("ConfigMap", release_ns, f"{full}-dashboard-{p.stem}"), {})
        data = cm.get("data", {})
        check(set(data) == {p.name} and data[p.name].encode() == p.read_bytes(),
              f"ConfigMap {full}-dashboard-{p.stem} does not hold {p} as it is")
        check(cm.get("metadata", {}).get("labels", {}).get("grafana_dashboard") == "1",
              f"ConfigMap {full}-dashboard-{p.stem} lacks the label grafana_dashboard: \"1\"")

if errors:
    print(f"{path}: {len(errors)} problem(s):")
    for e in errors:
        print(f"  - {e}")
    sys.exit(1)
print(f"{path}: {len(docs)} documents, {len(objects)} objects: ok")
PY
"$py" "$work/check.py" "$work/default.yaml" cluster
"$py" "$work/check.py" "$work/namespaced.yaml" namespaced

# --- 3. a real API server -------------------------------------------------------------------
if [[ $server == 0 ]]; then
  say "skipped the API-server check (--no-server)"
  exit 0
fi
kube_bin="${GREGOR_KUBE_BIN:-}"
if [[ -z "$kube_bin" ]]; then
  [[ -n "${CI:-}" ]] && fail "GREGOR_KUBE_BIN is not set (scripts/kube-dist.sh prints it)"
  say "skipped the API-server check: GREGOR_KUBE_BIN is not set (scripts/kube-dist.sh)"
  exit 0
fi
operator="${GREGOR_OPERATOR_BIN:-}"
if [[ -z "$operator" ]]; then
  say "cargo build -p gregor-operator --bin gregor-operator"
  cargo build -q -p gregor-operator --bin gregor-operator
  operator="${CARGO_TARGET_DIR:-$root/target}/debug/gregor-operator"
fi

gregor="${GREGOR_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/gregor}"
if [[ ! -x "$gregor" ]]; then
  say "cargo build --release -p gregor"
  cargo build -q --release -p gregor
fi

say "etcd and kube-apiserver ($kube_bin)"
read -r etcd_port peer_port api_port metrics_port <<<"$(python3 scripts/free-port.py 4)"
token="helm-check-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
echo "$token,helm-check-admin,1000,\"system:masters\"" >"$work/tokens.csv"
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
"$kube_bin/etcd" --data-dir="$work/etcd" --listen-client-urls="http://127.0.0.1:$etcd_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
  --initial-cluster="default=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
pids+=($!)
"$kube_bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
  --secure-port="$api_port" --cert-dir="$work/certs" --token-auth-file="$work/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$work/sa.key" --service-account-signing-key-file="$work/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 --enable-priority-and-fairness=false \
  >"$work/kube-apiserver.log" 2>&1 &
pids+=($!)
api="https://127.0.0.1:$api_port"
kubeconfig() { # FILE TOKEN
  printf '%s\n' 'apiVersion: v1' 'kind: Config' 'clusters:' '- name: check' '  cluster:' \
    "    server: $api" '    insecure-skip-tls-verify: true' 'users:' '- name: user' '  user:' \
    "    token: $2" 'contexts:' '- name: check' '  context: {cluster: check, user: user}' \
    'current-context: check' >"$1"
}
kubeconfig "$work/admin.kubeconfig" "$token"
# The API as the admin: METHOD PATH [JSON BODY].
kapi() {
  curl -sS -k --fail-with-body -X "$1" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "$api$2"
}
for _ in $(seq 120); do
  [[ "$(curl -sk -H "Authorization: Bearer $token" "$api/readyz" 2>/dev/null)" == ok ]] && break
  sleep 0.5
done
[[ "$(curl -sk -H "Authorization: Bearer $token" "$api/readyz")" == ok ]] ||
  { tail -n 20 "$work/kube-apiserver.log" >&2; fail "kube-apiserver not ready"; }

h() { "$helm" --kubeconfig "$work/admin.kubeconfig" "$@"; }
# Runs the operator as the chart's ServiceAccount, with the arguments of the Deployment as
# installed, until a KafkaCluster in NAMESPACE is reconciled; with BOOTSTRAP (a broker's
# address), also until a KafkaTopic of that cluster is created in the broker, Ready, and then
# deleted with its topic.
run_operator() { # NAMESPACE CLUSTER [BOOTSTRAP]
  local ns="$1" name="$2" bootstrap="${3:-}" sa_token args
  sa_token="$(kapi POST /api/v1/namespaces/gregor-system/serviceaccounts/gregor/token \
    '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}' |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["status"]["token"])')"
  kubeconfig "$work/operator.kubeconfig" "$sa_token"
  h get manifest gregor -n gregor-system >"$work/manifest.yaml"
  mapfile -t args < <("$py" - "$work/manifest.yaml" "$metrics_port" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment":
        for a in d["spec"]["template"]["spec"]["containers"][0]["args"]:
            a = a.replace("$(POD_NAME)", "helm-check-0")
            if a.startswith("--metrics-addr="):
                a = f"--metrics-addr=127.0.0.1:{sys.argv[2]}"
            print(a)
PY
  )
  [[ -n "$bootstrap" ]] && args+=("--bootstrap-override=$ns/$name=$bootstrap")
  echo "gregor-operator ${args[*]}"
  KUBECONFIG="$work/operator.kubeconfig" RUST_LOG=info,kube=warn "$operator" "${args[@]}" \
    >"$work/operator-$ns.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  # Prometheus scraping this operator, for its dashboard and alert once the resources have
  # been reconciled (scripts/operator-dashboard-check.py).
  local check_pid="" dashboard_ok=1
  if [[ -n "$bootstrap" && -n "$test_py" ]]; then
    rm -f "$work/dashboard-check".{scraping,go}
    "$test_py" scripts/operator-dashboard-check.py "127.0.0.1:$metrics_port" \
      "$work/dashboard-check" "$work/dashboard-check".{scraping,go} \
      >"$work/dashboard-check.log" 2>&1 &
    check_pid=$!
    pids+=("$check_pid")
    while [[ ! -e "$work/dashboard-check.scraping" ]] && kill -0 "$check_pid" 2>/dev/null; do
      sleep 0.2
    done
    [[ -e "$work/dashboard-check.scraping" ]] ||
      { cat "$work/dashboard-check.log" >&2; fail "Prometheus did not scrape the operator"; }
  fi
  # With spec.rack, so the operator binds the broker pods' ServiceAccount (as itself).
  kapi POST "/apis/gregor.dev/v1alpha1/namespaces/$ns/kafkaclusters" \
    "{\"apiVersion\":\"gregor.dev/v1alpha1\",\"kind\":\"KafkaCluster\",\"metadata\":{\"name\":\"$name\"},\"spec\":{\"replicas\":1,\"rack\":{\"topologyKey\":\"example.com/rack\"}}}" >/dev/null
  local reconciled=0
  for _ in $(seq 120); do
    if [[ "$(kapi GET "/apis/gregor.dev/v1alpha1/namespaces/$ns/kafkaclusters/$name" 2>/dev/null)" == *'"clusterId"'* ]] &&
      kapi GET "/apis/apps/v1/namespaces/$ns/statefulsets/$name" >/dev/null 2>&1; then
      reconciled=1
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    grep -qi forbidden "$work/operator-$ns.log" && break
    sleep 0.5
  done
  local topic_ok=1 rack_ok=0
  if [[ $reconciled == 1 && -n "$bootstrap" ]]; then
    topic_ok=0
    kafka_topic "$ns" "$name" "$bootstrap" "$pid" && kafka_user "$ns" "$name" "$pid" &&
      topic_ok=1
  fi
  if [[ -n "$check_pid" ]]; then
    dashboard_ok=0
    : >"$work/dashboard-check.go"
    wait "$check_pid" && dashboard_ok=1
    cat "$work/dashboard-check.log"
  fi
  [[ $reconciled == 1 ]] && rack_binding "$ns" "$name" "$pid" && rack_ok=1
  local leading=0
  [[ "$(kapi GET /apis/coordination.k8s.io/v1/namespaces/gregor-system/leases/gregor 2>/dev/null)" \
    =~ '"holderIdentity":'\ *'"helm-check-0"' ]] && leading=1
  # SIGTERM: the operator hands the Lease back on its way out, which needs update too.
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [[ $reconciled == 0 ]] || grep -qi 'forbidden' "$work/operator-$ns.log"; then
    tail -n 30 "$work/operator-$ns.log" | cut -c1-400 >&2
    fail "the operator, as the chart's ServiceAccount, did not reconcile $ns/$name"
  fi
  if [[ $topic_ok == 0 ]]; then
    tail -n 30 "$work/operator-$ns.log" | cut -c1-400 >&2
    fail "the operator, as the chart's ServiceAccount, did not create and delete a KafkaTopic and a KafkaUser in $ns"
  fi
  if [[ $rack_ok == 0 ]]; then
    tail -n 30 "$work/operator-$ns.log" | cut -c1-400 >&2
    fail "the operator, as the chart's ServiceAccount, did not bind and unbind the broker pods of $ns/$name"
  fi
  [[ $dashboard_ok == 1 ]] ||
    fail "the operator's dashboard and alert did not evaluate in Prometheus against $ns/$name"
  [[ $leading == 1 ]] || fail "the operator did not hold the Lease gregor-system/gregor"
  [[ "$(kapi GET /apis/coordination.k8s.io/v1/namespaces/gregor-system/leases/gregor)" \
    == *'"holderIdentity"'* ]] && fail "the operator did not hand the Lease back on SIGTERM"
  echo "reconciled $ns/$name as system:serviceaccount:gregor-system:gregor, holding the Lease"
}

# Deletes the object at PATH and waits until it is gone (its finalizers run by the operator,
# PID); fails when the operator exits first or the object stays.
delete_and_wait() { # PATH PID
  local path="$1" pid="$2" i
  kapi DELETE "$path" >/dev/null
  for i in $(seq 120); do
    kapi GET "$path" >/dev/null 2>&1 || return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

# The rack binding of NAMESPACE/CLUSTER (reconciled by the operator, PID): the broker pods'
# ServiceAccount bound to the chart's broker-rack ClusterRole; then the KafkaCluster deleted,
# which its finalizer holds until the operator has deleted the binding.
rack_binding() { # NAMESPACE CLUSTER PID
  local ns="$1" cluster="$2" pid="$3" binding path
  binding="/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/gregor-rack.$ns.$cluster"
  path="/apis/gregor.dev/v1alpha1/namespaces/$ns/kafkaclusters/$cluster"
  kapi GET "/api/v1/namespaces/$ns/serviceaccounts/$cluster-broker" >/dev/null || return 1
  "$py" -c '
import json, sys
b = json.load(sys.stdin)
ok = b["roleRef"]["name"] == "gregor-broker-rack" and b["subjects"] == [
    {"kind": "ServiceAccount", "name": sys.argv[2] + "-broker", "namespace": sys.argv[1]}]
sys.exit(0 if ok else 1)' "$ns" "$cluster" < <(kapi GET "$binding") || return 1
  echo "ClusterRoleBinding gregor-rack.$ns.$cluster binds $ns/$cluster-broker to gregor-broker-rack"
  delete_and_wait "$path" "$pid" || { echo "the KafkaCluster was not removed" >&2; return 1; }
  kapi GET "$binding" >/dev/null 2>&1 && { echo "the binding outlived its cluster" >&2; return 1; }
  echo "KafkaCluster $ns/$cluster deleted after its binding ($(( $(date +%s) - t0 ))s)"
}

# A KafkaTopic of NAMESPACE/CLUSTER, created then deleted while the operator (PID) runs: the
# topic must appear in the broker at BOOTSTRAP with Ready=True, then go with the resource.
ready_py='import json, sys
conditions = json.load(sys.stdin).get("status", {}).get("conditions", [])
print(next((c["status"] for c in conditions if c["type"] == "Ready"), "Unknown"))'
# Waits (60 s at most) until the object at PATH is Ready=True; fails when the operator (PID)
# exits first.
await_ready() { # PATH PID
  local path="$1" pid="$2" i
  for i in $(seq 120); do
    [[ "$(kapi GET "$path" 2>/dev/null | "$py" -c "$ready_py" 2>/dev/null)" == True ]] &&
      return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.5
  done
  return 0
}
kafka_topic() { # NAMESPACE CLUSTER BOOTSTRAP PID
  local ns="$1" cluster="$2" bootstrap="$3" pid="$4" path topics
  path="/apis/gregor.dev/v1alpha1/namespaces/$ns/kafkatopics"
  kapi POST "$path" "{\"apiVersion\":\"gregor.dev/v1alpha1\",\"kind\":\"KafkaTopic\",\"metadata\":{\"name\":\"helm-check\"},\"spec\":{\"cluster\":\"$cluster\",\"partitions\":2,\"replicationFactor\":1}}" >/dev/null
  await_ready "$path/helm-check" "$pid" || return 1
  topics="$("$gregor" topics --bootstrap-server "$bootstrap" --list 2>&1)" || return 1
  [[ $'\n'"$topics"$'\n' == *$'\n'helm-check$'\n'* ]] || { echo "topics: $topics" >&2; return 1; }
  echo "KafkaTopic $ns/helm-check is Ready and its topic exists ($(( $(date +%s) - t0 ))s)"
  [[ "$(kapi GET "$path/helm-check" | "$py" -c "$ready_py")" == True ]] || return 1
  delete_and_wait "$path/helm-check" "$pid" ||
    { echo "the KafkaTopic was not removed" >&2; return 1; }
  topics="$("$gregor" topics --bootstrap-server "$bootstrap" --list 2>&1)" || return 1
  [[ $'\n'"$topics"$'\n' == *$'\n'helm-check$'\n'* ]] && { echo "topic left: $topics" >&2; return 1; }
  echo "KafkaTopic $ns/helm-check deleted, and its topic with it ($(( $(date +%s) - t0 ))s)"
}

# A KafkaUser of NAMESPACE/CLUSTER with a generated SCRAM password and a quota, created then
# deleted while the operator (PID) runs: Ready with its Secret written, then gone with the
# Secret (the KafkaUser controller's calls: users, their status and finalizers, Secrets).
kafka_user() { # NAMESPACE CLUSTER PID
  local ns="$1" cluster="$2" pid="$3" path
  path="/apis/gregor.dev/v1alpha1/namespaces/$ns/kafkausers"
  kapi POST "$path" "{\"apiVersion\":\"gregor.dev/v1alpha1\",\"kind\":\"KafkaUser\",\"metadata\":{\"name\":\"helm-check\"},\"spec\":{\"cluster\":\"$cluster\",\"authentication\":{\"type\":\"scram-sha-512\"},\"quotas\":{\"producerByteRate\":1048576}}}" >/dev/null
  await_ready "$path/helm-check" "$pid" || return 1
  [[ "$(kapi GET "$path/helm-check" | "$py" -c "$ready_py")" == True ]] ||
    { echo "the KafkaUser never became Ready" >&2; return 1; }
  kapi GET "/api/v1/namespaces/$ns/secrets/helm-check" | "$py" -c '
import json, sys
sys.exit(0 if {"password", "sasl.jaas.config"} <= set(json.load(sys.stdin)["data"]) else 1)' ||
    { echo "the KafkaUser's Secret lacks its password" >&2; return 1; }
  echo "KafkaUser $ns/helm-check is Ready with its Secret ($(( $(date +%s) - t0 ))s)"
  delete_and_wait "$path/helm-check" "$pid" ||
    { echo "the KafkaUser was not removed" >&2; return 1; }
  echo "KafkaUser $ns/helm-check deleted ($(( $(date +%s) - t0 ))s)"
}

say "gregor dev (a broker for the KafkaTopic)"
read -r kafka_port kafka_metrics_port <<<"$(python3 scripts/free-port.py 2)"
"$gregor" dev --data-dir "$work/broker" \
  --override "listeners=PLAINTEXT://127.0.0.1:$kafka_port" \
  --override "advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port" \
  --override "metrics.listener=127.0.0.1:$kafka_metrics_port" >"$work/gregor.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
  [[ "$(curl -s "http://127.0.0.1:$kafka_metrics_port/readyz" 2>/dev/null)" == ready* ]] && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$kafka_metrics_port/readyz" >/dev/null ||
  { tail -n 20 "$work/gregor.log" >&2; fail "gregor dev not ready"; }

say "helm install gregor $chart -n gregor-system --create-namespace (cluster-wide)"
h install gregor "$chart" -n gregor-system --create-namespace >/dev/null
[[ "$(h status gregor -n gregor-system)" == *"STATUS: deployed"* ]] || fail "helm install"
for ns in demo a; do
  kapi POST /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}" >/dev/null
done
run_operator demo demo "127.0.0.1:$kafka_port"

say "helm upgrade --set watchNamespaces={a}"
h upgrade gregor "$chart" -n gregor-system --set 'watchNamespaces={a}' >/dev/null
kapi GET /apis/rbac.authorization.k8s.io/v1/clusterroles/gregor >/dev/null 2>&1 &&
  fail "the ClusterRole outlived watchNamespaces"
run_operator a in-a
say "OK: $chart"
