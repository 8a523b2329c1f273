//! The Worker end to end: a Cloudflare Worker (`worker-shim` under `wrangler dev`) joins the
//! overlay through the relay, becomes trusted by a private native peer and talks to it over
//! every service, survives a relay crash mid-transfer and a Durable Object restart.
//!
//! One world (registry on 127.0.0.1, relay on 127.0.0.2, native peer, Worker) serves every
//! step, because starting workerd is the expensive part. Each step asserts its outcome.
//! Needs the built Worker and its npm packages: run it with `make test-e2e`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::Duration;

use conformance::e2e::scenario::{self, Ends, STEP_TIMEOUT};
use conformance::e2e::{World, WorldConfig, RELAY_IP};
use pilot_core::services::dataexchange::FrameType;

/// Bytes of the transfer the relay is killed during.
const TRANSFER_BYTES: usize = 1024 * 1024;
/// The relay is killed once the peer has read this much of the transfer.
const KILL_AFTER_BYTES: usize = 256 * 1024;
/// The relay stays down this long: long enough for the Worker to notice.
const RELAY_DOWNTIME: Duration = Duration::from_secs(1);

fn step(name: &str) {
    eprintln!("--- {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the built Worker, wrangler and 127.0.0.2: run `make test-e2e` (part of `make test`)"]
async fn worker_joins_trusts_talks_and_survives_restarts() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let mut world = World::start(WorldConfig::from_env()).await.unwrap();

    step("1. the Worker registers through the relay");
    let (ends, info) = Ends::of(&world).await.unwrap();
    assert!(info.node_id > 0, "a node ID was assigned: {info:?}");
    let endpoint: SocketAddr = info.endpoint.clone().unwrap().parse().unwrap();
    assert_eq!(
        endpoint.ip(),
        RELAY_IP,
        "the Worker's UDP endpoint is a relay session socket"
    );

    step("2a. trust: the native peer asks, the Worker approves through its API");
    scenario::peer_asks_worker_for_trust(&world, &ends)
        .await
        .unwrap();
    assert!(scenario::trusts(&ends.api, ends.peer).await.unwrap());
    assert!(world
        .peer
        .trusted()
        .await
        .unwrap()
        .contains(&ends.worker.node));

    step("2b. trust: the Worker asks a second private peer, which approves");
    let second = world.start_extra_peer("second").await.unwrap();
    scenario::worker_asks_peer_for_trust(&second, &ends)
        .await
        .unwrap();
    assert!(second.trusted().await.unwrap().contains(&ends.worker.node));
    assert!(scenario::trusts(&ends.api, second.addr()).await.unwrap());
    second.shutdown().await.unwrap();

    // Address learning: the registry recorded the relay's IP and the session's port
    // (relay/PROTOCOL.md §6), resolved as the now-trusted peer.
    let real_addr = world.registered_real_addr(ends.worker).await.unwrap();
    assert_eq!(
        real_addr, endpoint,
        "registered real_addr is the relay session"
    );

    step("3a. stream to echo (port 7)");
    let back = scenario::echo(&ends, b"hello through the relay")
        .await
        .unwrap();
    assert_eq!(back, b"hello through the relay");

    step("3b. send-message to 1001");
    let (reply, received) = scenario::message(&world, &ends, "hello pilot")
        .await
        .unwrap();
    assert_eq!(reply, "ACK TEXT 11 bytes");
    assert_eq!(received.from, ends.worker);
    assert_eq!(received.frame_type, FrameType::Text);
    assert_eq!(received.payload, b"hello pilot");

    step("3c. event stream subscribe/publish (1002)");
    let (event, _publishes) = scenario::publish_and_receive(&ends, "e2e.news", b"extra!")
        .await
        .unwrap();
    assert_eq!(event.topic, "e2e.news");
    assert_eq!(event.data, b"extra!");

    step("3d. datagrams both ways");
    let at_peer = scenario::datagram_to_peer(&world, &ends, 4000, b"dgram to peer")
        .await
        .unwrap();
    assert_eq!(at_peer.from, ends.worker);
    assert_eq!(at_peer.payload, b"dgram to peer");
    let at_worker = scenario::datagram_to_worker(&world, &ends, 4001, b"dgram to worker")
        .await
        .unwrap();
    assert_eq!(
        at_worker.from.parse::<pilot_core::addr::Addr>().unwrap(),
        ends.peer
    );
    assert_eq!(at_worker.port, 4001);
    assert_eq!(at_worker.data, b"dgram to worker");

    step("3e. the native peer dials the Worker");
    let (conn, got, back) =
        scenario::peer_dials_worker(&world, &ends, 5000, b"peer-initiated", b"served")
            .await
            .unwrap();
    assert_eq!(
        conn.peer.parse::<pilot_core::addr::Addr>().unwrap(),
        ends.peer
    );
    assert_eq!(got, b"peer-initiated");
    assert_eq!(back, b"served");

    step("5. relay killed and restarted during a 1 MiB Worker -> peer transfer");
    let transfer = scenario::start_transfer(&world, &ends, 6000, TRANSFER_BYTES)
        .await
        .unwrap();
    transfer
        .progress
        .reached(KILL_AFTER_BYTES, STEP_TIMEOUT)
        .await
        .unwrap();
    world.relay.kill();
    let at_kill = transfer.progress.get();
    tokio::time::sleep(RELAY_DOWNTIME).await;
    world.relay.restart().await.unwrap();
    let done = transfer.finish().await.unwrap();
    assert!(at_kill < TRANSFER_BYTES, "the relay died mid-transfer");
    assert_eq!(done.received, TRANSFER_BYTES, "no byte lost");
    assert_eq!(done.received_sha256, done.sent_sha256, "no byte changed");
    let info = world.wait_registered(STEP_TIMEOUT).await.unwrap();
    let new_endpoint: SocketAddr = info.endpoint.clone().unwrap().parse().unwrap();
    assert_eq!(new_endpoint.ip(), RELAY_IP);
    scenario::poll(STEP_TIMEOUT, "the Worker to re-register", || async {
        Ok(world.registered_real_addr(ends.worker).await? == new_endpoint)
    })
    .await
    .unwrap();

    step("6. the Durable Object restarts with the same storage");
    world.worker.restart().await.unwrap();
    let (after, info_after) = Ends::of(&world).await.unwrap();
    assert_eq!(info_after.node_id, info.node_id, "same node ID");
    assert_eq!(info_after.address, info.address);
    assert_eq!(info_after.public_key, info.public_key, "same identity");
    assert!(
        scenario::trusts(&after.api, ends.peer).await.unwrap(),
        "the restored trust set is listed"
    );
    // The Worker comes back with a new relay session and new tunnel keys; its first packets
    // (this echo) show the peer both.
    let back = scenario::echo(&after, b"after the restart").await.unwrap();
    assert_eq!(back, b"after the restart");
    // The Worker is private: its trust gate admits the peer's stream only if the trust set
    // came back from storage (spec §6.8).
    let (_, got, back) =
        scenario::peer_dials_worker(&world, &after, 5001, b"still trusted?", b"yes")
            .await
            .unwrap();
    assert_eq!(got, b"still trusted?");
    assert_eq!(back, b"yes");

    world.shutdown().await.unwrap();
}
