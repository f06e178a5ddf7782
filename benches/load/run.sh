#!/usr/bin/env bash
# `make bench-load`: raft-injector's /mutate and /validate against agnhost, the Go webhook the
# Kubernetes e2e tests use (built from the same k8s.io/kubernetes pin as the local control
# plane), driven by the same client (oha) with the same AdmissionReviews, side by side in one
# run. Both servers are pinned to CPU 1 and the client to CPU 0, and each row alternates short
# slices of one and the other (ABBA order), so that the host's bursts of noise fall on both
# sides of a ratio. Prints one table: req/s, latency percentiles, server CPU per request, and
# the raft/agnhost ratio per row with the range of its rounds' ratios.
# Then: the webhook's latency as kube-apiserver records it during a burst of dry-run applies,
# and the webhook's RSS idle, after load, with a large cluster cached, and started in it.
#
#   benches/load/run.sh [DIR]      (DIR: work directory, default .run/bench-load)
#
# Every loop is bounded: BENCH_ROUNDS rounds per row (default 3) of BENCH_SECONDS per server
# (default 2), BENCH_SOAK_REQUESTS for the memory check (default 1000000), BENCH_APPLIES for
# the dry-run applies through kube-apiserver (default 2000), BENCH_LARGE=0 to skip the
# large-cluster step. All traffic stays on 127.0.0.1.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${1:-$repo/.run/bench-load}
seconds=${BENCH_SECONDS:-2}
rounds=${BENCH_ROUNDS:-3}
soak=${BENCH_SOAK_REQUESTS:-1000000}
large=${BENCH_LARGE:-1}
applies=${BENCH_APPLIES:-2000}
cache=${RAFT_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raft-injector}
controlplane=$repo/tests/controlplane/run.sh
oha_version=1.16.0

log() { printf '[bench-load] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
(($(nproc) >= 2)) || die "needs 2 CPUs: one for the server, one for the client"

# --- Tools, built once and cached by their sources -------------------------------------------
agnhost_bin() {
  local key
  key=$(cat "$repo/benches/load/agnhost/go.mod" "$repo/benches/load/agnhost/go.sum" | sha256sum | cut -c1-16)
  local bin=$cache/agnhost-$key
  if [[ ! -x $bin ]]; then
    log "building agnhost from k8s.io/kubernetes (first run only)"
    mkdir -p "$cache"
    (cd "$repo/benches/load/agnhost" && CGO_ENABLED=0 GOSUMDB=off GOFLAGS=-mod=readonly \
      go build -trimpath -o "$bin.partial" k8s.io/kubernetes/test/images/agnhost) || die "agnhost build failed"
    mv "$bin.partial" "$bin"
  fi
  echo "$bin"
}
oha_bin() {
  local root=$cache/oha-$oha_version
  if [[ ! -x $root/bin/oha ]]; then
    log "installing oha $oha_version from crates.io (first run only)"
    cargo install --quiet --locked --root "$root" oha --version "$oha_version" >&2 || die "cargo install oha failed"
  fi
  echo "$root/bin/oha"
}

mkdir -p "$dir/logs"
agnhost=$(agnhost_bin)
oha=$(oha_bin)
(cd "$repo" && cargo build --quiet --locked --release --bins) || die "cargo build failed"
raft=$repo/target/release/raft-injector

# --- The local control plane, which the webhook's caches watch, and the inputs ---------------
# A fresh cluster each run (a kept one would still hold the last run's large cluster), and
# none left behind, whichever way the run ends.
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$controlplane" reset "$dir/cp" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$controlplane" reset "$dir/cp" >&2
"$controlplane" up "$dir/cp" >&2
export KUBECONFIG=$dir/cp/kubeconfig
"$raft" certs --ip 127.0.0.1 --out "$dir/certs" 2>/dev/null
python3 "$repo/benches/load/reviews.py" "$repo" "$raft" "$dir"
kubectl apply -f "$repo/examples/etcd.yaml" -n default >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_https() { # port path
  for _ in $(seq 1 100); do
    curl -sk -o /dev/null -X POST --data-binary @"$dir/create.json" "https://127.0.0.1:$1$2" && return
    sleep 0.1
  done
  die "no server on port $1"
}

# Each start_* sets $pid (not printed: a command substitution's subshell would lose $pids).
start_raft() {
  local port=$1 metrics
  metrics=$(free_port)
  taskset -c 1 "$raft" serve --addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$metrics" \
    --tls-cert "$dir/certs/tls.crt" --tls-key "$dir/certs/tls.key" --max-connections 4096 \
    >"$dir/logs/raft-injector.log" 2>&1 &
  pid=$!
  pids+=("$pid")
}
start_agnhost() {
  local port=$1
  taskset -c 1 "$agnhost" webhook --tls-cert-file "$dir/certs/tls.crt" \
    --tls-private-key-file "$dir/certs/tls.key" --port "$port" >"$dir/logs/agnhost.log" 2>&1 &
  pid=$!
  pids+=("$pid")
}

# One slice of a row: oha against one server; appends a JSON line to results.
measure() { # name server pid port path body http conns streams round
  local name=$1 server=$2 pid=$3 port=$4 path=$5 body=$6 http=$7 conns=$8 streams=$9 round=${10}
  local args=(-z "${seconds}s" -c "$conns" -m POST -T application/json -D "$body" --insecure
    --no-tui --output-format json)
  [[ $http == h2 ]] && args+=(--http2 -p "$streams")
  local before after
  before=$(cpu_ticks "$pid")
  taskset -c 0 "$oha" "${args[@]}" "https://127.0.0.1:$port$path" >"$dir/oha.json" 2>"$dir/logs/oha.log" \
    || die "oha failed: $(cat "$dir/logs/oha.log")"
  after=$(cpu_ticks "$pid")
  python3 - "$dir/oha.json" "$name" "$server" "$((after - before))" "$(getconf CLK_TCK)" "$round" >>"$dir/results.jsonl" <<'PY'
import json, sys
path, name, server, ticks, hz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
round_ = int(sys.argv[6])
r = json.load(open(path))
summary, pct = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k == "200")
total = sum(codes.values())
print(json.dumps({
    "row": name, "server": server, "round": round_, "seconds": summary["total"],
    "p50": pct["p50"] * 1e3, "p99": pct["p99"] * 1e3, "p999": pct.get("p99.9", pct["p99"]) * 1e3,
    "cpu_ticks": ticks, "hz": hz, "ok": ok, "total": total,
}))
PY
}

rows=(
  "h1 1 1" "h1 8 1" "h1 64 1"
  "h2 1 1" "h2 1 8" "h2 1 64"
)
: >"$dir/results.jsonl"
# Both servers run for the whole table (the idle one sleeps in epoll). Each row alternates
# slices, raft-injector first in odd rounds and agnhost first in even ones: this machine's
# cores are shared (the same server's req/s moves by 2x within a minute when the host is
# busy), and bursts of noise last seconds, so short alternating slices spread them over both
# sides of a row's ratio where one long run each would hand a burst to one side.
raft_port=$(free_port)
start_raft "$raft_port"
raft_pid=$pid
agnhost_port=$(free_port)
start_agnhost "$agnhost_port"
agnhost_pid=$pid
wait_https "$raft_port" /validate
wait_https "$agnhost_port" /always-deny
idle_rss=$(rss_kib "$raft_pid")
for webhook in mutate validate; do
  for kind in create update; do
    for row in "${rows[@]}"; do
      read -r http conns streams <<<"$row"
      label="$webhook $kind $http c=$conns s=$streams"
      log "$label"
      agnhost_path=$([[ $webhook == mutate ]] && echo /add-label || echo /always-deny)
      # server pid port path, for each side of the row
      sides=("raft-injector $raft_pid $raft_port /$webhook"
        "agnhost $agnhost_pid $agnhost_port $agnhost_path")
      for round in $(seq 1 "$rounds"); do
        order=("${sides[@]}")
        ((round % 2)) || order=("${sides[1]}" "${sides[0]}")
        for side in "${order[@]}"; do
          read -r side_server side_pid side_port side_path <<<"$side"
          measure "$label" "$side_server" "$side_pid" "$side_port" "$side_path" "$dir/$kind.json" \
            "$http" "$conns" "$streams" "$round"
        done
      done
    done
  done
done
loaded_rss=$(rss_kib "$raft_pid")
kill "$agnhost_pid"

python3 - "$dir/results.jsonl" <<'PY'
import json, sys
slices = [json.loads(l) for l in open(sys.argv[1])]
names = list(dict.fromkeys(s["row"] for s in slices))

def pooled(row, server):
    """A row's slices for one server, pooled: req/s over all of them, CPU per answered
    request, and each latency percentile as the request-weighted mean of the slices'."""
    mine = [s for s in slices if s["row"] == row and s["server"] == server]
    if not mine:
        return None
    ok = sum(s["ok"] for s in mine)
    weight = lambda key: sum(s[key] * s["ok"] for s in mine) / max(ok, 1)
    return {
        "rps": ok / sum(s["seconds"] for s in mine),
        "cpu_us": sum(s["cpu_ticks"] / s["hz"] for s in mine) * 1e6 / max(ok, 1),
        "p50": weight("p50"), "p99": weight("p99"), "p999": weight("p999"),
        "rounds": {s["round"]: s["ok"] / s["seconds"] for s in mine},
    }

print()
print("| case | raft req/s | agnhost req/s | ratio (rounds) | raft p50/p99/p99.9 ms | agnhost p50/p99/p99.9 ms | raft CPU µs/req | agnhost CPU µs/req | CPU ratio |")
print("|---|---:|---:|---:|---|---|---:|---:|---:|")
for n in names:
    a, b = pooled(n, "raft-injector"), pooled(n, "agnhost")
    if not a or not b:
        continue
    per_round = [a["rounds"][r] / b["rounds"][r] for r in a["rounds"] if r in b["rounds"]]
    lat = lambda r: f'{r["p50"]:.2f}/{r["p99"]:.2f}/{r["p999"]:.2f}'
    print(f'| {n} | {a["rps"]:,.0f} | {b["rps"]:,.0f} | {a["rps"]/b["rps"]:.2f}× '
          f'({min(per_round):.2f}–{max(per_round):.2f}) | {lat(a)} | {lat(b)} | '
          f'{a["cpu_us"]:.0f} | {b["cpu_us"]:.0f} | {a["cpu_us"]/b["cpu_us"]:.2f}× |')
for s in slices:
    if s["ok"] != s["total"]:
        print(f'note: {s["server"]} {s["row"]} round {s["round"]}: {s["total"] - s["ok"]} of {s["total"]} answers were not 200')
PY

# --- Through kube-apiserver: 8 concurrent appliers, dry run ----------------------------------
# The appliers are oha's 8 kept-alive connections doing server-side-apply dry runs of the
# example StatefulSet (an UPDATE through both webhooks each), as a ServiceAccount with `edit`
# in the namespace: a process per apply (kubectl) would spend the two cores on starting
# kubectl and measure that rather than the webhook. The burst runs twice: both webhooks
# served by raft-injector, then the mutating one served by agnhost's /add-label (the
# validating one stays raft-injector's), so the mutating webhook's histogram has a peer.
log "through kube-apiserver: 8 concurrent appliers, $applies dry-run applies"
kubectl create namespace bench --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace bench raft-injector.io/injection=enabled --overwrite >/dev/null
kubectl create serviceaccount bench-load -n bench --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create rolebinding bench-load -n bench --clusterrole=edit --serviceaccount=bench:bench-load \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
token=$(kubectl create token bench-load -n bench --duration=1h)
kubectl create --dry-run=client -o json -n bench -f "$repo/examples/etcd.yaml" | python3 -c '
import json, sys
text, at, dec = sys.stdin.read(), 0, json.JSONDecoder()
while text[at:].strip():
    doc, at = dec.raw_decode(text, len(text) - len(text[at:].lstrip()))
    if doc["kind"] == "StatefulSet":
        json.dump(doc, sys.stdout)' >"$dir/statefulset.json"
apiserver=$(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}')
histogram() {
  kubectl get --raw /metrics | grep '^apiserver_admission_webhook_admission_duration_seconds_bucket' \
    | grep 'raft-injector.io' || true
}
burst() { # label mutating-URL
  python3 - "$repo/manifests/base/webhooks.yaml" "$raft_port" "$2" "$dir/certs/ca.crt" "$dir" <<'PY'
import base64, json, subprocess, sys
shipped, port, mutating, ca, out = sys.argv[1:6]
text = subprocess.run(["kubectl", "create", "--dry-run=client", "-o", "json", "-f", shipped],
                      check=True, capture_output=True, text=True).stdout
docs, at, dec = [], 0, json.JSONDecoder()
while text[at:].strip():
    doc, at = dec.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
    docs.append(doc)
bundle = base64.b64encode(open(ca, "rb").read()).decode()
for doc in docs:
    for hook in doc["webhooks"]:
        url = f"https://127.0.0.1:{port}{hook['clientConfig']['service']['path']}"
        if doc["kind"] == "MutatingWebhookConfiguration":
            url = mutating
        hook["clientConfig"] = {"url": url, "caBundle": bundle}
json.dump({"apiVersion": "v1", "kind": "List", "items": docs}, open(f"{out}/webhooks.json", "w"))
PY
  kubectl apply -f "$dir/webhooks.json" >/dev/null
  kubectl apply -n bench -f "$repo/examples/etcd.yaml" >/dev/null 2>&1 || true
  histogram >"$dir/histogram-before.txt"
  "$oha" -n "$applies" -c 8 -m PATCH -T application/apply-patch+yaml -D "$dir/statefulset.json" \
    -H "Authorization: Bearer $token" --insecure --no-tui --output-format json \
    "$apiserver/apis/apps/v1/namespaces/bench/statefulsets/etcd?dryRun=All&fieldManager=bench-load&force=true" \
    >"$dir/applies.json" 2>"$dir/logs/oha-applies.log" || die "applies failed: $(cat "$dir/logs/oha-applies.log")"
  histogram >"$dir/histogram-after.txt"
  python3 - "$dir/applies.json" "$dir/histogram-before.txt" "$dir/histogram-after.txt" "$1" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1]))
codes, pct = r.get("statusCodeDistribution", {}), r["latencyPercentiles"]
if set(codes) != {"200"}:
    sys.exit(f"some applies were not answered 200: {codes}")
def read(path):
    out = {}
    for line in open(path):
        m = re.match(r'.*name="([^"]+)".*le="([^"]+)".*\} (\S+)', line)
        if m:
            out.setdefault(m.group(1), {})
            out[m.group(1)][m.group(2)] = out[m.group(1)].get(m.group(2), 0) + float(m.group(3))
    return out
before, after = read(sys.argv[2]), read(sys.argv[3])
print(f"\n{sys.argv[4]}: {sum(codes.values())} applies, {r['summary']['requestsPerSec']:.0f}/s, "
      f"p50 {pct['p50'] * 1e3:.1f} ms, p99 {pct['p99'] * 1e3:.1f} ms as the appliers saw them")
for name, buckets in sorted(after.items()):
    delta = sorted(((float(le), n - before.get(name, {}).get(le, 0)) for le, n in buckets.items()),
                   key=lambda x: x[0])
    total = delta[-1][1]
    if not total:
        continue
    p99 = next(le for le, n in delta if n >= 0.99 * total)
    shown = ", ".join(f"≤{le:g}s: {int(n)}" for le, n in delta if le != float("inf"))
    print(f"  {name}: {int(total)} calls; p99 in the ≤{p99:g}s bucket ({shown})")
PY
}
echo
echo "kube-apiserver's apiserver_admission_webhook_admission_duration_seconds during each burst ($applies dry-run applies, 8 at a time):"
burst "both webhooks raft-injector" "https://127.0.0.1:$raft_port/mutate"
port=$(free_port)
start_agnhost "$port"
agnhost_pid=$pid
wait_https "$port" /always-deny
burst "mutating webhook agnhost /add-label" "https://127.0.0.1:$port/add-label"
kill "$agnhost_pid"

# --- Memory -------------------------------------------------------------------------------------
log "memory: $soak requests"
taskset -c 0 "$oha" -n "$soak" -c 8 -m POST -T application/json -D "$dir/update.json" --insecure --no-tui \
  --output-format json "https://127.0.0.1:$raft_port/mutate" >/dev/null 2>&1 || die "soak failed"
soaked_rss=$(rss_kib "$raft_pid")
# RSS once it has been steady (within 1%) for 3 s in a row, at most 60 s.
steady_rss_kib() {
  local last=0 steady=0 now
  for _ in $(seq 1 60); do
    now=$(rss_kib "$1")
    if ((now - last < last / 100 && last - now < last / 100)); then steady=$((steady + 1)); else steady=0; fi
    ((steady >= 3)) && break
    last=$now
    sleep 1
  done
  rss_kib "$1"
}
large_rss=skipped restart_rss=skipped
if [[ $large == 1 ]]; then
  log "a large cluster: 10,000 Services and 2,000 StatefulSets in 20 namespaces"
  python3 "$repo/benches/load/large_cluster.py" "$dir/large"
  for f in "$dir"/large/*.json; do kubectl create -f "$f" >/dev/null; done
  # The running webhook receives them as watch events; a webhook (re)started in such a
  # cluster lists them all at once instead.
  large_rss=$(steady_rss_kib "$raft_pid")
  log "a webhook started in the large cluster"
  kill "$raft_pid"
  port=$(free_port)
  start_raft "$port"
  wait_https "$port" /validate
  for _ in $(seq 1 600); do grep -q "caches synced" "$dir/logs/raft-injector.log" && break; sleep 0.1; done
  restart_rss=$(steady_rss_kib "$pid")
fi
printf '\nraft-injector RSS: idle %s KiB, after the table %s KiB, after %s more requests %s KiB, with the large cluster cached %s KiB, started in the large cluster %s KiB\n' \
  "$idle_rss" "$loaded_rss" "$soak" "$soaked_rss" "$large_rss" "$restart_rss"
