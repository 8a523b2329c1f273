#!/usr/bin/env bash
# Loopback smoke run of the Worker: a local registry, the relay, a native public peer and the
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

echo "== unauthenticated request is refused"
status="$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/pilot/v1/info")"
echo "HTTP $status"
[ "$status" = 401 ] || fail "expected 401 without a token, got $status"

echo "== GET /v1/info"
info="$(api GET info)"
echo "$info"
node_id="$(echo "$info" | field '["node_id"]')"
[ "$node_id" -gt 0 ] || fail "info has no node ID"
[ "$(echo "$info" | field '["registered"]')" = True ] || fail "not registered"

echo "== POST /v1/ping $peer"
pong="$(api POST ping -d "{\"peer\":\"$peer\",\"timeout_ms\":10000}")"
echo "$pong"
echo "$pong" | field '["rtt_ms"]' >/dev/null || fail "no rtt_ms"

echo "== POST /v1/dial $peer:7, write, read, close"
dialed="$(api POST dial -d "{\"peer\":\"$peer\",\"port\":7}")"
echo "$dialed"
conn="$(echo "$dialed" | field '["conn"]')" || fail "dial failed"
api POST "conns/$conn/write" --data-binary 'hello through the relay'
echo
echoed=""
for _ in 1 2 3 4 5; do
  echoed+="$(api POST "conns/$conn/read?timeout_ms=5000")"
  [ "${#echoed}" -ge 23 ] && break
done
echo "echoed: $echoed"
[ "$echoed" = 'hello through the relay' ] || fail "echo mismatch"
api POST "conns/$conn/close"
echo

echo "== POST /v1/send-message text"
data="$(printf 'hello' | base64)"
reply="$(api POST send-message -d "{\"peer\":\"$peer\",\"type\":\"text\",\"data\":\"$data\"}")"
echo "$reply"
[ "$(echo "$reply" | field '["reply"]')" = 'ACK TEXT 5 bytes' ] || fail "unexpected reply"

echo "== POST /v1/listen 1000, a native peer dials it, /v1/accept, echo back"
api POST listen -d '{"port":1000}'
echo
worker_addr="$(echo "$info" | field '["address"]')"
"$bin/pilot-peer" --registry "$registry" connect --message 'dialled the worker' \
  "$worker_addr" 1000 >"$work/connect.out" 2>>"$work/connect.log" &
connect_pid=$!
pids+=("$connect_pid")
accepted="$(api POST accept -d '{"port":1000,"timeout_ms":15000}')"
echo "$accepted"
aconn="$(echo "$accepted" | field '["conn"]')" || fail "accept failed"
got=""
for _ in 1 2 3 4 5; do
  got+="$(api POST "conns/$aconn/read?timeout_ms=5000")"
  [ "${#got}" -ge 18 ] && break
done
echo "received: $got"
[ "$got" = 'dialled the worker' ] || fail "accepted stream carried '$got'"
api POST "conns/$aconn/write" --data-binary "$got"
echo
wait "$connect_pid" || fail "pilot-peer connect failed"
echo "native peer got back: $(cat "$work/connect.out")"
[ "$(cat "$work/connect.out")" = 'dialled the worker' ] || fail "native peer got the wrong echo"
api POST "conns/$aconn/close"
echo

echo "== POST /v1/subscribe + /v1/publish at the peer's broker, /next"
sub="$(api POST subscribe -d "{\"peer\":\"$peer\",\"topic\":\"news\"}")"
echo "$sub"
sid="$(echo "$sub" | field '["subscription"]')" || fail "subscribe failed"
payload="$(printf 'extra extra' | base64)"
event=""
# spec §10.4: the broker forwards events published after it read the subscription; the
# subscription and the publish travel on separate streams, so the first may lose the race.
for _ in 1 2 3; do
  api POST publish -d "{\"peer\":\"$peer\",\"topic\":\"news\",\"data\":\"$payload\"}" >/dev/null
  event="$(api POST "subscriptions/$sid/next" -d '{"timeout_ms":3000}')"
  echo "$event" | grep -q '"topic"' && break
done
echo "$event"
[ "$(echo "$event" | field '["data"]')" = "$payload" ] || fail "no event on the subscription"

echo "== POST /v1/hostname, GET /v1/resolve-hostname"
api POST hostname -d '{"hostname":"smoke-worker"}'
echo
resolved="$(api GET 'resolve-hostname?hostname=smoke-worker')"
echo "$resolved"
[ "$(echo "$resolved" | field '["address"]')" = "$worker_addr" ] || fail "hostname resolves elsewhere"

echo "== POST /v1/handshake to the peer, GET /v1/handshakes, GET /v1/trusted"
api POST handshake -d "{\"peer\":\"$peer\",\"justification\":\"smoke test\"}"
echo
api GET handshakes
echo
api GET trusted
echo

echo "== relay restart: the node reconnects and registers its new endpoint"
old_endpoint="$(echo "$info" | field '["endpoint"]')"
stop "$relay_pid"
start_relay
new_info=""
for _ in $(seq 1 60); do
  new_info="$(api GET info || true)"
  endpoint="$(echo "$new_info" | field '["endpoint"]' 2>/dev/null || true)"
  if [ -n "$endpoint" ] && [ "$endpoint" != "$old_endpoint" ]; then break; fi
  sleep 0.5
done
echo "$new_info"
[ "$endpoint" != "$old_endpoint" ] || fail "no new relay session after the restart"
pong="$(api POST ping -d "{\"peer\":\"$peer\",\"timeout_ms\":15000}")"
echo "ping after reconnect: $pong"
echo "$pong" | field '["rtt_ms"]' >/dev/null || fail "ping failed after the reconnect"

echo "== Worker restart: the identity and node ID come back from storage"
stop "$worker_pid"
start_worker
again="$(api GET info)"
echo "$again"
[ "$(echo "$again" | field '["node_id"]')" = "$node_id" ] || fail "node ID changed over a restart"
[ "$(echo "$again" | field '["public_key"]')" = "$(echo "$info" | field '["public_key"]')" ] ||
  fail "identity changed over a restart"
[ "$(echo "$again" | field '["hostname"]')" = smoke-worker ] || fail "hostname not claimed again"

if [ -n "${SMOKE_ALARM:-}" ]; then
  # The heartbeat alarm fires 60 s after registration (spec §9.5); wait for it once.
  echo "== heartbeat alarm (SMOKE_ALARM set: waiting up to 75 s)"
  log="$work/wrangler-$worker_runs.log"
  for _ in $(seq 1 150); do
    grep -q 'DEBUG heartbeat' "$log" && break
    sleep 0.5
  done
  grep -m1 'DEBUG heartbeat' "$log" || fail "no heartbeat from the alarm"
fi

echo "== wasm size"
wasm="$here/build/index_bg.wasm"
echo "index_bg.wasm: $(wc -c <"$wasm") bytes raw, $(gzip -9 -c "$wasm" | wc -c) bytes gzip -9"
echo "SMOKE OK"
