#!/usr/bin/env bash
# Loopback abuse run of the Worker (attack.py does the abuse): a local registry, the relay, a native public peer and the
# Worker under `wrangler dev`, then the Worker's API through curl: info, ping, a stream to the
# peer's echo port, a data exchange message. Every process binds 127.0.0.1 and is stopped on
# exit (trap), so the run ends on its own; each curl has a time limit.
#
# Needs: `make worker` done (build/worker/shim.mjs), `npm ci` in worker-shim, curl, python3.
# Usage: scripts/smoke.sh            (from worker-shim/, or via `make worker-smoke`)
#        SMOKE_KEEP_LOGS=/tmp/logs scripts/smoke.sh   keeps every process's log
#        SMOKE_ALARM=1 scripts/smoke.sh                also waits for the 60 s heartbeat alarm
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
work="$(mktemp -d)"
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${SMOKE_KEEP_LOGS:-}" ]; then
    mkdir -p "$SMOKE_KEEP_LOGS" && cp "$work"/*.log "$SMOKE_KEEP_LOGS"/ 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "SMOKE FAILED: $*" >&2
  for log in "$work"/*.log; do echo "--- $log" >&2; tail -n 40 "$log" >&2; done
  exit 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits up to 30 s for a regex in a log file, prints the first match.
wait_for_log() {
  local file="$1" pattern="$2"
  for _ in $(seq 1 300); do
    if grep -Eo "$pattern" "$file" 2>/dev/null | head -n 1; then return 0; fi
    sleep 0.1
  done
  fail "no '$pattern' in $file"
}

[ -f "$here/build/worker/shim.mjs" ] || fail "build/worker/shim.mjs missing: run 'make worker' first"
cargo build --quiet -p conformance -p pilot-relay --bins

"$bin/pilot-registry" --listen 127.0.0.1:0 >"$work/registry.log" 2>&1 &
pids+=($!)
registry="$(wait_for_log "$work/registry.log" 'listening on 127\.0\.0\.1:[0-9]+' | awk '{print $3}')"
echo "registry  $registry"

relay_port="$(free_port)"
"$bin/pilot-relay" --listen "127.0.0.1:$relay_port" --open --udp-bind-ip 127.0.0.1 \
  --allow-dest 127.0.0.0/8 --registry "$registry" >"$work/relay.log" 2>&1 &
relay_pid=$!
pids+=("$relay_pid")
wait_for_log "$work/relay.log" 'pilot-relay listening' >/dev/null
echo "relay     127.0.0.1:$relay_port"

identity="$work/peer-identity.json"
peer="$("$bin/pilot-peer" --registry "$registry" --identity "$identity" --json info 2>>"$work/peer.log" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')"
"$bin/pilot-peer" --registry "$registry" --identity "$identity" --public run >>"$work/peer.log" 2>&1 &
pids+=($!)
wait_for_log "$work/peer.log" 'registered' >/dev/null
echo "peer      $peer (public)"

port="$(free_port)"
inspector="$(free_port)"
token="smoke-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
printf 'PILOT_API_TOKEN=%s\n' "$token" >"$work/.dev.vars"
# A config of its own: the template's build command and vars stay untouched.
sed -e "s|^main = .*|main = \"$here/build/worker/shim.mjs\"|" -e '/^\[build\]/,/^command/d' \
  "$here/wrangler.toml" >"$work/wrangler.toml"

start_relay() {
  "$bin/pilot-relay" --listen "127.0.0.1:$relay_port" --open --udp-bind-ip 127.0.0.1 \
    --allow-dest 127.0.0.0/8 --registry "$registry" >>"$work/relay.log" 2>&1 &
  relay_pid=$!
  pids+=("$relay_pid")
}

worker_runs=0
start_worker() {
  worker_runs=$((worker_runs + 1))
  local log="$work/wrangler-$worker_runs.log"
  (cd "$work" && exec env WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false \
    "$here/node_modules/.bin/wrangler" dev --config "$work/wrangler.toml" --ip 127.0.0.1 \
    --port "$port" --inspector-port "$inspector" --persist-to "$work/state" \
    --var "PILOT_RELAY_URL:ws://127.0.0.1:$relay_port" --var "PILOT_PUBLIC:true" \
    --var "PILOT_LOG:debug" --show-interactive-dev-session=false >"$log" 2>&1) &
  worker_pid=$!
  pids+=("$worker_pid")
  wait_for_log "$log" 'Ready on' >/dev/null
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

start_worker
echo "worker    http://127.0.0.1:$port"

api() {
  local method="$1" path="$2"
  shift 2
  curl -sS --max-time 30 -X "$method" -H "authorization: Bearer $token" \
    "http://127.0.0.1:$port/pilot/v1/$path" "$@"
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

export ATTACK_API="http://127.0.0.1:$port/pilot/v1" ATTACK_TOKEN="$token" ATTACK_PEER="$peer"
driver="$here/scripts/attack.py"
status=0
phase() { ATTACK_PHASE="$1" ATTACK_TAG="${2:-}" python3 "$driver" || status=1; }

echo "== API abuse"
phase api
echo "== network abuse at the relay endpoint"
phase net
echo "== 256 KiB transfer while the native peer is killed and restarted"
ATTACK_PHASE=transfer python3 "$driver" >"$work/transfer-peer.out" 2>&1 &
transfer_pid=$!
pids+=("$transfer_pid")
sleep 1
peer_pid="${pids[2]}"
stop "$peer_pid"
sleep 2
"$bin/pilot-peer" --registry "$registry" --identity "$identity" --public run >>"$work/peer.log" 2>&1 &
pids+=($!)
wait "$transfer_pid" || true
# Not a check: the killed peer loses the stream; this shows how the Worker reports it.
sed "s/^/  (informational) /" "$work/transfer-peer.out"
sleep 3
phase health "peer restart"

echo "== 256 KiB transfer while the relay is restarted twice in a row"
ATTACK_PHASE=transfer python3 "$driver" >"$work/transfer-relay.out" 2>&1 &
transfer_pid=$!
pids+=("$transfer_pid")
sleep 1
stop "$relay_pid"
start_relay
sleep 0.3
stop "$relay_pid"
start_relay
wait "$transfer_pid" || true
sed "s/^/  (informational) /" "$work/transfer-relay.out"
for _ in $(seq 1 60); do
  api GET info 2>/dev/null | grep -q '"registered":true' && break
  sleep 0.5
done
phase health "relay restarts"
phase transfer

echo "== Worker log"
log="$work/wrangler-$worker_runs.log"
if grep -nE 'panicked|RuntimeError|unreachable executed' "$log"; then
  echo "ATTACK: the Worker's log shows a panic or trap" >&2
  status=1
fi
echo "errors logged: $(grep -c -E 'ERROR' "$log" || true), warnings: $(grep -c WARN "$log" || true)"
[ "$status" = 0 ] && echo "ATTACK OK" || { echo "ATTACK FAILED" >&2; exit 1; }
