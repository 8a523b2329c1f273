//! Hostile input against a running `pilot-peer`, all on 127.0.0.1: a second process with the
//! same identity, abusive TCP connections (spec §7.5), abusive control socket clients, and
//! datagram floods. Every test checks that the peer refuses what it must and keeps serving
//! honest peers afterwards. Loops are bounded and every wait has a deadline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use conformance::peer::{
    control_call, serve_control, ControlRequest, Peer, PeerConfig, PeerError, Transport,
    TransportStats, DATAGRAM_QUEUE_LEN,
};
use conformance::registry_server::{Config, RegistryHandle, RegistryServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixStream};

/// Upper bound for each step, so a broken peer fails the test instead of hanging it.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle timeout of the attacked peer's TCP connections: short, so evictions happen quickly.
const TEST_TCP_IDLE: Duration = Duration::from_secs(1);
/// More idle connections than the peer accepts at once (256).
const IDLE_CONNECTIONS: usize = 300;
/// An application port for datagrams.
const APP_PORT: u16 = 4000;

async fn start_registry() -> RegistryHandle {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    RegistryServer::bind(config).await.unwrap().spawn()
}

fn identity_path(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pilot-peer-attack-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&path);
    path
}

fn public_config(registry: &RegistryHandle, test: &str, name: &str) -> PeerConfig {
    let mut config = PeerConfig::new(registry.local_addr(), identity_path(test, name));
    config.public = true;
    config
}

async fn step<T>(what: &str, op: impl Future<Output = Result<T, PeerError>>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, op).await {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => panic!("{what}: {err}"),
        Err(_) => panic!("{what}: no answer within {STEP_TIMEOUT:?}"),
    }
}

/// Waits (bounded) until `peer`'s stats satisfy `done`.
async fn await_stats(
    peer: &Peer,
    what: &str,
    done: impl Fn(&TransportStats) -> bool,
) -> TransportStats {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let stats = step("stats", peer.transport_stats()).await;
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {STEP_TIMEOUT:?}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads until the peer closes `stream` (or resets it); panics if it stays open.
async fn await_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("{what}: the peer kept the connection open"),
        }
    }
}

#[tokio::test]
async fn second_peer_with_the_same_identity_is_refused_and_the_first_keeps_serving() {
    let registry = start_registry().await;
    let config = public_config(&registry, "same-identity", "a");
    let a = Peer::start(config.clone()).await.unwrap();
    let mut twin_config = config.clone();
    twin_config.public = false;
    let twin = Peer::start(twin_config).await;
    let err = match twin {
        Ok(twin) => {
            twin.shutdown().await.unwrap();
            panic!("a second peer with A's identity started");
        }
        Err(err) => err,
    };
    eprintln!("second peer with A's identity: {err}");
    assert!(err.to_string().contains("in use"), "{err}");

    // The twin never registered, so the registry still sends C to A.
    let c = Peer::start(public_config(&registry, "same-identity", "c"))
        .await
        .unwrap();
    step("ping A after the refused twin", c.ping(a.addr())).await;
    c.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
    // With A gone its identity is free again.
    let again = Peer::start(config).await.unwrap();
    again.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn tcp_listener_survives_hostile_connections_and_keeps_serving() {
    let registry = start_registry().await;
    let mut b_config = public_config(&registry, "tcp-hostile", "b");
    b_config.tcp_listen = Some("127.0.0.1:0".parse().unwrap());
    b_config.tcp_idle_timeout = TEST_TCP_IDLE;
    let b = Peer::start(b_config).await.unwrap();
    let target = b.tcp_addr().unwrap();

    // Declared lengths the peer cannot accept: the connection is closed (spec §7.5).
    for declared in [1024 * 1024 + 1, u32::MAX] {
        let mut conn = TcpStream::connect(target).await.unwrap();
        conn.write_all(&declared.to_be_bytes()).await.unwrap();
        await_closed(&mut conn, &format!("declared length {declared}")).await;
        eprintln!("declared length {declared}: connection closed");
    }

    // Empty frames, then frames that are no Pilot frame at all: dropped, no reply, and the
    // connection is closed once no real frame came within the idle timeout.
    let mut noise = TcpStream::connect(target).await.unwrap();
    for _ in 0..100 {
        noise.write_all(&0u32.to_be_bytes()).await.unwrap();
    }
    for len in [1usize, 3, 64, 1500] {
        let mut frame = u32::try_from(len).unwrap().to_be_bytes().to_vec();
        frame.extend(std::iter::repeat_n(0xA5, len));
        noise.write_all(&frame).await.unwrap();
    }
    await_closed(&mut noise, "empty and garbage frames").await;

    // A frame cut off by the client closing: the connection is dropped.
    let mut cut = TcpStream::connect(target).await.unwrap();
    cut.write_all(&100u32.to_be_bytes()).await.unwrap();
    cut.write_all(&[7; 10]).await.unwrap();
    drop(cut);

    // Slowloris: a 1000-byte frame trickled one byte at a time never completes; the peer
    // closes the connection after the idle timeout instead of holding it for ever.
    let mut slow = TcpStream::connect(target).await.unwrap();
    slow.write_all(&1000u32.to_be_bytes()).await.unwrap();
    let mut closed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(&[1]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling connection kept its slot for 10 s");
    eprintln!("slowloris connection closed by the peer");

    // More idle connections than slots: the extra ones are refused, and the others are
    // evicted by the idle timeout, so they cannot keep honest peers out.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(TcpStream::connect(target).await.unwrap());
    }
    let peak = await_stats(&b, "idle connections accepted", |s| s.tcp_connections > 0).await;
    assert!(peak.tcp_connections <= 256, "{peak:?}");
    await_stats(&b, "idle connections evicted", |s| s.tcp_connections == 0).await;
    eprintln!(
        "{IDLE_CONNECTIONS} idle connections: at most 256 held ({peak:?}), all evicted when idle"
    );

    // An honest peer still gets through over TCP, while the idle sockets are still open on
    // the client side.
    let mut a_config = public_config(&registry, "tcp-hostile", "a");
    a_config.transport = Transport::Tcp;
    let a = Peer::start(a_config).await.unwrap();
    step("ping over TCP after the attacks", a.ping(b.addr())).await;
    let stats = step("stats", b.transport_stats()).await;
    assert!(stats.tcp_frames_in > 0, "{stats:?}");
    assert_eq!(stats.udp_frames_out, 0, "B answered over TCP: {stats:?}");
    drop(idle);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

/// Sends raw `bytes` on the control socket and returns the answer line (empty if none).
async fn raw_control(path: &std::path::Path, bytes: &[u8]) -> String {
    let (mut read, mut write) = UnixStream::connect(path).await.unwrap().into_split();
    // Written while we read: a server that stops reading early never drains a huge line, and
    // its answer must not wait for that.
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        let _ = write.shutdown().await;
    });
    let mut answer = String::new();
    let _ = tokio::time::timeout(STEP_TIMEOUT, read.read_to_string(&mut answer)).await;
    writer.abort();
    answer
}

#[tokio::test]
async fn control_socket_refuses_bad_requests_and_drops_silent_clients() {
    let registry = start_registry().await;
    let peer = std::sync::Arc::new(
        Peer::start(public_config(&registry, "control-hostile", "b"))
            .await
            .unwrap(),
    );
    let socket = identity_path("control-hostile", "b.sock");
    let _server = serve_control(&socket, std::sync::Arc::clone(&peer))
        .await
        .unwrap();

    for bad in [
        &b"not json\n"[..],
        b"{\"cmd\":\"launch\"}\n",
        b"{\"cmd\":\"approve\",\"node\":-1}\n",
        b"\xff\xfe\n",
        b"\n",
    ] {
        let answer = raw_control(&socket, bad).await;
        assert!(answer.contains("\"ok\":false"), "{bad:?} -> {answer}");
        assert!(
            answer.contains("bad control request"),
            "{bad:?} -> {answer}"
        );
    }
    let huge = vec![b'x'; 1024 * 1024];
    let answer = raw_control(&socket, &huge).await;
    assert!(answer.contains("longer than"), "huge line -> {answer}");

    // Approving or rejecting a node that never asked fails and changes nothing.
    for request in [
        ControlRequest::Approve { node: 999 },
        ControlRequest::Reject {
            node: 999,
            reason: String::new(),
        },
    ] {
        let err = control_call(&socket, &request).await.unwrap_err();
        assert!(err.to_string().contains("999"), "{err}");
    }
    let trusted = control_call(&socket, &ControlRequest::Trusted)
        .await
        .unwrap();
    assert_eq!(trusted["trusted"], serde_json::json!([]));

    // A client that connects and never sends a line is hung up on.
    let mut silent = UnixStream::connect(&socket).await.unwrap();
    let mut answer = String::new();
    let read = tokio::time::timeout(STEP_TIMEOUT, silent.read_to_string(&mut answer)).await;
    assert!(read.is_ok(), "a silent control client was never hung up on");
    assert!(answer.contains("no request line"), "{answer}");

    // Many clients at once are all answered.
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let socket = socket.clone();
            tokio::spawn(async move { control_call(&socket, &ControlRequest::Trusted).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    drop(_server);
    peer.stop().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn datagram_floods_stay_bounded_and_odd_datagrams_are_harmless() {
    let registry = start_registry().await;
    let a = Peer::start(public_config(&registry, "dgram-flood", "a"))
        .await
        .unwrap();
    let b = Peer::start(public_config(&registry, "dgram-flood", "b"))
        .await
        .unwrap();
    b.listen_datagrams(APP_PORT).await.unwrap();

    // A datagram to an unlistened port is dropped by B; an empty one is refused at the
    // sender with an error, not sent.
    step(
        "datagram to an unlistened port",
        a.send_datagram(b.addr(), 4001, b"x".to_vec()),
    )
    .await;
    let empty = a.send_datagram(b.addr(), APP_PORT, Vec::new()).await;
    assert!(matches!(empty, Err(PeerError::Node(_))), "{empty:?}");

    // Three queues' worth, unread: B keeps at most one queue and drops the rest.
    let flood = DATAGRAM_QUEUE_LEN * 3;
    for i in 0..flood {
        let payload = u32::try_from(i).unwrap().to_be_bytes().to_vec();
        step(
            "flood datagram",
            a.send_datagram(b.addr(), APP_PORT, payload),
        )
        .await;
        if i % 256 == 0 {
            // Let B's driver run, so the flood reaches it instead of the socket buffer.
            step("ping during the flood", a.ping(b.addr())).await;
        }
    }
    step("ping after the flood", a.ping(b.addr())).await;
    let mut queued = 0;
    while let Ok(datagram) = b.next_datagram(APP_PORT, Duration::from_millis(200)).await {
        assert_eq!(datagram.payload.len(), 4);
        queued += 1;
        assert!(queued <= DATAGRAM_QUEUE_LEN, "more queued than the bound");
    }
    eprintln!("flood of {flood} datagrams: {queued} queued (bound {DATAGRAM_QUEUE_LEN})");
    assert!(queued > 0);
    step("ping after draining", b.ping(a.addr())).await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn send_datagram_command_delivers_to_a_fresh_node() {
    let registry = start_registry().await;
    let b = Peer::start(public_config(&registry, "cli-datagram", "b"))
        .await
        .unwrap();
    b.listen_datagrams(APP_PORT).await.unwrap();
    // A one-shot command meets B for the first time: its datagram must not be lost while the
    // tunnel's key exchange is still under way when the command exits.
    // The command's own --timeout-secs bounds it.
    let registry_addr = registry.local_addr().to_string();
    let (node, port) = (b.addr().to_string(), APP_PORT.to_string());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pilot-peer"))
            .args(["--registry", &registry_addr, "--timeout-secs", "10"])
            .args(["send-datagram", &node, &port, "--data", "hello dgram"])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let datagram = step(
        "datagram from the CLI",
        b.next_datagram(APP_PORT, STEP_TIMEOUT),
    )
    .await;
    assert_eq!(datagram.payload, b"hello dgram");
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[test]
fn registry_stops_cleanly_on_a_sigterm_right_after_its_ready_line() {
    use std::io::BufRead as _;
    // The race is between printing the line and installing the handler, so try a few times.
    for attempt in 0..10 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pilot-registry"))
            .args(["--listen", "127.0.0.1:0", "--log", "warn"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("pilot-registry listening on"), "{line}");
        let pid = child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("attempt {attempt}: still running {STEP_TIMEOUT:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "attempt {attempt}: {status}");
    }
}
