#!/usr/bin/env bash
# Validate the deployment examples in deploy/ without a cluster or a Docker
# engine (loopback and package registries only):
#   1. deploy/compose/docker-compose.yml passes `docker-compose config`
#      (Debian package docker-compose; it checks the file against the Compose
#      schema and interpolates .env.example; no daemon is contacted);
#   2. every manifest in deploy/kubernetes/ passes `kubernetes-validate
#      --strict` against Kubernetes $K8S_VERSION (schemas ship in the PyPI
#      package, so this is offline);
#   3. the TOML inside the ConfigMap and deploy/compose/replay-guard.toml pass
#      `replay-guard check` (dummy secrets in the environment);
#   4. a few cross-file rules hold (only replay-guard's public port is
#      published or in the Service, the grace period covers the drain, the
#      rate-limit `replicas` match the Deployment, the IAM policies parse);
#   5. deploy/kubernetes-native-sidecar/ (replay-guard as a native sidecar,
#      Kubernetes >= 1.29) passes `kubernetes-validate --strict` and its own
#      rules (init container with restartPolicy Always and a startupProbe,
#      the same probes and security context, the shared ConfigMap).
#
# Installs what is missing: docker-compose (apt-get, needs root) and
# kubernetes-validate (pip, into a private --target folder, so it works on a
# PEP 668 "externally managed" Python too).
#
# Environment:
#   REPLAY_GUARD_BIN   replay-guard binary to run `check` with
#                      (default: `cargo run --quiet --locked --`)
#   K8S_VERSION        Kubernetes version to validate against (default 1.30.0)
#   TOOLS_DIR          where kubernetes-validate is installed
#                      (default ~/.cache/replay-guard/validate-tools)
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION="${K8S_VERSION:-1.30.0}"
KUBERNETES_VALIDATE_VERSION="1.37.0"   # bundles schemas for Kubernetes 1.25–1.37
TOOLS_DIR="${TOOLS_DIR:-${HOME:-/root}/.cache/replay-guard/validate-tools}"
KV_DIR="$TOOLS_DIR/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
COMPOSE_DIR=deploy/compose
KUBE_DIR=deploy/kubernetes
SIDECAR_DIR=deploy/kubernetes-native-sidecar

failures=()
fail() {
  echo "FAIL: $*" >&2
  failures+=("$*")
}
die() {
  echo "validate.sh: $*" >&2
  exit 1
}

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# ---------------------------------------------------------------- installs
apt_updated=false
apt_install() {
  local pkg="$1"
  [ "$(id -u)" = 0 ] || die "$pkg is missing and installing it needs root: apt-get install -y $pkg"
  command -v apt-get >/dev/null 2>&1 || die "$pkg is missing and there is no apt-get to install it"
  if ! $apt_updated; then
    echo "==> apt-get update"
    apt-get update -qq >"$scratch/apt.log" 2>&1 || { cat "$scratch/apt.log" >&2; die "apt-get update failed"; }
    apt_updated=true
  fi
  local candidate
  candidate="$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')"
  if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
    die "Debian package $pkg is not available here (apt-cache policy $pkg shows no candidate)"
  fi
  echo "==> installing $pkg $candidate (apt-get)"
  DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq "$pkg" \
    >"$scratch/apt.log" 2>&1 || { cat "$scratch/apt.log" >&2; die "apt-get install -y $pkg failed"; }
}

command -v python3 >/dev/null 2>&1 || apt_install python3
if ! command -v docker-compose >/dev/null 2>&1; then
  apt_install docker-compose
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  apt_install python3-pip
fi
tools_ready() {
  # The pinned copy in $KV_DIR, not whatever else is on sys.path.
  PYTHONPATH="$KV_DIR" python3 -c '
import os, sys, kubernetes_validate, yaml
assert kubernetes_validate.__file__.startswith(sys.argv[1])
try:
    import tomllib
except ImportError:
    import tomli' "$KV_DIR" >/dev/null 2>&1
}
if ! tools_ready; then
  echo "==> installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (pip, into $KV_DIR)"
  rm -rf "$KV_DIR"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$KV_DIR" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" pyyaml \
    'tomli; python_version < "3.11"' \
    || die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
fi
py() { PYTHONPATH="$KV_DIR${PYTHONPATH:+:$PYTHONPATH}" python3 "$@"; }

# ------------------------------------------------------- 1. docker-compose
echo "==> docker-compose config ($COMPOSE_DIR/docker-compose.yml, env from .env.example, no Docker engine)"
echo "    $(docker-compose version --short 2>/dev/null || docker-compose version | head -1)"
# Point at a socket that cannot exist: `config` must never need a daemon.
if DOCKER_HOST="unix://$scratch/no-docker-daemon.sock" \
  docker-compose --env-file "$COMPOSE_DIR/.env.example" \
  -f "$COMPOSE_DIR/docker-compose.yml" config >"$scratch/compose.resolved.yml" 2>"$scratch/compose.err"; then
  echo "    ok"
else
  cat "$scratch/compose.err" >&2
  fail "docker-compose config rejected $COMPOSE_DIR/docker-compose.yml"
fi

# --------------------------------------------------- 2. kubernetes-validate
manifests=("$KUBE_DIR"/*.yaml)
echo "==> kubernetes-validate --strict -k $K8S_VERSION (${#manifests[@]} files)"
if py -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"; then
  echo "    ok: ${manifests[*]##*/}"
else
  fail "kubernetes-validate --strict -k $K8S_VERSION rejected a manifest in $KUBE_DIR"
fi

# ------------------------------------------------------ 3. replay-guard check
if [ -n "${REPLAY_GUARD_BIN:-}" ]; then
  rg=("$REPLAY_GUARD_BIN")
else
  command -v cargo >/dev/null 2>&1 || die "cargo not found: set REPLAY_GUARD_BIN to a replay-guard binary"
  rg=(cargo run --quiet --locked --)
fi
if ! py - "$KUBE_DIR/configmap.yaml" "$scratch/kubernetes.toml" <<'EOF'
import sys, yaml
src, dst = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(src)) if d]
cms = [d for d in docs if d.get("kind") == "ConfigMap"]
if len(cms) != 1 or "replay-guard.toml" not in (cms[0].get("data") or {}):
    sys.exit(f"{src}: expected one ConfigMap with data['replay-guard.toml']")
open(dst, "w").write(cms[0]["data"]["replay-guard.toml"])
# Where the block starts in the YAML, to map check's line numbers back.
for n, line in enumerate(open(src), 1):
    if line.strip().startswith("replay-guard.toml:"):
        open(dst + ".line", "w").write(str(n))
EOF
then
  fail "could not extract the TOML from $KUBE_DIR/configmap.yaml"
fi
for toml in "$scratch/kubernetes.toml" "$COMPOSE_DIR/replay-guard.toml"; do
  label="$toml"
  [ "$toml" = "$scratch/kubernetes.toml" ] && label="$KUBE_DIR/configmap.yaml data[replay-guard.toml]"
  echo "==> replay-guard check: $label"
  [ -f "$toml" ] || continue
  if env BILLING_SVC_SECRET=validate-dummy-secret BILLING_SVC_SECRET_OLD= \
    AWS_EC2_METADATA_DISABLED=true "${rg[@]}" check --config "$toml" >"$scratch/check.out" 2>&1; then
    if grep -q ': warning: ' "$scratch/check.out"; then
      grep ': warning: ' "$scratch/check.out" >&2
      fail "replay-guard check warns about $label (an example to copy must not)"
    fi
    echo "    $(grep -v ': warning: ' "$scratch/check.out" | head -1)"
  else
    cat "$scratch/check.out" >&2
    if [ -f "$toml.line" ]; then
      echo "    (line N of the extracted TOML is line N+$(cat "$toml.line") of $KUBE_DIR/configmap.yaml)" >&2
    fi
    fail "replay-guard check rejected $label"
  fi
done

# ------------------------------------------------------- 4. cross-file rules
echo "==> cross-file rules"
if ! py - "$scratch/compose.resolved.yml" "$KUBE_DIR" "$scratch/kubernetes.toml" "$COMPOSE_DIR/replay-guard.toml" <<'EOF'
import glob, json, os, sys, yaml
try:
    import tomllib
except ImportError:
    import tomli as tomllib

compose_file, kube_dir, kube_toml, compose_toml = sys.argv[1:5]
problems = []

def port_target(p):
    if isinstance(p, dict):
        return int(p.get("target")), p.get("published")
    s = str(p).split("/")[0]          # "HOST:CONTAINER" or "IP:HOST:CONTAINER"
    parts = s.split(":")
    return int(parts[-1]), (parts[-2] if len(parts) > 1 else None)

# Compose: only replay-guard publishes a port, and only 8080.
if os.path.getsize(compose_file):
    services = (yaml.safe_load(open(compose_file)) or {}).get("services", {})
    for name, svc in services.items():
        ports = svc.get("ports") or []
        if name != "replay-guard" and ports:
            problems.append(f"compose: service {name} publishes {ports}; only replay-guard may")
        if name == "replay-guard" and [port_target(p)[0] for p in ports] != [8080]:
            problems.append(f"compose: replay-guard must publish exactly its public port 8080, has {ports}")

# Kubernetes.
docs = []
for path in sorted(glob.glob(os.path.join(kube_dir, "*.yaml"))):
    docs += [(path, d) for d in yaml.safe_load_all(open(path)) if d]
by_kind = {}
for path, d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
cfg = tomllib.load(open(kube_toml, "rb")) if os.path.getsize(kube_toml) else {}
store = cfg.get("store", {})
if store.get("kind") != "dynamodb":
    problems.append("configmap: store.kind must be \"dynamodb\" (replicas share one table)")
if "endpoint_url" in store.get("dynamodb", {}):
    problems.append("configmap: real AWS needs no store.dynamodb.endpoint_url")
if not cfg.get("server", {}).get("admin_listen", "").endswith(":9901"):
    problems.append("configmap: admin_listen must be on port 9901 (the probes' port)")
grace = cfg.get("server", {}).get("shutdown_grace_secs", 20)

for dep in by_kind.get("Deployment", []):
    spec = dep["spec"]["template"]["spec"]
    rg = [c for c in spec["containers"] if c["name"] == "replay-guard"]
    if not rg:
        problems.append("deployment: no replay-guard container")
        continue
    rg = rg[0]
    pre = ((rg.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    if tgps <= pre + grace:
        problems.append(f"deployment: terminationGracePeriodSeconds {tgps} must exceed preStop {pre} + shutdown_grace_secs {grace}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (rg.get(probe) or {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("admin", 9901):
            problems.append(f"deployment: replay-guard {probe} must GET {path} on the admin port")
    sc = rg.get("securityContext") or {}
    want = {"runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False}
    for k, v in want.items():
        if sc.get(k) != v:
            problems.append(f"deployment: replay-guard securityContext.{k} must be {v}")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        problems.append("deployment: replay-guard must drop ALL capabilities")
    if "limits" not in (rg.get("resources") or {}):
        problems.append("deployment: replay-guard needs resource limits")
    replicas = dep["spec"].get("replicas", 1)
    for route in cfg.get("routes", []):
        rl = route.get("rate_limit")
        if rl and rl.get("replicas", 1) != replicas:
            problems.append(f"configmap: route {route.get('name')} rate_limit.replicas {rl.get('replicas', 1)} != Deployment replicas {replicas}")
    legacy_ports = [p for c in spec["containers"] if c["name"] != "replay-guard" for p in c.get("ports", [])]
    if legacy_ports:
        problems.append(f"deployment: the legacy container declares ports {legacy_ports}; only replay-guard's are reachable")

for svc in by_kind.get("Service", []):
    targets = [p.get("targetPort") for p in svc["spec"].get("ports", [])]
    if targets not in (["http"], [8080]):
        problems.append(f"service {svc['metadata']['name']}: must expose only replay-guard's public port, has targetPorts {targets}")
if not by_kind.get("PodDisruptionBudget"):
    problems.append("kubernetes: no PodDisruptionBudget")
if not any("eks.amazonaws.com/role-arn" in (sa["metadata"].get("annotations") or {})
           for sa in by_kind.get("ServiceAccount", [])):
    problems.append("kubernetes: no ServiceAccount with the IRSA annotation eks.amazonaws.com/role-arn")

# IAM policies: valid JSON, dynamodb actions only, on a table ARN.
for path in sorted(glob.glob(os.path.join(kube_dir, "iam", "*.json"))):
    try:
        doc = json.load(open(path))
        for st in doc["Statement"]:
            for a in st["Action"]:
                if not a.startswith("dynamodb:") or "*" in a:
                    problems.append(f"{path}: {a} is not a single dynamodb action")
            if ":table/" not in st["Resource"]:
                problems.append(f"{path}: Resource must be the table ARN")
    except (ValueError, KeyError, TypeError) as e:
        problems.append(f"{path}: not a valid IAM policy document: {e!r}")

for p in problems:
    print(f"    {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print("    ok")
EOF
then
  fail "cross-file rules (see above)"
fi

# --------------------------------------------------- 5. native sidecar
sidecar_manifests=("$SIDECAR_DIR"/*.yaml)
# Native sidecars need Kubernetes 1.29: never validate them against less.
SIDECAR_K8S_VERSION="$(py -c 'import sys
v = tuple(int(x) for x in sys.argv[1].split("."))
print(sys.argv[1] if v >= (1, 29) else "1.29.0")' "$K8S_VERSION")"
echo "==> kubernetes-validate --strict -k $SIDECAR_K8S_VERSION ($SIDECAR_DIR, ${#sidecar_manifests[@]} files)"
if py -m kubernetes_validate --strict --quiet -k "$SIDECAR_K8S_VERSION" "${sidecar_manifests[@]}"; then
  echo "    ok: ${sidecar_manifests[*]##*/}"
else
  fail "kubernetes-validate --strict -k $SIDECAR_K8S_VERSION rejected a manifest in $SIDECAR_DIR"
fi
echo "==> native sidecar rules"
if ! py - "$SIDECAR_DIR" "$KUBE_DIR" "$scratch/kubernetes.toml" <<'EOF'
import glob, os, sys, yaml
try:
    import tomllib
except ImportError:
    import tomli as tomllib
sidecar_dir, kube_dir, kube_toml = sys.argv[1:4]
problems = []
cfg = tomllib.load(open(kube_toml, "rb")) if os.path.getsize(kube_toml) else {}
grace = cfg.get("server", {}).get("shutdown_grace_secs", 20)
configmaps = {d["metadata"]["name"] for p in glob.glob(os.path.join(kube_dir, "*.yaml"))
              for d in yaml.safe_load_all(open(p)) if d and d.get("kind") == "ConfigMap"}
deps = [d for p in sorted(glob.glob(os.path.join(sidecar_dir, "*.yaml")))
        for d in yaml.safe_load_all(open(p)) if d and d.get("kind") == "Deployment"]
if len(deps) != 1:
    problems.append(f"{sidecar_dir}: expected one Deployment, found {len(deps)}")
for dep in deps:
    spec = dep["spec"]["template"]["spec"]
    if any(c["name"] == "replay-guard" for c in spec.get("containers", [])):
        problems.append("native sidecar: replay-guard must be an init container, not in containers")
    rg = [c for c in spec.get("initContainers", []) if c["name"] == "replay-guard"]
    if not rg:
        problems.append("native sidecar: no replay-guard init container")
        continue
    rg = rg[0]
    if rg.get("restartPolicy") != "Always":
        problems.append("native sidecar: replay-guard needs restartPolicy: Always")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (rg.get(probe) or {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("admin", 9901):
            problems.append(f"native sidecar: replay-guard {probe} must GET {path} on the admin port")
    sc = rg.get("securityContext") or {}
    for k, v in {"runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True,
                 "allowPrivilegeEscalation": False}.items():
        if sc.get(k) != v:
            problems.append(f"native sidecar: replay-guard securityContext.{k} must be {v}")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        problems.append("native sidecar: replay-guard must drop ALL capabilities")
    if "limits" not in (rg.get("resources") or {}):
        problems.append("native sidecar: replay-guard needs resource limits")
    for vol in spec.get("volumes", []):
        name = (vol.get("configMap") or {}).get("name")
        if name and name not in configmaps:
            problems.append(f"native sidecar: ConfigMap {name} is not one of {kube_dir}'s {sorted(configmaps)}")
    pre = max([((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
               for c in spec.get("containers", [])] or [0])
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    if tgps <= pre + grace:
        problems.append(f"native sidecar: terminationGracePeriodSeconds {tgps} must exceed the legacy preStop {pre} + shutdown_grace_secs {grace}")
    replicas = dep["spec"].get("replicas", 1)
    for route in cfg.get("routes", []):
        rl = route.get("rate_limit")
        if rl and rl.get("replicas", 1) != replicas:
            problems.append(f"native sidecar: route {route.get('name')} rate_limit.replicas != Deployment replicas {replicas}")
for p in problems:
    print(f"    {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print("    ok")
EOF
then
  fail "native sidecar rules (see above)"
fi

if [ "${#failures[@]}" -gt 0 ]; then
  echo >&2
  echo "deploy/validate.sh: ${#failures[@]} check(s) failed:" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "deploy/validate.sh: all deployment examples valid (Kubernetes $K8S_VERSION)"
