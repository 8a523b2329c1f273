//! Two in-process `pilot-peer` drivers and the in-process registry, all on 127.0.0.1:
//! ping, echo (port 7) and data exchange (port 1001) in both directions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use conformance::peer::{ack_line, Peer, PeerConfig, PeerError, RegistryClient};
use conformance::registry_server::{Config, RegistryHandle, RegistryServer};
use pilot_core::registry::{Lookup, Request, Response};
use pilot_core::services::dataexchange::FrameType;
use pilot_core::services::exchange_server::ExchangeReply;

/// Upper bound for each step, so a broken exchange fails the test instead of hanging it.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

async fn start_registry() -> RegistryHandle {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    RegistryServer::bind(config).await.unwrap().spawn()
}

fn identity_path(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pilot-peer-test-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&path);
    path
}

async fn start_peer(registry: &RegistryHandle, test: &str, name: &str, public: bool) -> Peer {
    let mut config = PeerConfig::new(registry.local_addr(), identity_path(test, name));
    config.public = public;
    Peer::start(config).await.unwrap()
}

async fn step<T>(what: &str, op: impl Future<Output = Result<T, PeerError>>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, op).await {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => panic!("{what}: {err}"),
        Err(_) => panic!("{what}: no answer within {STEP_TIMEOUT:?}"),
    }
}

#[tokio::test]
async fn public_peers_ping_echo_and_exchange_messages_both_ways() {
    let registry = start_registry().await;
    let a = start_peer(&registry, "both-ways", "a", true).await;
    let b = start_peer(&registry, "both-ways", "b", true).await;
    eprintln!("registry {}", registry.local_addr());
    eprintln!("A = {} on udp {}", a.addr(), a.udp_addr());
    eprintln!("B = {} on udp {}", b.addr(), b.udp_addr());
    assert_ne!(a.addr(), b.addr());

    for (from, from_name, to, to_name) in [(&a, "A", &b, "B"), (&b, "B", &a, "A")] {
        let rtt = step("ping", from.ping(to.addr())).await;
        eprintln!("{from_name} ping {to_name}: pong in {rtt:?}");

        let message = format!("hello {to_name}, this is {from_name}");
        let echoed = step(
            "echo",
            from.exchange(to.addr(), 7, message.clone().into_bytes()),
        )
        .await;
        eprintln!(
            "{from_name} -> {to_name}:7 {message:?} -> {:?}",
            String::from_utf8_lossy(&echoed)
        );
        assert_eq!(echoed, message.as_bytes());

        let text = format!("message from {from_name}");
        let reply = step(
            "send-message",
            from.send_message(to.addr(), FrameType::Text, text.clone().into_bytes()),
        )
        .await;
        eprintln!(
            "{from_name} -> {to_name}:1001 TEXT {text:?} -> {}",
            ack_line(&reply)
        );
        assert_eq!(
            reply,
            ExchangeReply::Acked {
                frame_type: FrameType::Text,
                len: text.len() as u64
            }
        );
        assert_eq!(ack_line(&reply), format!("ACK TEXT {} bytes", text.len()));
    }

    let file = vec![0x5a; 3000];
    let reply = step(
        "send-file",
        b.send_file(a.addr(), "report.bin".to_string(), file.clone()),
    )
    .await;
    eprintln!(
        "B -> A:1001 FILE report.bin ({} bytes) -> {}",
        file.len(),
        ack_line(&reply)
    );
    assert_eq!(ack_line(&reply), format!("ACK FILE {} bytes", file.len()));

    let json = br#"{"n":1}"#.to_vec();
    let reply = step(
        "send-message json",
        a.send_message(b.addr(), FrameType::Json, json.clone()),
    )
    .await;
    eprintln!("A -> B:1001 JSON -> {}", ack_line(&reply));
    assert_eq!(ack_line(&reply), format!("ACK JSON {} bytes", json.len()));

    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn private_peer_cannot_be_resolved_by_a_stranger() {
    let registry = start_registry().await;
    let a = start_peer(&registry, "private", "a", false).await;
    let b = start_peer(&registry, "private", "b", false).await;
    let err = tokio::time::timeout(STEP_TIMEOUT, a.ping(b.addr()))
        .await
        .expect("the registry answers at once")
        .expect_err("B is private and does not trust A");
    assert!(matches!(err, PeerError::RegistryRefused(_)), "{err}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn identity_file_keeps_the_node_address_across_restarts() {
    let registry = start_registry().await;
    let path = identity_path("restart", "a");
    let first = Peer::start(PeerConfig::new(registry.local_addr(), path.clone()))
        .await
        .unwrap();
    let addr = first.addr();
    let key = first.public_key();
    first.shutdown().await.unwrap();
    let second = Peer::start(PeerConfig::new(registry.local_addr(), path))
        .await
        .unwrap();
    assert_eq!(second.addr(), addr);
    assert_eq!(second.public_key(), key);
    second.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn deregistered_peer_no_longer_resolves() {
    let registry = start_registry().await;
    let a = start_peer(&registry, "deregister", "a", true).await;
    let mut config = PeerConfig::new(registry.local_addr(), identity_path("deregister", "b"));
    config.public = true;
    config.deregister_on_shutdown = true;
    let b = Peer::start(config).await.unwrap();
    let b_addr = b.addr();
    b.shutdown().await.unwrap();
    let err = tokio::time::timeout(STEP_TIMEOUT, a.ping(b_addr))
        .await
        .expect("the registry answers at once")
        .expect_err("B left the registry");
    assert!(
        matches!(&err, PeerError::RegistryRefused(text) if text.contains("not found")),
        "{err}"
    );
    a.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn stream_to_a_closed_port_fails_instead_of_hanging() {
    let registry = start_registry().await;
    let a = start_peer(&registry, "closed-port", "a", true).await;
    let b = start_peer(&registry, "closed-port", "b", true).await;
    // Nothing listens on port 9 of B: its SYN is answered with RST.
    let err = tokio::time::timeout(STEP_TIMEOUT, a.exchange(b.addr(), 9, b"anyone?".to_vec()))
        .await
        .expect("the RST comes back at once")
        .expect_err("no service on port 9");
    assert!(matches!(err, PeerError::StreamFailed), "{err}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscriber_receives_an_event_published_at_the_broker() {
    let registry = start_registry().await;
    let a = start_peer(&registry, "pubsub", "a", true).await;
    let b = start_peer(&registry, "pubsub", "b", true).await;
    let mut subscription = step("subscribe", a.subscribe(b.addr(), b"news".to_vec())).await;
    // The broker forwards only what it receives after reading the subscription, which travels
    // on another stream: publish until one arrives.
    let received = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            step(
                "publish",
                a.publish(b.addr(), b"news".to_vec(), b"hello subscribers".to_vec()),
            )
            .await;
            if let Ok(event) =
                tokio::time::timeout(Duration::from_millis(200), subscription.next()).await
            {
                break event;
            }
        }
    })
    .await
    .expect("an event within the step timeout")
    .expect("the subscription is still open");
    eprintln!(
        "A subscribed at B, A published at B on another stream: topic {:?} payload {:?}",
        String::from_utf8_lossy(&received.0),
        String::from_utf8_lossy(&received.1)
    );
    assert_eq!(received, (b"news".to_vec(), b"hello subscribers".to_vec()));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn peer_registers_again_after_the_registry_restarts() {
    let registry = start_registry().await;
    let registry_addr = registry.local_addr();
    let mut config = PeerConfig::new(registry_addr, identity_path("reregister", "a"));
    config.public = true;
    config.heartbeat_interval = Duration::from_millis(100);
    let a = Peer::start(config).await.unwrap();
    registry.shutdown().await.unwrap();

    // A fresh, empty registry on the same address: A's next heartbeat gets "node not found".
    let config = Config {
        listen: registry_addr,
        ..Config::default()
    };
    let registry = RegistryServer::bind(config).await.unwrap().spawn();
    let mut client = RegistryClient::new(registry_addr);
    let lookup = Request::Lookup(Lookup {
        node_id: a.addr().node,
    });
    tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            if let Ok(Response::LookupOk(ok)) = client.call(&lookup).await {
                break ok;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .map(|ok| assert_eq!(ok.public_key.0, a.public_key()))
    .expect("A registers again under its old node ID");

    let b = start_peer(&registry, "reregister", "b", false).await;
    let rtt = step("ping after re-registration", b.ping(a.addr())).await;
    eprintln!("B pinged re-registered A in {rtt:?}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}
