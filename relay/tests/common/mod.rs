//! Shared helpers of the integration tests: an in-process relay on 127.0.0.1:0, a real
//! WebSocket client, and the auth exchange.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use futures_util::{SinkExt as _, StreamExt as _};
use pilot_relay::auth::{AuthReply, Challenge, Ready, TokenPolicy};
use pilot_relay::token::TokenKey;
use pilot_relay::{Config, Relay};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for any single wait in a test, so a broken relay fails the test instead of
/// hanging it. Not a performance assertion.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn token_key() -> TokenKey {
    TokenKey::new(vec![0x42; 32]).unwrap()
}

/// A development configuration: no token needed, loopback allowed, UDP on 127.0.0.1.
pub fn open_config() -> Config {
    let mut config = Config::new(TokenPolicy::Open(None));
    config.udp_bind_ip = "127.0.0.1".parse().unwrap();
    config.allow_dest = vec!["127.0.0.0/8".parse().unwrap()];
    config.drain_timeout = Duration::from_secs(3);
    config
}

/// Like [`open_config`] but a token signed with [`token_key`] is required.
pub fn token_config() -> Config {
    let mut config = open_config();
    config.tokens = TokenPolicy::Required(token_key());
    config
}

pub struct TestRelay {
    pub addr: SocketAddr,
    pub relay: Relay,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), pilot_relay::ServeError>>,
}

impl TestRelay {
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = Relay::new(config).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = relay.clone();
        let task = tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            addr,
            relay,
            stop: Some(stop),
            task,
        }
    }

    /// Signals shutdown (as SIGTERM would).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn connect(&self, path: &str, protocol: &str) -> Ws {
        try_connect(self.addr, path, protocol, None).await.unwrap()
    }

    pub async fn connect_relay(&self) -> Ws {
        self.connect("/v1/relay", "pilot-relay.v1").await
    }
}

pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
    protocol: &str,
    bearer: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if !protocol.is_empty() {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    }
    if let Some(token) = bearer {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out")?;
    Ok(ws)
}

/// A `/v1/relay` client whose TCP receive buffer is as small as the OS allows, so that a
/// client that stops reading backs the relay's writes up quickly.
pub async fn connect_relay_small_recv_buffer(addr: SocketAddr) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/v1/relay")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "pilot-relay.v1".parse().unwrap());
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)),
    )
    .await
    .expect("connect timed out")
    .unwrap();
    ws
}

pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn identity_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().as_bytes())
}

/// Next message from the relay, skipping pings; panics after [`WAIT`].
pub async fn next_message(ws: &mut Ws) -> Option<Message> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no message from the relay in time");
        match msg {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            Some(Err(_)) | None => return None,
        }
    }
}

pub async fn read_challenge(ws: &mut Ws) -> Challenge {
    match next_message(ws).await {
        Some(Message::Text(text)) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a challenge, got {other:?}"),
    }
}

pub fn auth_reply(key: &SigningKey, signed: &str, token: Option<String>) -> Message {
    let sig = key.sign(signed.as_bytes());
    let reply = AuthReply {
        kind: "auth".into(),
        public_key: STANDARD.encode(key.verifying_key().as_bytes()),
        sig: STANDARD.encode(sig.to_bytes()),
        token,
    };
    Message::Text(serde_json::to_string(&reply).unwrap().into())
}

/// Reads the challenge and sends a correctly signed reply; the relay's answer is left unread.
pub async fn authenticate(ws: &mut Ws, key: &SigningKey, token: Option<String>) {
    let challenge = read_challenge(ws).await;
    ws.send(auth_reply(key, &challenge.signed_string(), token))
        .await
        .unwrap();
}

/// Authenticates and returns the session's UDP address, panicking on any failure.
pub async fn open_session(ws: &mut Ws, key: &SigningKey, token: Option<String>) -> SocketAddr {
    authenticate(ws, key, token).await;
    match next_message(ws).await {
        Some(Message::Text(text)) => {
            let ready: Ready = serde_json::from_str(text.as_str()).unwrap();
            assert_eq!(ready.kind, "ready");
            ready.udp_addr.parse().unwrap()
        }
        other => panic!("expected ready, got {other:?}"),
    }
}

/// Reads until a close frame arrives and returns its code.
pub async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match next_message(ws).await {
            Some(Message::Close(Some(CloseFrame { code, .. }))) => return u16::from(code),
            Some(Message::Close(None)) => panic!("close frame without a code"),
            Some(_) => continue,
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// Builds a client → relay message: address header ‖ frame.
pub fn to(dest: SocketAddr, frame: &[u8]) -> Message {
    Message::Binary(pilot_relay::header::encode(&dest, frame).into())
}

/// A PILS-shaped frame: magic and enough bytes for the header and tag (spec §3.1).
pub fn pils(tag: u8) -> Vec<u8> {
    let mut frame = b"PILS".to_vec();
    frame.extend_from_slice(&[tag; 40]);
    frame
}

pub async fn udp_peer() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Next datagram at `sock`; panics after [`WAIT`].
pub async fn recv_datagram(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("no datagram in time")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

/// Polls `cond` until it holds; panics after [`WAIT`]. Used to wait for the relay to have
/// processed messages that leave no other trace (refusals).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Plain HTTP GET over a raw TCP connection; returns (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
