#!/usr/bin/env python3
"""Abuse checks against a running Worker peer (driven by scripts/attack.sh).

Every request goes to 127.0.0.1 only and carries a time limit; every loop is bounded, so the
run ends on its own. Environment: ATTACK_API (http://127.0.0.1:PORT/pilot/v1), ATTACK_TOKEN,
ATTACK_PEER (the native peer's address), ATTACK_PHASE (api | net | health).
Exit status 1 lists every failed check.
"""

import concurrent.futures
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import time
import urllib.error
import urllib.request

API = os.environ["ATTACK_API"]
TOKEN = os.environ["ATTACK_TOKEN"]
PEER = os.environ["ATTACK_PEER"]
FAILURES = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def call(method, path, body=None, token=TOKEN, raw=False, timeout=70):
    """One API request; answers (status, headers, body bytes)."""
    data = body if raw or body is None else json.dumps(body).encode()
    if isinstance(body, str):
        data = body.encode()
    req = urllib.request.Request(API + "/" + path, data=data, method=method)
    if token is not None:
        req.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
    except (urllib.error.URLError, OSError) as err:
        return 0, {}, str(err).encode()


def error_code(body):
    try:
        err = json.loads(body)["error"]
        if err["message"] and err["hint"]:
            return err["code"]
    except (ValueError, KeyError, TypeError):
        pass
    return None


def expect_error(method, path, body, status, code, what, **kw):
    got, _, answer = call(method, path, body, **kw)
    ok = got == status and error_code(answer) == code
    check(ok, f"{what}: want {status} {code}, got {got} {answer[:160]!r}")


def echo_works(tag):
    got, _, answer = call("POST", "dial", {"peer": PEER, "port": 7, "timeout_ms": 15000})
    if got == 408:
        # A peer that restarted elsewhere is found again by the call after a timeout.
        print(f"note {tag}: first dial timed out; dialling again", flush=True)
        got, _, answer = call("POST", "dial", {"peer": PEER, "port": 7, "timeout_ms": 15000})
    if got != 200:
        check(False, f"{tag}: dial echo port: {got} {answer[:160]!r}")
        return
    conn = json.loads(answer)["conn"]
    message = f"echo after {tag}".encode()
    call("POST", f"conns/{conn}/write", message, raw=True)
    echoed = b""
    for _ in range(10):
        got, _, chunk = call("POST", f"conns/{conn}/read?timeout_ms=5000", b"", raw=True)
        if got != 200:
            break
        echoed += chunk
        if len(echoed) >= len(message):
            break
    call("POST", f"conns/{conn}/close", b"", raw=True)
    check(echoed == message, f"{tag}: echo works (got {echoed[:60]!r})")


def info():
    got, _, answer = call("GET", "info")
    return json.loads(answer) if got == 200 else None


def health(tag):
    check(info() is not None, f"{tag}: info answers")
    echo_works(tag)


def api_phase():
    # Tokens: missing, wrong, wrong scheme, one byte short/long.
    expect_error("GET", "info", None, 401, "bad_request", "no token", token=None)
    expect_error("GET", "info", None, 401, "bad_request", "wrong token", token="x" * len(TOKEN))
    expect_error("GET", "info", None, 401, "bad_request", "short token", token=TOKEN[:-1])
    expect_error("GET", "info", None, 401, "bad_request", "long token", token=TOKEN + "a")
    peer = PEER
    bad = "bad_request"
    for body, what in [
        ("{", "truncated JSON"),
        ("null", "JSON null"),
        ("[]", "JSON array"),
        ('"x"', "JSON string"),
        ("{}", "missing fields"),
        ('{"peer":1,"port":7}', "peer of the wrong type"),
        ('{"peer":"%s","port":"7"}' % peer, "port as a string"),
        ('{"peer":"%s","port":-1}' % peer, "negative port"),
        ('{"peer":"%s","port":0}' % peer, "port 0"),
        ('{"peer":"%s","port":65536}' % peer, "port 65536"),
        ('{"peer":"%s","port":1e3}' % peer, "port as a float"),
        ('{"peer":"%s","port":99999999999999999999}' % peer, "port beyond u64"),
        ('{"peer":"nope","port":7}', "peer not an address"),
        ('{"peer":"0:0000.0000","port":7}', "address too short"),
        ('{"peer":"0:zzzz.0000.0004","port":7}', "address with non-hex"),
        ('{"peer":"99999999999:0000.0000.0004","port":7}', "network beyond u16"),
        ('{"peer":"%s","port":7,"timeout_ms":-5}' % peer, "negative timeout"),
        ('{"peer":"%s","port":7,"timeout_ms":0}' % peer, "zero timeout"),
        ('{"peer":"%s","port":7,"timeout_ms":60001}' % peer, "timeout above max"),
        ('{"peer":"%s","port":7,"timeout_ms":18446744073709551615}' % peer, "timeout u64::MAX"),
        ('{"peer":"%s","port":7,"timeout_ms":1e30}' % peer, "timeout 1e30"),
        ("\xff\xfe", "not UTF-8"),
    ]:
        expect_error("POST", "dial", body, 400, bad, f"dial with {what}")
    for path, body in [
        ("ping", '{"peer":"x"}'),
        ("listen", '{"port":0}'),
        ("listen", '{"port":70000}'),
        ("accept", '{"port":"a"}'),
        ("send-to", '{"peer":"%s","port":7,"data":"***"}' % peer),
        ("recv-from", '{"port":1,"timeout_ms":-1}'),
        ("send-message", '{"peer":"%s","type":"nope","data":""}' % peer),
        ("send-message", '{"peer":"%s","type":"file","data":""}' % peer),
        ("publish", '{"peer":"%s"}' % peer),
        ("subscribe", '{"topic":"t"}'),
        ("hostname", '{"hostname":5}'),
        ("handshakes/approve", '{"node":-1}'),
        ("handshakes/reject", '{"node":"x"}'),
        ("subscriptions/1/next", "{"),
    ]:
        expect_error("POST", path, body, 400, bad, f"{path} with {body[:40]}")
    expect_error("GET", "resolve-hostname", None, 400, bad, "resolve without hostname")
    expect_error("GET", "nope", None, 400, bad, "unknown route")
    expect_error("DELETE", "info", None, 400, bad, "wrong method")
    expect_error("POST", "conns/abc/read", b"", 400, bad, "connection ID not a number", raw=True)
    expect_error("POST", "conns/-1/read", b"", 400, bad, "negative connection ID", raw=True)
    for op in ["read", "write", "close"]:
        expect_error("POST", f"conns/987654/{op}", b"x", 404, "unknown_connection",
                     f"{op} on an unknown connection", raw=True)
    expect_error("POST", "subscriptions/987654/next", b"", 404, "unknown_connection",
                 "next on an unknown subscription", raw=True)
    expect_error("POST", "conns/1/read?timeout_ms=-1", b"", 400, bad, "read timeout -1", raw=True)
    expect_error("POST", "conns/1/read?max_bytes=x", b"", 400, bad, "read max_bytes=x", raw=True)
    expect_error("POST", "accept", '{"port":4242,"timeout_ms":100}', 400, bad,
                 "accept on a port nobody listens on")

    # Huge bodies: 10 MiB JSON and 10 MiB of stream bytes to an unknown connection.
    huge = b'{"peer":"' + b"a" * (10 * 1024 * 1024) + b'","port":7}'
    expect_error("POST", "dial", huge, 400, bad, "10 MiB JSON body", raw=True)
    expect_error("POST", "conns/987654/write", b"\0" * (10 * 1024 * 1024), 404,
                 "unknown_connection", "10 MiB write to an unknown connection", raw=True)
    health("huge bodies")

    # A closed connection, reads after EOF, 200 concurrent reads.
    got, _, answer = call("POST", "dial", {"peer": PEER, "port": 7})
    check(got == 200, f"dial echo: {got} {answer[:120]!r}")
    if got == 200:
        conn = json.loads(answer)["conn"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            reads = [pool.submit(call, "POST", f"conns/{conn}/read?timeout_ms=3000", b"",
                                 raw=True) for _ in range(200)]
            time.sleep(1)
            call("POST", f"conns/{conn}/write", b"concurrent", raw=True)
            answers = [r.result() for r in reads]
        statuses = sorted({a[0] for a in answers})
        data = b"".join(a[2] for a in answers if a[0] == 200)
        check(set(statuses) <= {200, 408, 429}, f"200 concurrent reads: statuses {statuses}")
        check(all(a[0] == 200 or error_code(a[2]) for a in answers),
              "200 concurrent reads: every failure is a JSON error")
        check(data == b"concurrent", f"200 concurrent reads: data read once, got {data!r}")
        call("POST", f"conns/{conn}/close", b"", raw=True)
        eof = None
        for _ in range(10):
            got, headers, chunk = call("POST", f"conns/{conn}/read?timeout_ms=2000", b"", raw=True)
            if got == 200 and {k.lower(): v for k, v in headers.items()}.get("pilot-eof") == "1":
                eof = True
                break
            if got != 200 and got != 408:
                eof = got
                break
        check(eof is True or eof in (404, 410), f"read after close ends the stream ({eof})")
        for _ in range(3):
            got, _, answer = call("POST", f"conns/{conn}/read?timeout_ms=500", b"", raw=True)
            check(got in (200, 404, 410) and (got == 200 or error_code(answer)),
                  f"read after EOF: {got} {answer[:100]!r}")
        got, _, answer = call("POST", f"conns/{conn}/write", b"late", raw=True)
        check(got in (404, 410) and error_code(answer) is not None,
              f"write after close: {got} {answer[:120]!r}")
        got, _, answer = call("POST", f"conns/{conn}/close", b"", raw=True)
        check(got in (200, 404, 410), f"second close: {got} {answer[:120]!r}")

    # Dials to a node that does not exist (registry has no address).
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        dials = [pool.submit(call, "POST", "dial",
                             {"peer": "0:0000.00FF.FFF0", "port": 7, "timeout_ms": 3000})
                 for _ in range(40)]
        answers = [d.result() for d in dials]
    statuses = sorted({a[0] for a in answers})
    check(all(a[0] in (408, 502, 429) and error_code(a[2]) for a in answers),
          f"40 dials to an unknown node: statuses {statuses} in {time.time() - started:.1f} s")
    health("API abuse")


def relay_endpoint():
    endpoint = info()["endpoint"]
    host, port = endpoint.rsplit(":", 1)
    addr = ipaddress.ip_address(host)
    assert addr.is_loopback, f"endpoint {endpoint} is not loopback; refusing to send"
    return host, int(port)


def peer_node():
    return int(PEER.split(":")[1].replace(".", ""), 16)


def net_phase():
    target = relay_endpoint()
    me = info()["node_id"]
    peer = peer_node()
    rng = random.Random(7)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def send(frame):
        sock.sendto(frame, target)

    def rb(n):
        return bytes(rng.getrandbits(8) for _ in range(n))

    frames = []
    for sender in (peer, me, 0, 0xFFFFFFFF):
        # PILS: random nonces (counters up to u64::MAX), junk ciphertext and tags.
        for counter in (0, 1, 2**32, 2**63, 2**64 - 1):
            frames.append(b"PILS" + struct.pack(">I", sender) + rb(4) +
                          struct.pack(">Q", counter) + rb(50))
        frames.append(b"PILS" + struct.pack(">I", sender) + rb(10))  # shorter than a nonce
        frames.append(b"PILS" + struct.pack(">I", sender) + rb(20))  # shorter than a tag
        # PILA / PILK: truncated, junk keys, bad signature, long trailers.
        for n in (0, 1, 35, 36, 131, 132, 133, 200):
            frames.append(b"PILA" + struct.pack(">I", sender) + rb(max(n - 4, 0)))
        frames.append(b"PILA" + struct.pack(">I", sender) + rb(128) + b"\xff" * 20)
        for n in (0, 3, 35, 36, 37, 100):
            frames.append(b"PILK" + struct.pack(">I", sender) + rb(max(n - 4, 0)))
        frames.append(b"PILK" + struct.pack(">I", sender) + b"\0" * 32)  # low-order key
        # PILF: bad counts, indexes, oversize chunks, inconsistent groups, nested PILF.
        for index, count, chunk in [(0, 0, 10), (0, 1, 10), (0, 65, 10), (5, 2, 10),
                                    (0, 2, 1210), (1, 2, 0), (0, 255, 1), (255, 255, 1)]:
            frames.append(b"PILF" + struct.pack(">IIBB", sender, 9, index, count) + rb(chunk))
        frames.append(b"PILF" + struct.pack(">IIBB", sender, 10, 0, 2) + b"PILF" + rb(1205))
        frames.append(b"PILF" + struct.pack(">IIBB", sender, 10, 1, 2) + rb(5))
        frames.append(b"PILF" + struct.pack(">IIBB", sender, 11, 0, 2) + b"PI")
        frames.append(b"PILF" + struct.pack(">IIBB", sender, 11, 1, 2) + b"")
        frames.append(b"PILF" + struct.pack(">IIBB", sender, 12, 0, 3) + rb(1209))
        frames.append(b"PILF" + struct.pack(">IIBB", sender, 12, 0, 4) + rb(1209))
        frames.append(b"PILF" + struct.pack(">IIBB", sender, 12, 0, 3) + rb(1209))  # duplicate
        frames.append(b"PILF" + rb(3))
        # Whole PILS reassembled from fragments: junk that must fail authentication.
        body = b"PILS" + struct.pack(">I", sender) + rb(3000)
        chunks = [body[i:i + 1209] for i in range(0, len(body), 1209)]
        for i, chunk in enumerate(chunks):
            frames.append(b"PILF" + struct.pack(">IIBB", sender, 13, i, len(chunks)) + chunk)
    frames += [b"", b"P", b"PIL", b"PILT" + rb(40), b"PILP", b"PILP" + rb(4), rb(64), rb(1500)]
    for frame in frames:
        send(frame)
    print(f"sent {len(frames)} crafted frames", flush=True)
    time.sleep(1)
    health("crafted frames")

    # Replays: every crafted frame again, in order and shuffled, three times.
    for _ in range(3):
        replay = list(frames)
        rng.shuffle(replay)
        for frame in replay:
            send(frame)
    print(f"replayed {3 * len(frames)} frames", flush=True)

    # A flood: 10,000 frames of every kind, paced only by the socket.
    kinds = [b"PILS", b"PILA", b"PILK", b"PILF", b"PILP", b"XXXX"]
    for i in range(10_000):
        magic = kinds[i % len(kinds)]
        send(magic + struct.pack(">I", peer if i % 2 else rng.getrandbits(32)) +
             rb(rng.randrange(0, 200)))
        if i % 500 == 0:
            time.sleep(0.01)
    print("flooded 10000 frames", flush=True)
    sock.close()
    time.sleep(2)
    health("flood")


def transfer(tag, size=256 * 1024):
    """Sends size bytes to the peer's echo port and reads them back; answers the byte count."""
    got, _, answer = call("POST", "dial", {"peer": PEER, "port": 7, "timeout_ms": 20000})
    if got == 408:
        return "timeout"
    if got != 200:
        return f"dial {got} {answer[:120]!r}"
    conn = json.loads(answer)["conn"]
    payload = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    got, _, answer = call("POST", f"conns/{conn}/write?timeout_ms=60000", payload, raw=True)
    if got != 200:
        return f"write {got} {answer[:120]!r}"
    echoed = b""
    deadline = time.time() + 90
    while len(echoed) < size and time.time() < deadline:
        got, _, chunk = call("POST", f"conns/{conn}/read?timeout_ms=10000", b"", raw=True)
        if got != 200:
            return f"read {got} {chunk[:120]!r} after {len(echoed)} bytes"
        echoed += chunk
    call("POST", f"conns/{conn}/close", b"", raw=True)
    return "ok" if echoed == payload else f"mismatch after {len(echoed)} bytes"


def transfer_phase():
    result = transfer("transfer")
    if result == "timeout":
        result = transfer("transfer again")
    check(result == "ok", f"256 KiB transfer through the echo port: {result}")


def main():
    phase = os.environ.get("ATTACK_PHASE", "api")
    {"api": api_phase, "net": net_phase, "health": lambda: health(os.environ.get(
        "ATTACK_TAG", "health")), "transfer": transfer_phase}[phase]()
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed:", *FAILURES, sep="\n  ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
