//! Benchmark tool for pilot-relay (not a test): `cargo bench -p pilot-relay --bench relay_bench`.
//!
//! Starts the real `pilot-relay` binary as a child process on 127.0.0.1 (one runtime thread,
//! so its CPU time is one core's worth), a UDP echo in this process, and then measures:
//!
//! 1. resident memory per idle session: VmRSS of the relay before and after opening
//!    `IDLE_SESSIONS` authenticated sessions;
//! 2. throughput: `CLIENTS` WebSocket clients stream PILS-shaped frames through the relay
//!    to the echo and back for `THROUGHPUT_DURATION`; "frames relayed per second" is the
//!    relay's own forwarded counter summed over both directions (so each echoed frame counts
//!    twice: once outbound, once inbound) divided by wall time and by the relay's CPU seconds;
//! 3. latency: one client does `LATENCY_ROUNDS` request/echo round trips through the relay
//!    and the same number directly over UDP; reported are "p50 via relay minus p50 direct"
//!    and "p99 via relay minus p99 direct", differences of percentiles (not percentiles of
//!    a per-round-trip difference).
//!
//! Everything stays on loopback and every loop is bounded in count or time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use futures_util::{SinkExt as _, StreamExt as _};
use pilot_relay::auth::{AuthReply, Challenge, Ready};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Sessions held open for the memory measurement.
const IDLE_SESSIONS: usize = 1_000;
/// Concurrent clients in the throughput phase.
const CLIENTS: usize = 8;
/// Frames each throughput client may have in flight (sent, not yet echoed).
const WINDOW_FRAMES: u64 = 256;
/// Length of the throughput phase.
const THROUGHPUT_DURATION: Duration = Duration::from_secs(5);
/// Round trips in the latency phase (each way: relay and direct).
const LATENCY_ROUNDS: usize = 5_000;
/// Frame size used in the throughput and latency phases, bytes.
const FRAME_BYTES: usize = 128;
/// Linux USER_HZ: the unit of utime/stime in /proc/<pid>/stat.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct RelayProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RelayProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields[11].parse().unwrap();
        let stime: f64 = fields[12].parse().unwrap();
        (utime + stime) / CLOCK_TICKS_PER_SEC
    }
}

async fn start_relay() -> RelayProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pilot-relay"))
        .args([
            "--listen",
            &addr.to_string(),
            "--open",
            "--udp-bind-ip",
            "127.0.0.1",
            "--allow-dest",
            "127.0.0.0/8",
            "--threads",
            "1",
            "--packets-per-sec",
            "100000000",
            "--bytes-per-sec",
            "100000000000",
            "--max-sessions-per-identity",
            "100000",
            "--max-sessions-per-ip",
            "100000",
            "--max-sessions",
            "100000",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start pilot-relay");
    let relay = RelayProcess { child, addr };
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return relay;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("relay did not start listening");
}

async fn connect(addr: SocketAddr, key: &SigningKey) -> (Ws, SocketAddr) {
    let mut request = format!("ws://{addr}/v1/relay")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "pilot-relay.v1".parse().unwrap());
    // Nagle off, as on the relay side: frames are small and latency-sensitive.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .unwrap();
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        panic!("no challenge")
    };
    let challenge: Challenge = serde_json::from_str(text.as_str()).unwrap();
    let sig = key.sign(challenge.signed_string().as_bytes());
    let reply = AuthReply {
        kind: "auth".into(),
        public_key: STANDARD.encode(key.verifying_key().as_bytes()),
        sig: STANDARD.encode(sig.to_bytes()),
        token: None,
    };
    ws.send(Message::Text(serde_json::to_string(&reply).unwrap().into()))
        .await
        .unwrap();
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        panic!("no ready")
    };
    let ready: Ready = serde_json::from_str(text.as_str()).unwrap();
    (ws, ready.udp_addr.parse().unwrap())
}

/// Echoes every datagram back to its sender until `stop` is set.
async fn echo(sock: Arc<UdpSocket>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf)).await
        else {
            continue;
        };
        let _ = sock.send_to(&buf[..n], from).await;
    }
}

async fn relay_frames(addr: SocketAddr) -> u64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| l.starts_with("pilot_relay_frames_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn frame(tag: u64) -> Vec<u8> {
    let mut f = b"PILS".to_vec();
    f.extend_from_slice(&tag.to_be_bytes());
    f.resize(FRAME_BYTES, 0xab);
    f
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn memory_phase(relay: &RelayProcess) {
    let key = SigningKey::from_bytes(&[1; 32]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = relay.rss_kib();
    let mut sessions = Vec::with_capacity(IDLE_SESSIONS);
    for _ in 0..IDLE_SESSIONS {
        sessions.push(connect(relay.addr, &key).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = relay.rss_kib();
    let per_session = (after.saturating_sub(before)) as f64 * 1024.0 / IDLE_SESSIONS as f64;
    println!(
        "idle sessions:     {IDLE_SESSIONS} sessions, relay VmRSS {before} KiB -> {after} KiB, \
         {:.1} KiB per idle session",
        per_session / 1024.0
    );
    for (mut ws, _) in sessions {
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn throughput_phase(relay: &RelayProcess, echo_addr: SocketAddr) {
    let dest = echo_addr;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let key = SigningKey::from_bytes(&[10 + i as u8; 32]);
        let (ws, _) = connect(relay.addr, &key).await;
        let (mut tx, mut rx) = ws.split();
        let stop = Arc::clone(&stop);
        let received = Arc::clone(&received);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(WINDOW_FRAMES as usize));
        let permits = Arc::clone(&in_flight);
        tasks.push(tokio::spawn(async move {
            let mut tag = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // A lost datagram would leak a permit; a timeout keeps the sender going.
                if let Ok(Ok(p)) =
                    tokio::time::timeout(Duration::from_millis(50), permits.acquire()).await
                {
                    p.forget();
                }
                tag += 1;
                let msg = pilot_relay::header::encode(&dest, &frame(tag));
                if tx.feed(Message::Binary(msg.into())).await.is_err() {
                    break;
                }
                if tag % 32 == 0 && tx.flush().await.is_err() {
                    break;
                }
            }
            let _ = tx.close().await;
        }));
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_secs(1), rx.next()).await
            {
                if let Message::Binary(_) = msg {
                    received.fetch_add(1, Ordering::Relaxed);
                    in_flight.add_permits(1);
                }
            }
        }));
    }
    // Warm up, then measure a fixed window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frames_0 = relay_frames(relay.addr).await;
    let cpu_0 = relay.cpu_secs();
    let t0 = Instant::now();
    tokio::time::sleep(THROUGHPUT_DURATION).await;
    let frames_1 = relay_frames(relay.addr).await;
    let cpu_1 = relay.cpu_secs();
    let wall = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let frames = (frames_1 - frames_0) as f64;
    let cpu = cpu_1 - cpu_0;
    println!(
        "throughput:        {CLIENTS} clients, {FRAME_BYTES}-byte frames, {:.0} frames relayed per \
         second, both directions (each echo counts twice), relay CPU {:.2} s in {:.2} s wall \
         -> {:.0} frames relayed per relay CPU-second",
        frames / wall,
        cpu,
        wall,
        if cpu > 0.0 { frames / cpu } else { f64::NAN }
    );
    println!(
        "                   ({} echoes received by the clients)",
        received.load(Ordering::Relaxed)
    );
}

async fn latency_phase(relay: &RelayProcess, echo_addr: SocketAddr) {
    let key = SigningKey::from_bytes(&[99; 32]);
    let (mut ws, _) = connect(relay.addr, &key).await;
    let mut via_relay = Vec::with_capacity(LATENCY_ROUNDS);
    for i in 0..LATENCY_ROUNDS as u64 {
        let msg = pilot_relay::header::encode(&echo_addr, &frame(i));
        let t = Instant::now();
        ws.send(Message::Binary(msg.into())).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                Ok(Some(Ok(Message::Binary(_)))) => break,
                Ok(Some(Ok(_))) => continue,
                other => panic!("echo lost: {other:?}"),
            }
        }
        via_relay.push(t.elapsed());
    }
    let direct_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut direct = Vec::with_capacity(LATENCY_ROUNDS);
    let mut buf = vec![0u8; 2048];
    for i in 0..LATENCY_ROUNDS as u64 {
        let t = Instant::now();
        direct_sock.send_to(&frame(i), echo_addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), direct_sock.recv_from(&mut buf))
            .await
            .expect("direct echo lost")
            .unwrap();
        direct.push(t.elapsed());
    }
    via_relay.sort();
    direct.sort();
    let (r50, r99) = (percentile(&via_relay, 0.50), percentile(&via_relay, 0.99));
    let (d50, d99) = (percentile(&direct, 0.50), percentile(&direct, 0.99));
    println!(
        "latency:           {LATENCY_ROUNDS} round trips; via relay p50 {r50:?} p99 {r99:?}; \
         direct UDP p50 {d50:?} p99 {d99:?}; p50 via relay minus p50 direct {:?}, \
         p99 via relay minus p99 direct {:?}",
        r50.saturating_sub(d50),
        r99.saturating_sub(d99)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; this tool takes no options.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let relay = start_relay().await;
        let echo_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let echo_addr = echo_sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let echo_task = tokio::spawn(echo(Arc::clone(&echo_sock), Arc::clone(&stop)));

        println!(
            "pilot-relay bench (relay pid {}, 1 runtime thread)",
            relay.pid()
        );
        memory_phase(&relay).await;
        throughput_phase(&relay, echo_addr).await;
        latency_phase(&relay, echo_addr).await;

        stop.store(true, Ordering::Relaxed);
        let _ = echo_task.await;
    });
}
