#!/usr/bin/env bash
# Loopback smoke run of the Worker's direct TCP transport (PILOT_TRANSPORT=tcp, spec §7.5): a
# local registry, a native public peer listening on TCP (--tcp-listen) and the Worker under
# `wrangler dev`, which reaches the registry and the peer with connect(). Checked through
# curl: info (registered, no endpoint), ping, a stream to the peer's echo port, a data
# exchange message, and the error for a peer without a tcp endpoint. No relay runs. Every
# process binds 127.0.0.1 and is stopped on exit (trap); each curl has a time limit.
#
# Needs: `make worker` done (build/worker/shim.mjs), `npm ci` in worker-shim, curl, python3.
# Usage: scripts/smoke-tcp.sh        (from worker-shim/, or via `make worker-smoke-tcp`)
#        SMOKE_KEEP_LOGS=/tmp/logs scripts/smoke-tcp.sh   keeps every process's log
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
  echo "SMOKE-TCP FAILED: $*" >&2
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
cargo build --quiet -p conformance --bins

"$bin/pilot-registry" --listen 127.0.0.1:0 >"$work/registry.log" 2>&1 &
pids+=($!)
registry="$(wait_for_log "$work/registry.log" 'listening on 127\.0\.0\.1:[0-9]+' | awk '{print $3}')"
echo "registry  $registry"

identity="$work/peer-identity.json"
peer="$("$bin/pilot-peer" --registry "$registry" --identity "$identity" --json info 2>>"$work/peer.log" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')"
# A fixed port, so the restarted peer below listens where the registry says it does.
peer_tcp="127.0.0.1:$(free_port)"
start_peer() {
  "$bin/pilot-peer" --registry "$registry" --identity "$identity" --public \
    --tcp-listen "$peer_tcp" run >>"$work/peer.log" 2>&1 &
  peer_pid=$!
  pids+=("$peer_pid")
}
start_peer
wait_for_log "$work/peer.log" 'registered' >/dev/null
echo "peer      $peer (public, tcp listener $peer_tcp)"

# A second public peer without a TCP listener: the Worker must refuse it with a hint.
udp_identity="$work/udp-peer-identity.json"
udp_peer="$("$bin/pilot-peer" --registry "$registry" --identity "$udp_identity" --json info \
  2>>"$work/udp-peer.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')"
"$bin/pilot-peer" --registry "$registry" --identity "$udp_identity" --public run \
  >>"$work/udp-peer.log" 2>&1 &
pids+=($!)
wait_for_log "$work/udp-peer.log" 'registered' >/dev/null
echo "udp peer  $udp_peer (public, UDP only)"

port="$(free_port)"
inspector="$(free_port)"
token="smoke-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
printf 'PILOT_API_TOKEN=%s\n' "$token" >"$work/.dev.vars"
# A config of its own: the template's build command and vars stay untouched.
sed -e "s|^main = .*|main = \"$here/build/worker/shim.mjs\"|" -e '/^\[build\]/,/^command/d' \
  "$here/wrangler.toml" >"$work/wrangler.toml"
(cd "$work" && exec env WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false \
  "$here/node_modules/.bin/wrangler" dev --config "$work/wrangler.toml" --ip 127.0.0.1 \
  --port "$port" --inspector-port "$inspector" --persist-to "$work/state" \
  --var "PILOT_TRANSPORT:tcp" --var "PILOT_REGISTRY:$registry" --var "PILOT_PUBLIC:true" \
  --var "PILOT_LOG:debug" --show-interactive-dev-session=false >"$work/wrangler.log" 2>&1) &
pids+=($!)
wait_for_log "$work/wrangler.log" 'Ready on' >/dev/null
echo "worker    http://127.0.0.1:$port (PILOT_TRANSPORT=tcp)"

api() {
  local method="$1" path="$2"
  shift 2
  curl -sS --max-time 30 -X "$method" -H "authorization: Bearer $token" \
    "http://127.0.0.1:$port/pilot/v1/$path" "$@"
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

echo "== GET /v1/info"
info="$(api GET info)"
echo "$info"
[ "$(echo "$info" | field '["registered"]')" = True ] || fail "not registered"
[ "$(echo "$info" | field '["transport"]')" = tcp ] || fail "transport is not tcp"
[ -z "$(echo "$info" | field '["endpoint"]')" ] || fail "a tcp Worker has no endpoint to show"

echo "== POST /v1/ping $peer"
pong="$(api POST ping -d "{\"peer\":\"$peer\",\"timeout_ms\":10000}")"
echo "$pong"
echo "$pong" | field '["rtt_ms"]' >/dev/null || fail "no rtt_ms"

echo "== POST /v1/dial $peer:7, write, read, close"
dialed="$(api POST dial -d "{\"peer\":\"$peer\",\"port\":7}")"
echo "$dialed"
conn="$(echo "$dialed" | field '["conn"]')" || fail "dial failed"
api POST "conns/$conn/write" --data-binary 'hello over direct tcp'
echo
echoed=""
for _ in 1 2 3 4 5; do
  echoed+="$(api POST "conns/$conn/read?timeout_ms=5000")"
  [ "${#echoed}" -ge 21 ] && break
done
echo "echoed: $echoed"
[ "$echoed" = 'hello over direct tcp' ] || fail "echo mismatch"
api POST "conns/$conn/close"
echo

echo "== POST /v1/send-message text"
data="$(printf 'hello' | base64)"
reply="$(api POST send-message -d "{\"peer\":\"$peer\",\"type\":\"text\",\"data\":\"$data\"}")"
echo "$reply"
[ "$(echo "$reply" | field '["reply"]')" = 'ACK TEXT 5 bytes' ] || fail "unexpected reply"

echo "== POST /v1/ping $udp_peer (no tcp endpoint)"
refused="$(api POST ping -d "{\"peer\":\"$udp_peer\",\"timeout_ms\":5000}")"
echo "$refused"
[ "$(echo "$refused" | field '["error"]["code"]')" = peer_unreachable ] ||
  fail "expected peer_unreachable for a peer without a tcp endpoint"
echo "$refused" | grep -q 'tcp-listen' || fail "the refusal carries no hint"

echo "== peer restart: the dropped connection is forgotten, the next ping reconnects"
kill "$peer_pid" 2>/dev/null || true
wait "$peer_pid" 2>/dev/null || true
wait_for_log "$work/wrangler.log" 'tcp connection dropped' >/dev/null
start_peer
for _ in $(seq 1 100); do
  [ "$(grep -c 'registered' "$work/peer.log")" -ge 2 ] && break
  sleep 0.1
done
pong="$(api POST ping -d "{\"peer\":\"$peer\",\"timeout_ms\":15000}")"
echo "ping after the peer restart: $pong"
echo "$pong" | field '["rtt_ms"]' >/dev/null || fail "ping failed after the reconnect"
opened="$(grep -c 'tcp connection opened' "$work/wrangler.log")"
echo "tcp connections opened by the Worker: $opened"
[ "$opened" -ge 2 ] || fail "the Worker did not open a new connection"
echo "SMOKE-TCP OK"
