//! `/v1/registry` scenarios: the pipe reaches the configured registry and nothing else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::IpAddr;

use common::*;
use futures_util::{FutureExt as _, SinkExt as _};
use pilot_relay::{close, token};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A registry request as the client would frame it (spec §9.1: u32 BE length ‖ JSON).
fn framed(json: &str) -> Vec<u8> {
    let mut out = (json.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

#[tokio::test]
async fn registry_pipe_reaches_only_the_configured_address() {
    let registry = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_addr = elsewhere.local_addr().unwrap();
    let mut config = open_config();
    config.registry = Some(registry.local_addr().unwrap().to_string());
    let relay = TestRelay::start(config).await;

    // The client tries to steer the pipe elsewhere; the relay has no such knob.
    let path = format!("/v1/registry?addr={elsewhere_addr}&host={elsewhere_addr}");
    let mut ws = relay.connect(&path, "pilot-registry.v1").await;
    let request = framed(r#"{"type":"lookup","node_id":1}"#);
    ws.send(Message::Binary(request.clone().into()))
        .await
        .unwrap();

    let (mut conn, _) = tokio::time::timeout(WAIT, registry.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = vec![0u8; request.len()];
    tokio::time::timeout(WAIT, conn.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got, request,
        "bytes arrive unchanged at the configured registry"
    );

    let response = framed(r#"{"type":"lookup_ok"}"#);
    conn.write_all(&response).await.unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < response.len() {
        match next_message(&mut ws).await {
            Some(Message::Binary(bytes)) => echoed.extend_from_slice(&bytes),
            other => panic!("expected registry bytes, got {other:?}"),
        }
    }
    assert_eq!(echoed, response);
    assert!(
        elsewhere.accept().now_or_never().is_none(),
        "the other listener got no connection"
    );

    // The registry hanging up ends the pipe with a normal close.
    drop(conn);
    assert_eq!(close_code(&mut ws).await, close::NORMAL);
}

/// Opens a pipe, sends one request and returns the IP the registry saw it come from.
async fn registry_source_ip(config_for: impl FnOnce(&mut pilot_relay::Config)) -> IpAddr {
    let registry = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = open_config();
    config.registry = Some(registry.local_addr().unwrap().to_string());
    config_for(&mut config);
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect("/v1/registry", "pilot-registry.v1").await;
    ws.send(Message::Binary(framed("{}").into())).await.unwrap();
    let (_conn, from) = tokio::time::timeout(WAIT, registry.accept())
        .await
        .unwrap()
        .unwrap();
    from.ip()
}

#[tokio::test]
async fn registry_connection_leaves_from_a_specific_udp_bind_ip() {
    // spec §9.3: the registry takes real_addr's IP from this connection, so it must be the
    // address the session sockets answer on, not the OS default (127.0.0.1 here).
    let seen = registry_source_ip(|config| config.udp_bind_ip = "127.0.0.2".parse().unwrap()).await;
    assert_eq!(seen, "127.0.0.2".parse::<IpAddr>().unwrap());
}

#[tokio::test]
async fn registry_bind_ip_overrides_the_udp_bind_ip() {
    let seen = registry_source_ip(|config| {
        config.udp_bind_ip = "127.0.0.2".parse().unwrap();
        config.registry_bind_ip = Some("127.0.0.3".parse().unwrap());
    })
    .await;
    assert_eq!(seen, "127.0.0.3".parse::<IpAddr>().unwrap());
}

#[tokio::test]
async fn wildcard_udp_bind_ip_leaves_the_registry_source_to_the_os() {
    let seen = registry_source_ip(|config| config.udp_bind_ip = "0.0.0.0".parse().unwrap()).await;
    assert_eq!(seen, "127.0.0.1".parse::<IpAddr>().unwrap());
}

#[tokio::test]
async fn registry_route_is_absent_without_configuration() {
    let relay = TestRelay::start(open_config()).await;
    let err = try_connect(relay.addr, "/v1/registry", "pilot-registry.v1", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn registry_pipe_needs_a_bearer_token_when_tokens_are_required() {
    let registry = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = token_config();
    config.registry = Some(registry.local_addr().unwrap().to_string());
    let relay = TestRelay::start(config).await;

    let err = try_connect(relay.addr, "/v1/registry", "pilot-registry.v1", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let forged = token::mint(
        &token::TokenKey::new(vec![1; 32]).unwrap(),
        "acme",
        pilot_relay::unix_now() + 60,
    )
    .unwrap();
    let err = try_connect(
        relay.addr,
        "/v1/registry",
        "pilot-registry.v1",
        Some(&forged),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert!(registry.accept().now_or_never().is_none());

    let valid = token::mint(&token_key(), "acme", pilot_relay::unix_now() + 60).unwrap();
    let _ws = try_connect(
        relay.addr,
        "/v1/registry",
        "pilot-registry.v1",
        Some(&valid),
    )
    .await
    .unwrap();
    tokio::time::timeout(WAIT, registry.accept())
        .await
        .expect("the valid token opens the pipe")
        .unwrap();
}

#[tokio::test]
async fn oversized_registry_message_closes_the_pipe() {
    let registry = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = open_config();
    config.registry = Some(registry.local_addr().unwrap().to_string());
    config.registry_max_message_bytes = 1024;
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect("/v1/registry", "pilot-registry.v1").await;
    ws.send(Message::Binary(vec![b'x'; 2048].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, close::MESSAGE_TOO_BIG);
}
