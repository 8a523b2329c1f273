//! The whole engine as one JS class: pilot-core's sans-IO [`pilot_core::node::Node`]
//! (spec §6–§8, §10).
//!
//! The driver feeds it received frames ([`Node::handle_frame`]), registry answers
//! ([`Node::provide_peer_key`]), commands (`dial`, `write`, …) and ticks, then drains
//! [`Node::poll_output`] until it returns a `timeout` (or `null`) and sleeps until then.
//! Times are milliseconds on the driver's monotonic clock, as everywhere in this package.
//!
//! Randomness: the engine draws from a ChaCha20 CSPRNG. Its 32-byte seed comes from
//! `crypto.getRandomValues` unless the caller passes one (`rngSeed`), which makes a run
//! reproducible byte for byte: the cross-implementation test replays a native transcript
//! with it. Never pass a fixed seed in production: nonce prefixes and keys would repeat.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use js_sys::Uint8Array;
use pilot_core::addr::Addr;
use pilot_core::keyexchange::{KexError, PathId};
use pilot_core::node::{self, ConnectionId, Event, Input, NodeConfig, NodeError, Output};
use pilot_core::registry::Response;
use pilot_core::services::broker::BrokerConfig;
use pilot_core::services::dataexchange::{Frame, FrameType};
use pilot_core::services::echo::EchoConfig;
use pilot_core::services::exchange_server::{ExchangeConfig, ExchangeReply};
use pilot_core::services::trust_service::{RequestPath, TrustConfig, TrustEvent};
use pilot_core::stream::{self, StreamError};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use zeroize::Zeroizing;

use crate::addr::addr_object;
use crate::error::PilotError;
use crate::js::{array, get, instant, millis, Obj};
use crate::rng;

/// Largest integer a JS number holds exactly (2^53 − 1): path and connection IDs above it
/// would be rounded.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Bytes `read` returns at most when the caller gives no limit.
const DEFAULT_READ_BYTES: usize = 64 * 1024;
/// Milliseconds in a second, for the Duration options.
const MILLIS_PER_SECOND: f64 = 1_000.0;

#[wasm_bindgen(typescript_custom_section)]
const TS_NODE: &str = r#"
/** An address argument: text (`1:0000.0000.0007`), `{ network, node }`, or a node ID in our own network. */
export type AddrLike = string | number | { network: number; node: number };

/**
 * Options of a `Node`; every field is optional and defaults to the engine's value (the
 * spec's, with every built-in service on, as the Go daemons run them). Times in ms.
 */
export interface NodeOptions {
  /** Private node (spec §6.8): SYNs and datagrams from untrusted nodes are dropped. Default true. */
  private?: boolean;
  maxConnections?: number;
  maxConnectionsPerPort?: number;
  acceptBacklog?: number;
  /** Split frames above 1223 bytes into PILF fragments (spec §3.8). Default false. */
  fragmentLargeFrames?: boolean;
  /** Unix time in seconds at the driver's time 0 (trust message timestamps). Default 0. */
  unixSecsAtZero?: number;
  /** Stream settings (spec §8). `null` disables a timer. */
  stream?: {
    mss?: number;
    receiveCapacitySegments?: number;
    maxOutOfOrderSegments?: number;
    sendBufferBytes?: number;
    nagle?: boolean;
    keepaliveIdleMs?: number | null;
    idleTimeoutMs?: number | null;
  };
  /** Built-in services: `false` disables one, an object tunes it. */
  echo?: false | { maxConnections?: number; maxUnflushedBytes?: number };
  dataExchange?: false | { maxConnections?: number };
  eventStream?: false | { maxConnections?: number; maxUnflushedBytes?: number };
  trust?: false | { autoApprove?: boolean };
}

/** An event of the node; `type` names it, the other fields depend on it. */
export type NodeEvent =
  | { type: "peerSessionUp"; node: number; rekey: boolean }
  | { type: "peerSessionDown"; node: number }
  | { type: "peerUnreachable"; node: number }
  | { type: "needPeerKey"; node: number }
  | { type: "streamOpened"; conn: number }
  | { type: "streamAccepted"; conn: number; port: number; peer: PilotAddr; peerPort: number }
  | { type: "streamReadable"; conn: number }
  | { type: "streamWritable"; conn: number }
  | { type: "streamPeerClosed"; conn: number }
  | { type: "streamReset"; conn: number; timedOut: boolean }
  | { type: "streamClosed"; conn: number }
  | { type: "datagram"; from: PilotAddr; srcPort: number; dstPort: number; payload: Uint8Array }
  | { type: "pong"; from: PilotAddr; payload: Uint8Array }
  | { type: "messageReceived"; from: PilotAddr; frameType: MessageType; filename?: string; payload: Uint8Array }
  | { type: "messageAcked"; conn: number; peer: PilotAddr; ok: boolean; frameType: MessageType; len?: number; reason?: string }
  | { type: "brokerSubscribed"; from: PilotAddr; topic: Uint8Array }
  | { type: "eventReceived"; conn: number; topic: Uint8Array; payload: Uint8Array }
  | { type: "trustRequestPending"; node: number; justification: string; relayed: boolean }
  | { type: "trusted"; node: number }
  | { type: "trustRejected"; node: number; reason: string }
  | { type: "trustRevoked"; node: number; reason: string }
  | { type: "registryRequest"; json: string }
  | { type: "error"; code: string; message: string };

/** Data exchange frame types (spec §10.3); `other:<n>` for types this engine does not interpret. */
export type MessageType = "text" | "binary" | "json" | "file" | `other:${number}`;

/** One output of `Node.pollOutput()`. */
export type NodeOutput =
  | { kind: "transmit"; path: number; bytes: Uint8Array }
  | { kind: "event"; event: NodeEvent }
  | { kind: "timeout"; at: number };
"#;

/// A Pilot node: one identity, its peers, streams, datagrams and built-in services.
#[wasm_bindgen]
pub struct Node {
    inner: node::Node<ChaCha20Rng>,
    identity_public: [u8; 32],
}

#[wasm_bindgen]
impl Node {
    /// A node at `address` (text, `{ network, node }`) with the Ed25519 identity of the
    /// 32-byte RFC 8032 `identitySeed` (drawn from the node's CSPRNG when absent), engine
    /// `options` (see `NodeOptions`) and, for reproducible tests only, a 32-byte `rngSeed`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "string | { network: number; node: number }")]
        address: JsValue,
        identity_seed: Option<Vec<u8>>,
        #[wasm_bindgen(unchecked_param_type = "NodeOptions")] options: JsValue,
        rng_seed: Option<Vec<u8>>,
    ) -> Result<Node, PilotError> {
        let addr = addr_arg(&address, None)?;
        let config = node_config(&options)?;
        let rng_seed = match rng_seed {
            Some(seed) => Zeroizing::new(array::<32>("rngSeed", &seed)?),
            None => Zeroizing::new(rng::random_array::<32>()?),
        };
        let mut rng = ChaCha20Rng::from_seed(*rng_seed);
        let identity_seed = match identity_seed {
            Some(seed) => Zeroizing::new(array::<32>("identitySeed", &seed)?),
            None => {
                let mut seed = Zeroizing::new([0u8; 32]);
                rand_chacha::rand_core::RngCore::fill_bytes(&mut rng, seed.as_mut());
                seed
            }
        };
        let identity_public = pilot_core::crypto::Identity::from_seed(&identity_seed).public_key();
        Ok(Node {
            inner: node::Node::new(config, addr, &identity_seed, rng),
            identity_public,
        })
    }

    /// Our address, as `PilotAddr`.
    #[wasm_bindgen(getter, unchecked_return_type = "PilotAddr")]
    pub fn address(&self) -> JsValue {
        addr_object(self.inner.addr()).build()
    }

    /// Our Ed25519 public key (what the registry holds for us).
    #[wasm_bindgen(getter, js_name = identityPublicKey)]
    pub fn identity_public_key(&self) -> Vec<u8> {
        self.identity_public.to_vec()
    }

    /// Our X25519 tunnel public key (drawn at construction, spec §4.1).
    #[wasm_bindgen(getter, js_name = tunnelPublicKey)]
    pub fn tunnel_public_key(&self) -> Vec<u8> {
        self.inner.tunnel_public_key().to_vec()
    }

    /// Open connections (any state, built-in services included).
    #[wasm_bindgen(getter, js_name = connectionCount)]
    pub fn connection_count(&self) -> usize {
        self.inner.connection_count()
    }

    /// Whether a tunnel session with `node` is installed.
    #[wasm_bindgen(js_name = hasSession)]
    pub fn has_session(&self, node: u32) -> bool {
        self.inner.has_session(node)
    }

    /// Whether `node` may open streams and send datagrams to us (spec §6.8).
    #[wasm_bindgen(js_name = isTrusted)]
    pub fn is_trusted(&self, node: u32) -> bool {
        self.inner.is_trusted(node)
    }

    /// A frame received on `pathId` (a UDP datagram, a TCP frame without its length, or the
    /// inner frame of a relay envelope whose sender is `relaySender`).
    ///
    /// Returns `undefined` when the node took it, else the `PilotError` code of why it was
    /// dropped (forged, replayed, malformed: normal traffic, not a failure, so not thrown).
    #[wasm_bindgen(js_name = handleFrame)]
    pub fn handle_frame(
        &mut self,
        now: f64,
        path_id: f64,
        bytes: Vec<u8>,
        relay_sender: Option<u32>,
    ) -> Result<Option<String>, PilotError> {
        let input = Input::Frame {
            path: path_arg(path_id)?,
            bytes,
            relay_sender,
        };
        match self.inner.handle_input(instant(now)?, input) {
            Ok(_) => Ok(None),
            Err(error) => Ok(Some(PilotError::from(error).code().to_string())),
        }
    }

    /// The registry's answer to a `needPeerKey` event: `node`'s 32-byte Ed25519 key, or
    /// `null` when the registry does not know it.
    #[wasm_bindgen(js_name = providePeerKey)]
    pub fn provide_peer_key(
        &mut self,
        now: f64,
        node: u32,
        key: Option<Vec<u8>>,
    ) -> Result<(), PilotError> {
        let key = key.map(|k| array::<32>("key", &k)).transpose()?;
        self.input(now, Input::PeerKey { node, key })
    }

    /// Fires the timers due at `now` (call it at the `timeout` of `pollOutput`).
    pub fn tick(&mut self, now: f64) -> Result<(), PilotError> {
        self.input(now, Input::Tick)
    }

    /// The next output, or `null` when drained and no timer is armed. Drain it after every
    /// call that takes `now` until it returns `{ kind: "timeout" }` or `null`.
    #[wasm_bindgen(js_name = pollOutput, unchecked_return_type = "NodeOutput | null")]
    pub fn poll_output(&mut self) -> JsValue {
        match self.inner.poll_output() {
            None => JsValue::NULL,
            Some(Output::Transmit { path, bytes }) => Obj::new()
                .set("kind", "transmit")
                .set("path", path.0 as f64)
                .bytes("bytes", &bytes)
                .build(),
            Some(Output::Event(event)) => Obj::new()
                .set("kind", "event")
                .set("event", event_object(event))
                .build(),
            Some(Output::Timeout(at)) => Obj::new()
                .set("kind", "timeout")
                .set("at", millis(at))
                .build(),
        }
    }

    /// The earliest time (ms) a timer is due, or `null`.
    #[wasm_bindgen(js_name = pollTimeout, unchecked_return_type = "number | null")]
    pub fn poll_timeout(&self) -> JsValue {
        self.inner
            .poll_timeout()
            .map_or(JsValue::NULL, |at| millis(at).into())
    }

    /// Opens a stream to `peer`:`port`; returns the connection ID (`streamOpened` follows).
    pub fn dial(
        &mut self,
        now: f64,
        #[wasm_bindgen(unchecked_param_type = "AddrLike")] peer: JsValue,
        port: u16,
    ) -> Result<f64, PilotError> {
        let peer = self.peer(&peer)?;
        let id = self.inner.dial(instant(now)?, peer, port)?;
        Ok(conn_number(id))
    }

    /// Accepts streams and datagrams on `port`.
    pub fn listen(&mut self, port: u16) -> Result<(), PilotError> {
        Ok(self.inner.listen(port)?)
    }

    /// Stops accepting on `port`; open connections stay.
    pub fn unlisten(&mut self, port: u16) -> Result<(), PilotError> {
        Ok(self.inner.unlisten(port)?)
    }

    /// Queues bytes on a stream; returns how many were taken (possibly fewer). Throws
    /// `STREAM_WOULD_BLOCK` when the send buffer is full: wait for `streamWritable`.
    pub fn write(&mut self, now: f64, conn: f64, bytes: &[u8]) -> Result<usize, PilotError> {
        Ok(self.inner.write(instant(now)?, conn_arg(conn)?, bytes)?)
    }

    /// Reads up to `maxBytes` (default 65536) received bytes. An empty array is the end of
    /// the stream; `null` means nothing to read yet (wait for `streamReadable`).
    #[wasm_bindgen(unchecked_return_type = "Uint8Array | null")]
    pub fn read(
        &mut self,
        now: f64,
        conn: f64,
        max_bytes: Option<usize>,
    ) -> Result<JsValue, PilotError> {
        let mut buf = vec![0u8; max_bytes.unwrap_or(DEFAULT_READ_BYTES).max(1)];
        match self.inner.read(instant(now)?, conn_arg(conn)?, &mut buf) {
            Ok(n) => Ok(Uint8Array::from(buf.get(..n).unwrap_or_default()).into()),
            Err(NodeError::Stream(StreamError::WouldBlock)) => Ok(JsValue::NULL),
            Err(error) => Err(error.into()),
        }
    }

    /// Closes a stream gracefully: written data first, then FIN.
    pub fn close(&mut self, now: f64, conn: f64) -> Result<(), PilotError> {
        Ok(self.inner.close(instant(now)?, conn_arg(conn)?)?)
    }

    /// Resets a stream at once.
    pub fn abort(&mut self, now: f64, conn: f64) -> Result<(), PilotError> {
        Ok(self.inner.abort(instant(now)?, conn_arg(conn)?)?)
    }

    /// Sends a datagram (spec §8.11) to `peer`:`port` from a fresh ephemeral port.
    #[wasm_bindgen(js_name = sendTo)]
    pub fn send_to(
        &mut self,
        now: f64,
        #[wasm_bindgen(unchecked_param_type = "AddrLike")] peer: JsValue,
        port: u16,
        bytes: &[u8],
    ) -> Result<(), PilotError> {
        let peer = self.peer(&peer)?;
        Ok(self.inner.send_to(instant(now)?, peer, port, bytes)?)
    }

    /// Pings `peer` (spec §8.10); the answer arrives as a `pong` event.
    pub fn ping(
        &mut self,
        now: f64,
        #[wasm_bindgen(unchecked_param_type = "AddrLike")] peer: JsValue,
        payload: &[u8],
    ) -> Result<(), PilotError> {
        let peer = self.peer(&peer)?;
        Ok(self.inner.ping(instant(now)?, peer, payload)?)
    }

    /// Starts a key exchange with `node` on `pathId` (a path the driver can send on).
    #[wasm_bindgen(js_name = addPeerPath)]
    pub fn add_peer_path(&mut self, now: f64, node: u32, path_id: f64) -> Result<(), PilotError> {
        let path = path_arg(path_id)?;
        Ok(self.inner.add_peer_path(instant(now)?, node, path)?)
    }

    /// Admits (or stops admitting) `node` on a private node, on the driver's authority.
    #[wasm_bindgen(js_name = setTrusted)]
    pub fn set_trusted(&mut self, node: u32, trusted: bool) -> Result<(), PilotError> {
        Ok(self.inner.set_trusted(node, trusted)?)
    }

    /// Asks `node` for trust over port 444 (spec §9.6).
    #[wasm_bindgen(js_name = trustRequest)]
    pub fn trust_request(
        &mut self,
        now: f64,
        node: u32,
        justification: &str,
    ) -> Result<(), PilotError> {
        Ok(self
            .inner
            .trust_request(instant(now)?, node, justification)?)
    }

    /// Approves `node`'s pending trust request.
    #[wasm_bindgen(js_name = trustApprove)]
    pub fn trust_approve(&mut self, now: f64, node: u32) -> Result<(), PilotError> {
        Ok(self.inner.trust_approve(instant(now)?, node)?)
    }

    /// Declines `node`'s pending trust request.
    #[wasm_bindgen(js_name = trustReject)]
    pub fn trust_reject(&mut self, now: f64, node: u32, reason: &str) -> Result<(), PilotError> {
        Ok(self.inner.trust_reject(instant(now)?, node, reason)?)
    }

    /// Withdraws trust in `node`.
    #[wasm_bindgen(js_name = trustRevoke)]
    pub fn trust_revoke(&mut self, now: f64, node: u32, reason: &str) -> Result<(), PilotError> {
        Ok(self.inner.trust_revoke(instant(now)?, node, reason)?)
    }

    /// The registry's JSON answer to the trust service's `poll_handshakes` request.
    #[wasm_bindgen(js_name = trustInbox)]
    pub fn trust_inbox(&mut self, now: f64, response_json: &str) -> Result<(), PilotError> {
        let response = Response::decode(response_json.as_bytes())
            .map_err(|e| PilotError::new("REGISTRY_DECODE", e.to_string()))?;
        let Response::PollHandshakesOk(inbox) = response else {
            return Err(PilotError::range("expected a poll_handshakes_ok response"));
        };
        Ok(self.inner.trust_inbox(instant(now)?, &inbox)?)
    }

    /// Sends one data exchange frame (spec §10.3) to `peer`'s port 1001 on a new stream;
    /// `type` is `text`, `binary`, `json` or `file` (with `filename`). Returns the
    /// connection ID; the answer arrives as `messageAcked`.
    #[wasm_bindgen(js_name = sendMessage)]
    pub fn send_message(
        &mut self,
        now: f64,
        #[wasm_bindgen(unchecked_param_type = "AddrLike")] peer: JsValue,
        #[wasm_bindgen(
            js_name = "type",
            unchecked_param_type = "\"text\" | \"binary\" | \"json\" | \"file\""
        )]
        kind: &str,
        data: &[u8],
        filename: Option<String>,
    ) -> Result<f64, PilotError> {
        let peer = self.peer(&peer)?;
        let name = filename.unwrap_or_default();
        let frame = match kind {
            "text" => Frame::Text(data),
            "binary" => Frame::Binary(data),
            "json" => Frame::Json(data),
            "file" => Frame::File { name: &name, data },
            _ => return Err(PilotError::range("type must be text, binary, json or file")),
        };
        let id = self.inner.send_message(instant(now)?, peer, &frame)?;
        Ok(conn_number(id))
    }

    /// Subscribes to `topic` (`*` for all) at `peer`'s broker on port 1002 (spec §10.4);
    /// returns the connection ID that `eventReceived` events carry. Close it to unsubscribe.
    pub fn subscribe(
        &mut self,
        now: f64,
        #[wasm_bindgen(unchecked_param_type = "AddrLike")] peer: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] topic: JsValue,
    ) -> Result<f64, PilotError> {
        let peer = self.peer(&peer)?;
        let topic = text_or_bytes("topic", &topic)?;
        let id = self.inner.subscribe(instant(now)?, peer, &topic)?;
        Ok(conn_number(id))
    }

    /// Publishes one event at `peer`'s broker on a stream of its own; returns its ID.
    pub fn publish(
        &mut self,
        now: f64,
        #[wasm_bindgen(unchecked_param_type = "AddrLike")] peer: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] topic: JsValue,
        payload: &[u8],
    ) -> Result<f64, PilotError> {
        let peer = self.peer(&peer)?;
        let topic = text_or_bytes("topic", &topic)?;
        let id = self.inner.publish(instant(now)?, peer, &topic, payload)?;
        Ok(conn_number(id))
    }

    /// Publishes on an existing subscription `conn` (the broker does not echo it back).
    #[wasm_bindgen(js_name = publishOn)]
    pub fn publish_on(
        &mut self,
        now: f64,
        conn: f64,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] topic: JsValue,
        payload: &[u8],
    ) -> Result<(), PilotError> {
        let topic = text_or_bytes("topic", &topic)?;
        Ok(self
            .inner
            .publish_on(instant(now)?, conn_arg(conn)?, &topic, payload)?)
    }
}

impl Node {
    fn input(&mut self, now: f64, input: Input) -> Result<(), PilotError> {
        self.inner.handle_input(instant(now)?, input)?;
        Ok(())
    }

    fn peer(&self, value: &JsValue) -> Result<Addr, PilotError> {
        addr_arg(value, Some(self.inner.addr().network))
    }
}

/// An address argument: text, `{ network, node }`, or (with `own_network`) a node ID.
fn addr_arg(value: &JsValue, own_network: Option<u16>) -> Result<Addr, PilotError> {
    if let Some(text) = value.as_string() {
        return Ok(text.parse()?);
    }
    if let (Some(node), Some(network)) = (value.as_f64(), own_network) {
        return Ok(Addr::new(network, u32_number("node", node)?));
    }
    if value.is_object() {
        let network = crate::js::uint_field(value, "network", u16::MAX.into(), None)?;
        let node = crate::js::uint_field(value, "node", u32::MAX.into(), None)?;
        // The bounds were checked just above.
        return Ok(Addr::new(network as u16, node as u32));
    }
    Err(PilotError::range(
        "address must be text, { network, node } or a node ID",
    ))
}

fn u32_number(what: &str, value: f64) -> Result<u32, PilotError> {
    if value.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&value) {
        return Err(PilotError::range(alloc::format!(
            "{what} must be an integer 0..=4294967295"
        )));
    }
    Ok(value as u32)
}

/// A non-negative safe integer (path and connection IDs).
fn safe_integer(what: &str, value: f64) -> Result<u64, PilotError> {
    if value.fract() != 0.0 || !(0.0..=MAX_SAFE_INTEGER as f64).contains(&value) {
        return Err(PilotError::range(alloc::format!(
            "{what} must be a non-negative safe integer"
        )));
    }
    Ok(value as u64)
}

fn path_arg(value: f64) -> Result<PathId, PilotError> {
    safe_integer("pathId", value).map(PathId)
}

fn conn_arg(value: f64) -> Result<ConnectionId, PilotError> {
    safe_integer("conn", value).map(ConnectionId)
}

/// Connection IDs count up from 1 and never reach 2^53 in a node's life.
fn conn_number(id: ConnectionId) -> f64 {
    id.0 as f64
}

fn text_or_bytes(what: &str, value: &JsValue) -> Result<Vec<u8>, PilotError> {
    if let Some(text) = value.as_string() {
        return Ok(text.into_bytes());
    }
    value
        .dyn_ref::<Uint8Array>()
        .map(Uint8Array::to_vec)
        .ok_or_else(|| PilotError::range(alloc::format!("{what} must be a string or Uint8Array")))
}

/// `options` (a `NodeOptions` object, or undefined) over the engine's defaults.
fn node_config(options: &JsValue) -> Result<NodeConfig, PilotError> {
    let mut config = NodeConfig::default();
    if options.is_undefined() || options.is_null() {
        return Ok(config);
    }
    config.private = bool_field(options, "private", config.private)?;
    config.max_connections = usize_field(options, "maxConnections", config.max_connections)?;
    config.max_connections_per_port = usize_field(
        options,
        "maxConnectionsPerPort",
        config.max_connections_per_port,
    )?;
    config.accept_backlog = usize_field(options, "acceptBacklog", config.accept_backlog)?;
    config.fragment_large_frames =
        bool_field(options, "fragmentLargeFrames", config.fragment_large_frames)?;
    config.unix_secs_at_zero = crate::js::uint_field(
        options,
        "unixSecsAtZero",
        MAX_SAFE_INTEGER,
        Some(config.unix_secs_at_zero),
    )?;
    let s = get(options, "stream");
    if !s.is_undefined() {
        config.stream = stream_config(&s, config.stream)?;
    }
    config.echo = service(options, "echo", config.echo, |o, d| {
        Ok(EchoConfig {
            max_connections: usize_field(o, "maxConnections", d.max_connections)?,
            max_unflushed_bytes: usize_field(o, "maxUnflushedBytes", d.max_unflushed_bytes)?,
        })
    })?;
    config.data_exchange = service(options, "dataExchange", config.data_exchange, |o, d| {
        Ok(ExchangeConfig {
            max_connections: usize_field(o, "maxConnections", d.max_connections)?,
        })
    })?;
    config.event_stream = service(options, "eventStream", config.event_stream, |o, d| {
        Ok(BrokerConfig {
            max_connections: usize_field(o, "maxConnections", d.max_connections)?,
            max_unflushed_bytes: usize_field(o, "maxUnflushedBytes", d.max_unflushed_bytes)?,
        })
    })?;
    config.trust = service(options, "trust", config.trust, |o, d| {
        Ok(TrustConfig {
            auto_approve: bool_field(o, "autoApprove", d.auto_approve)?,
        })
    })?;
    Ok(config)
}

fn stream_config(o: &JsValue, d: stream::Config) -> Result<stream::Config, PilotError> {
    Ok(stream::Config {
        mss: crate::js::uint_field(o, "mss", u16::MAX.into(), Some(d.mss.into()))? as u16,
        receive_capacity_segments: crate::js::uint_field(
            o,
            "receiveCapacitySegments",
            u16::MAX.into(),
            Some(d.receive_capacity_segments.into()),
        )? as u16,
        max_out_of_order_segments: usize_field(
            o,
            "maxOutOfOrderSegments",
            d.max_out_of_order_segments,
        )?,
        send_buffer_bytes: usize_field(o, "sendBufferBytes", d.send_buffer_bytes)?,
        nagle: bool_field(o, "nagle", d.nagle)?,
        keepalive_idle: duration_field(o, "keepaliveIdleMs", d.keepalive_idle)?,
        idle_timeout: duration_field(o, "idleTimeoutMs", d.idle_timeout)?,
    })
}

/// A built-in service option: absent keeps `default`, `false` disables it, an object tunes
/// the default settings with `tune`.
fn service<C: Default + Copy>(
    options: &JsValue,
    key: &str,
    default: Option<C>,
    tune: impl Fn(&JsValue, C) -> Result<C, PilotError>,
) -> Result<Option<C>, PilotError> {
    let value = get(options, key);
    if value.is_undefined() {
        return Ok(default);
    }
    if value.as_bool() == Some(false) || value.is_null() {
        return Ok(None);
    }
    if value.as_bool() == Some(true) {
        return Ok(Some(default.unwrap_or_default()));
    }
    if !value.is_object() {
        return Err(PilotError::range(alloc::format!(
            "{key} must be false, true or an object"
        )));
    }
    tune(&value, default.unwrap_or_default()).map(Some)
}

fn bool_field(object: &JsValue, key: &str, default: bool) -> Result<bool, PilotError> {
    let value = get(object, key);
    if value.is_undefined() {
        return Ok(default);
    }
    value
        .as_bool()
        .ok_or_else(|| PilotError::range(alloc::format!("{key} must be a boolean")))
}

fn usize_field(object: &JsValue, key: &str, default: usize) -> Result<usize, PilotError> {
    let max = u64::try_from(usize::MAX)
        .unwrap_or(u64::MAX)
        .min(MAX_SAFE_INTEGER);
    let value = crate::js::uint_field(object, key, max, Some(default as u64))?;
    usize::try_from(value).map_err(|_| PilotError::range(alloc::format!("{key} is too large")))
}

/// A time option in milliseconds; `null` is `None` (timer disabled).
fn duration_field(
    object: &JsValue,
    key: &str,
    default: Option<Duration>,
) -> Result<Option<Duration>, PilotError> {
    let value = get(object, key);
    if value.is_undefined() {
        return Ok(default);
    }
    if value.is_null() {
        return Ok(None);
    }
    match value.as_f64() {
        Some(ms) if ms.is_finite() && ms >= 0.0 => {
            Ok(Some(Duration::from_secs_f64(ms / MILLIS_PER_SECOND)))
        }
        _ => Err(PilotError::range(alloc::format!(
            "{key} must be a non-negative number of milliseconds or null"
        ))),
    }
}

fn frame_type_name(frame_type: FrameType) -> String {
    match frame_type {
        FrameType::Text => "text".into(),
        FrameType::Binary => "binary".into(),
        FrameType::Json => "json".into(),
        FrameType::File => "file".into(),
        FrameType::Other(n) => alloc::format!("other:{n}"),
    }
}

fn conn_event(kind: &str, id: ConnectionId) -> Obj {
    Obj::new().set("type", kind).set("conn", conn_number(id))
}

/// The JS view of an engine event (`NodeEvent`).
fn event_object(event: Event) -> JsValue {
    let obj = match event {
        Event::PeerSessionUp { node, rekey } => Obj::new()
            .set("type", "peerSessionUp")
            .set("node", node)
            .set("rekey", rekey),
        Event::PeerSessionDown { node } => {
            Obj::new().set("type", "peerSessionDown").set("node", node)
        }
        Event::PeerUnreachable { node } => {
            Obj::new().set("type", "peerUnreachable").set("node", node)
        }
        Event::NeedPeerKey { node } => Obj::new().set("type", "needPeerKey").set("node", node),
        Event::StreamOpened(id) => conn_event("streamOpened", id),
        Event::StreamAccepted {
            conn,
            port,
            peer,
            peer_port,
        } => conn_event("streamAccepted", conn)
            .set("port", port)
            .set("peer", addr_object(peer).build())
            .set("peerPort", peer_port),
        Event::StreamReadable(id) => conn_event("streamReadable", id),
        Event::StreamWritable(id) => conn_event("streamWritable", id),
        Event::StreamPeerClosed(id) => conn_event("streamPeerClosed", id),
        Event::StreamReset { conn, timed_out } => {
            conn_event("streamReset", conn).set("timedOut", timed_out)
        }
        Event::StreamClosed(id) => conn_event("streamClosed", id),
        Event::Datagram {
            from,
            src_port,
            dst_port,
            payload,
        } => Obj::new()
            .set("type", "datagram")
            .set("from", addr_object(from).build())
            .set("srcPort", src_port)
            .set("dstPort", dst_port)
            .bytes("payload", &payload),
        Event::Pong { from, payload } => Obj::new()
            .set("type", "pong")
            .set("from", addr_object(from).build())
            .bytes("payload", &payload),
        Event::MessageReceived {
            from,
            frame_type,
            filename,
            payload,
        } => {
            let obj = Obj::new()
                .set("type", "messageReceived")
                .set("from", addr_object(from).build())
                .set("frameType", frame_type_name(frame_type))
                .bytes("payload", &payload);
            match filename {
                Some(name) => obj.set("filename", name),
                None => obj,
            }
        }
        Event::MessageAcked { conn, peer, reply } => {
            let obj = conn_event("messageAcked", conn).set("peer", addr_object(peer).build());
            match reply {
                ExchangeReply::Acked { frame_type, len } => obj
                    .set("ok", true)
                    .set("frameType", frame_type_name(frame_type))
                    .set("len", len as f64),
                ExchangeReply::Failed { frame_type, reason } => obj
                    .set("ok", false)
                    .set("frameType", frame_type_name(frame_type))
                    .set("reason", reason),
            }
        }
        Event::BrokerSubscribed { from, topic } => Obj::new()
            .set("type", "brokerSubscribed")
            .set("from", addr_object(from).build())
            .bytes("topic", &topic),
        Event::EventReceived {
            conn,
            topic,
            payload,
        } => conn_event("eventReceived", conn)
            .bytes("topic", &topic)
            .bytes("payload", &payload),
        Event::Trust(TrustEvent::RequestPending {
            node,
            justification,
            path,
        }) => Obj::new()
            .set("type", "trustRequestPending")
            .set("node", node)
            .set("justification", justification)
            .set("relayed", path == RequestPath::Relayed),
        Event::Trust(TrustEvent::Trusted { node }) => {
            Obj::new().set("type", "trusted").set("node", node)
        }
        Event::Trust(TrustEvent::Rejected { node, reason }) => Obj::new()
            .set("type", "trustRejected")
            .set("node", node)
            .set("reason", reason),
        Event::Trust(TrustEvent::Revoked { node, reason }) => Obj::new()
            .set("type", "trustRevoked")
            .set("node", node)
            .set("reason", reason),
        Event::RegistryRequest(request) => match request.encode() {
            Ok(json) => Obj::new()
                .set("type", "registryRequest")
                .set("json", String::from_utf8_lossy(&json).into_owned()),
            Err(e) => Obj::new()
                .set("type", "error")
                .set("code", "REGISTRY_ENCODE")
                .set("message", e.to_string()),
        },
        Event::Error(error) => {
            let error = PilotError::from(error);
            Obj::new()
                .set("type", "error")
                .set("code", error.code())
                .set("message", error.message())
        }
    };
    obj.build()
}

/// Node errors keep the code of the layer that decided (`PILS_…`, `STREAM_…`, `KEX_…`);
/// the node's own verdicts are `NODE_…`. The message is the node's `Display` text.
impl From<NodeError> for PilotError {
    fn from(error: NodeError) -> Self {
        let message = error.to_string();
        let code = match &error {
            NodeError::Kex(e) => kex_code(e),
            NodeError::Fragment(e) => PilotError::from(*e).code(),
            NodeError::MalformedPacket(e) => PilotError::from(*e).code(),
            NodeError::DataExchange(e) => PilotError::from(*e).code(),
            NodeError::EventStream(e) => PilotError::from(*e).code(),
            NodeError::Stream(e) => stream_code(*e),
            NodeError::UnsupportedFrame => "NODE_UNSUPPORTED_FRAME",
            NodeError::WrongDestination => "NODE_WRONG_DESTINATION",
            NodeError::UnknownConnection => "NODE_UNKNOWN_CONNECTION",
            NodeError::NotApplicationConnection => "NODE_NOT_APPLICATION_CONNECTION",
            NodeError::InvalidPort => "NODE_INVALID_PORT",
            NodeError::PortInUse => "NODE_PORT_IN_USE",
            NodeError::NotListening => "NODE_NOT_LISTENING",
            NodeError::TooManyConnections => "NODE_TOO_MANY_CONNECTIONS",
            NodeError::NoFreePort => "NODE_NO_FREE_PORT",
            NodeError::OwnAddress => "NODE_OWN_ADDRESS",
            NodeError::EmptyPayload => "NODE_EMPTY_PAYLOAD",
            NodeError::PayloadTooLarge => "NODE_PAYLOAD_TOO_LARGE",
            NodeError::ServiceDisabled => "NODE_SERVICE_DISABLED",
            NodeError::Trust(_) => "NODE_TRUST",
            NodeError::TrustSenderMismatch { .. } => "NODE_TRUST_SENDER_MISMATCH",
            NodeError::TrustSetFull => "NODE_TRUST_SET_FULL",
            NodeError::TooManyParkedTrustMessages => "NODE_TOO_MANY_PARKED_TRUST_MESSAGES",
            NodeError::Exchange(_) => "NODE_EXCHANGE",
        };
        PilotError::new(code, message)
    }
}

fn stream_code(error: StreamError) -> &'static str {
    match error {
        StreamError::WouldBlock => "STREAM_WOULD_BLOCK",
        StreamError::Closed => "STREAM_CLOSED",
        StreamError::Reset => "STREAM_RESET",
        StreamError::TimedOut => "STREAM_TIMED_OUT",
        StreamError::SackTruncated => "STREAM_SACK_TRUNCATED",
        StreamError::SackBadMagic => "STREAM_SACK_BAD_MAGIC",
        StreamError::SackBadCount => "STREAM_SACK_BAD_COUNT",
    }
}

fn kex_code(error: &KexError) -> &'static str {
    match error {
        KexError::NotKeyExchangeFrame => "KEX_NOT_KEY_EXCHANGE_FRAME",
        KexError::Pila(e) => PilotError::from(*e).code(),
        KexError::Pilk(e) => PilotError::from(*e).code(),
        KexError::Pils(e) => PilotError::from(*e).code(),
        KexError::OwnNode => "KEX_OWN_NODE",
        KexError::RateLimited => "KEX_RATE_LIMITED",
        KexError::UnknownPeer => "KEX_UNKNOWN_PEER",
        KexError::TooManyLookups => "KEX_TOO_MANY_LOOKUPS",
        KexError::NonContributory => "KEX_NON_CONTRIBUTORY",
        KexError::NoSession => "KEX_NO_SESSION",
        KexError::Rejected(_) => "KEX_REJECTED",
        KexError::MalformedPacket(e) => PilotError::from(*e).code(),
        KexError::SpoofedSource => "KEX_SPOOFED_SOURCE",
        KexError::ForeignSource => "KEX_FOREIGN_SOURCE",
        KexError::NoPath => "KEX_NO_PATH",
        KexError::GiveUpCooldown => "KEX_GIVE_UP_COOLDOWN",
        KexError::PendingDropped => "KEX_PENDING_DROPPED",
        KexError::TooManyPendingPeers => "KEX_TOO_MANY_PENDING_PEERS",
        KexError::PeerTableFull => "KEX_PEER_TABLE_FULL",
        KexError::PacketTooLarge => "KEX_PACKET_TOO_LARGE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pilot_core::frame::pils::PilsError;

    #[test]
    fn node_errors_keep_the_code_of_the_layer_that_decided() {
        let code = |e: NodeError| PilotError::from(e).code();
        assert_eq!(
            code(NodeError::Stream(StreamError::WouldBlock)),
            "STREAM_WOULD_BLOCK"
        );
        assert_eq!(
            code(NodeError::Kex(KexError::Pils(PilsError::Authentication))),
            "PILS_AUTHENTICATION"
        );
        assert_eq!(code(NodeError::Kex(KexError::NoPath)), "KEX_NO_PATH");
        assert_eq!(code(NodeError::PortInUse), "NODE_PORT_IN_USE");
    }

    #[test]
    fn node_error_messages_are_the_engine_text() {
        let error = PilotError::from(NodeError::UnknownConnection);
        assert_eq!(error.message(), NodeError::UnknownConnection.to_string());
    }

    #[test]
    fn ids_beyond_the_safe_integer_range_or_fractional_are_refused() {
        assert_eq!(path_arg(7.0).map(|p| p.0), Ok(7));
        for bad in [-1.0, 1.5, 9.1e15, f64::NAN] {
            assert_eq!(
                conn_arg(bad).map_err(|e| e.code()),
                Err("ARG_RANGE"),
                "{bad}"
            );
        }
    }
}
