//! The e2e world's relay: killed like a crashed process, restarted on the same port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use conformance::e2e::relay::{loopback_config, RelayServer};
use conformance::e2e::RELAY_IP;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

/// `GET /healthz` over a fresh connection; the status line, or `None` if refused or closed.
async fn healthz(addr: SocketAddr) -> Option<String> {
    let mut tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn killed_relay_refuses_connections_and_restarts_on_the_same_port() {
    let registry: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = loopback_config(RELAY_IP, registry).unwrap();
    let mut relay = RelayServer::start(config, SocketAddr::new(RELAY_IP, 0)).unwrap();
    let addr = relay.http_addr();
    assert_eq!(addr.ip(), RELAY_IP);
    assert_eq!(healthz(addr).await.as_deref(), Some("HTTP/1.1 200 OK"));

    relay.kill();
    assert_eq!(healthz(addr).await, None, "a killed relay answers nothing");

    relay.restart().await.unwrap();
    assert_eq!(relay.http_addr(), addr);
    assert_eq!(healthz(addr).await.as_deref(), Some("HTTP/1.1 200 OK"));
}
