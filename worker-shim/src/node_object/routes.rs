//! The HTTP API of `API.md`, served by the Durable Object.

use std::rc::Rc;

use pilot_core::addr::Addr;
use pilot_core::node::ConnectionId;
use pilot_core::node::NodeError;
use pilot_core::registry::{ListNodes, Request, Response, SetHostname};
use pilot_core::services::dataexchange::Frame;
use pilot_core::stream::{State as StreamState, StreamError};
use serde::{Deserialize, Serialize};
use worker::{Headers, Method, Request as HttpRequest, Response as HttpResponse};

use super::driver::{node_error, unexpected, ConnWatch, Shared, MAX_PINGS_IN_FLIGHT};
use super::{ensure_started, persist_if_needed};
use crate::api::{
    check_port, decode_data, encode_data, parse_addr, parse_body, query_u64, timeout_of,
    AcceptAnswer, ApiError, DatagramAnswer, Decision, DialRequest, Dialed, Empty, ErrorCode,
    EventAnswer, HandshakeRequest, Hostname, Info, MessageReply, Pending, PendingList, PingRequest,
    Pong, PortAnswer, PortRequest, PortWait, PublishRequest, Resolved, SendMessageRequest, SendTo,
    Status, SubscribeRequest, SubscriptionAnswer, TimeoutOnly, TrustedList, TrustedPeer, Written,
    DEFAULT_READ_BYTES, EOF_HEADER,
};

/// Largest request body taken (stream writes, datagrams, messages).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest read answered at once.
const MAX_READ_BYTES: usize = 1024 * 1024;

/// Serves one request; every failure becomes the JSON error of `API.md`.
pub async fn handle(shared: &Rc<Shared>, mut req: HttpRequest) -> worker::Result<HttpResponse> {
    match route(shared, &mut req).await {
        Ok(response) => Ok(response),
        Err(err) => {
            if err.code == ErrorCode::Internal {
                tracing::warn!(%err, "request failed");
            }
            let headers = Headers::new();
            headers.set("content-type", "application/json")?;
            Ok(HttpResponse::ok(err.to_body())?
                .with_status(err.status())
                .with_headers(headers))
        }
    }
}

fn json<T: Serialize>(value: &T) -> Result<HttpResponse, ApiError> {
    HttpResponse::from_json(value).map_err(internal)
}

fn internal(err: worker::Error) -> ApiError {
    ApiError::new(ErrorCode::Internal, err.to_string())
}

async fn body(req: &mut HttpRequest) -> Result<Vec<u8>, ApiError> {
    let bytes = req
        .bytes()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::bad_request(format!(
            "body of {} bytes exceeds {MAX_BODY_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

async fn json_body<T: for<'a> Deserialize<'a>>(req: &mut HttpRequest) -> Result<T, ApiError> {
    let bytes = body(req).await?;
    parse_body(&bytes)
}

async fn route(shared: &Rc<Shared>, req: &mut HttpRequest) -> Result<HttpResponse, ApiError> {
    let url = req.url().map_err(internal)?;
    let query = url.query().unwrap_or("").to_string();
    let path = url.path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method();
    match (method, segments.as_slice()) {
        (Method::Get, ["v1", "info"]) => info(shared).await,
        (Method::Post, ["v1", "hostname"]) => hostname(shared, json_body(req).await?).await,
        (Method::Get, ["v1", "resolve-hostname"]) => resolve_hostname(shared, &query).await,
        (Method::Post, ["v1", "ping"]) => ping(shared, json_body(req).await?).await,
        (Method::Post, ["v1", "handshake"]) => handshake(shared, json_body(req).await?).await,
        (Method::Get, ["v1", "handshakes"]) => handshakes(shared).await,
        (Method::Post, ["v1", "handshakes", "approve"]) => {
            approve(shared, json_body(req).await?).await
        }
        (Method::Post, ["v1", "handshakes", "reject"]) => {
            reject(shared, json_body(req).await?).await
        }
        (Method::Get, ["v1", "trusted"]) => trusted(shared).await,
        (Method::Post, ["v1", "dial"]) => dial(shared, json_body(req).await?).await,
        (Method::Post, ["v1", "conns", conn, "write"]) => {
            let conn = conn_id(conn)?;
            let bytes = body(req).await?;
            write(shared, conn, bytes, &query).await
        }
        (Method::Post, ["v1", "conns", conn, "read"]) => read(shared, conn_id(conn)?, &query).await,
        (Method::Post, ["v1", "conns", conn, "close"]) => close(shared, conn_id(conn)?).await,
        (Method::Post, ["v1", "listen"]) => listen(shared, json_body(req).await?).await,
        (Method::Post, ["v1", "accept"]) => accept(shared, json_body(req).await?).await,
        (Method::Post, ["v1", "send-to"]) => send_to(shared, json_body(req).await?).await,
        (Method::Post, ["v1", "recv-from"]) => recv_from(shared, json_body(req).await?).await,
        (Method::Post, ["v1", "send-message"]) => send_message(shared, json_body(req).await?).await,
        (Method::Post, ["v1", "publish"]) => publish(shared, json_body(req).await?).await,
        (Method::Post, ["v1", "subscribe"]) => subscribe(shared, json_body(req).await?).await,
        (Method::Post, ["v1", "subscriptions", id, "next"]) => {
            let id = conn_id(id)?;
            let bytes = body(req).await?;
            let next: TimeoutOnly = if bytes.is_empty() {
                TimeoutOnly::default()
            } else {
                parse_body(&bytes)?
            };
            next_event(shared, id, next).await
        }
        _ => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("no route {} {path}", req.method().as_ref()),
        )
        .with_hint("see API.md for the routes, e.g. GET /v1/info")),
    }
}

fn conn_id(text: &str) -> Result<ConnectionId, ApiError> {
    text.parse::<u64>()
        .map(ConnectionId)
        .map_err(|_| ApiError::bad_request(format!("connection ID {text:?} is not a number")))
}

/// Starts the node if needed, then gives our address.
async fn ready(shared: &Rc<Shared>) -> Result<Addr, ApiError> {
    ensure_started(shared).await?;
    let inner = shared.inner.borrow();
    inner
        .node
        .as_ref()
        .map(|n| n.addr())
        .ok_or_else(|| ApiError::new(ErrorCode::NotReady, "the node has not registered yet"))
}

async fn info(shared: &Rc<Shared>) -> Result<HttpResponse, ApiError> {
    let started = ensure_started(shared).await;
    let inner = shared.inner.borrow();
    if let (Err(err), None) = (&started, inner.node.as_ref()) {
        return Err(err.clone());
    }
    let addr = inner.node.as_ref().map(|n| n.addr());
    json(&Info {
        address: addr.map(|a| a.to_string()).unwrap_or_default(),
        node_id: addr.map_or(0, |a| a.node),
        hostname: inner.hostname.clone(),
        public_key: inner
            .identity
            .as_ref()
            .map(|i| encode_data(&i.public_key()))
            .unwrap_or_default(),
        transport: shared.config.transport.clone(),
        endpoint: inner
            .transport
            .as_ref()
            .and_then(|t| t.endpoint())
            .map(|e| e.to_string())
            .unwrap_or_default(),
        registered: inner.registered && inner.transport.is_some(),
        public: shared.config.public,
        dropped: inner.dropped,
    })
}

fn registry_error(err: crate::registry_pipe::RegistryCallError) -> ApiError {
    ApiError::new(ErrorCode::RegistryError, err.to_string())
}

async fn hostname(shared: &Rc<Shared>, body: Hostname) -> Result<HttpResponse, ApiError> {
    let addr = ready(shared).await?;
    let identity = shared.inner.borrow().identity.clone();
    let identity = identity.ok_or_else(|| ApiError::new(ErrorCode::NotReady, "no identity"))?;
    let request = Request::SetHostname(SetHostname::signed(
        addr.node,
        body.hostname.clone(),
        &identity,
    ));
    match shared
        .registry
        .call(&request)
        .await
        .map_err(registry_error)?
    {
        Response::SetHostnameOk(_) => {
            shared.inner.borrow_mut().hostname = body.hostname.clone();
            super::storage::save_hostname(shared, &body.hostname).await;
            json(&body)
        }
        Response::Error { error } => Err(ApiError::new(
            ErrorCode::RegistryError,
            format!("registry refused the hostname: {error}"),
        )
        .with_hint("choose another hostname")),
        other => Err(unexpected(&other)),
    }
}

/// Hostnames are found in the backbone's `list_nodes` (pilot-core has no dedicated request).
async fn resolve_hostname(shared: &Rc<Shared>, query: &str) -> Result<HttpResponse, ApiError> {
    let wanted = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("hostname="))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing query parameter hostname"))?
        .to_string();
    ready(shared).await?;
    let request = Request::ListNodes(ListNodes { network_id: 0 });
    match shared
        .registry
        .call(&request)
        .await
        .map_err(registry_error)?
    {
        Response::ListNodesOk(list) => list
            .nodes
            .iter()
            .find(|n| n.hostname.as_deref() == Some(wanted.as_str()))
            .map(|n| {
                json(&Resolved {
                    address: Addr::new(0, n.node_id).to_string(),
                })
            })
            .unwrap_or_else(|| {
                Err(ApiError::new(
                    ErrorCode::PeerUnreachable,
                    format!("no node has the hostname {wanted:?}"),
                )
                .with_hint("check the spelling; the node must be registered with that hostname"))
            }),
        Response::Error { error } => Err(ApiError::new(ErrorCode::RegistryError, error)),
        other => Err(unexpected(&other)),
    }
}

async fn ping(shared: &Rc<Shared>, body: PingRequest) -> Result<HttpResponse, ApiError> {
    let peer = parse_addr(&body.peer)?;
    let timeout = timeout_of(body.timeout_ms)?;
    ready(shared).await?;
    shared.ensure_path(peer.node).await?;
    let (payload, failures) = {
        let mut inner = shared.inner.borrow_mut();
        if inner.pings.len() >= MAX_PINGS_IN_FLIGHT {
            return Err(ApiError::new(
                ErrorCode::QueueFull,
                "too many pings in flight",
            ));
        }
        inner.next_ping += 1;
        let payload = inner.next_ping.to_be_bytes().to_vec();
        inner.pings.insert(payload.clone(), (super::now_ms(), None));
        (payload, unreachable_count(&inner, peer.node))
    };
    let sent = shared.with_node(|node, now| node.ping(now, peer, &payload));
    let result = match sent {
        Ok(()) => {
            shared
                .wait_for(timeout, "ping", |inner| {
                    if let Some((_, Some(rtt))) = inner.pings.get(&payload) {
                        return Some(Ok(*rtt));
                    }
                    unreachable_since(inner, peer.node, failures)
                })
                .await
        }
        Err(err) => Err(err),
    };
    shared.inner.borrow_mut().pings.remove(&payload);
    if matches!(&result, Err(err) if err.code == ErrorCode::Timeout) {
        shared.forget_endpoint(peer.node);
    }
    json(&Pong {
        rtt_ms: result? as f64,
    })
}

fn unreachable_count(inner: &super::Inner, node: u32) -> u64 {
    inner.unreachable.get(&node).copied().unwrap_or(0)
}

fn unreachable_since<T>(
    inner: &super::Inner,
    node: u32,
    before: u64,
) -> Option<Result<T, ApiError>> {
    (unreachable_count(inner, node) > before).then(|| {
        Err(ApiError::new(
            ErrorCode::PeerUnreachable,
            format!("node {node} did not answer the key exchange"),
        ))
    })
}

/// Asks for trust directly over port 444 when the registry gives us the peer's endpoint,
/// else through the registry's relayed handshake (spec §9.6).
async fn handshake(shared: &Rc<Shared>, body: HandshakeRequest) -> Result<HttpResponse, ApiError> {
    let peer = parse_addr(&body.peer)?;
    ready(shared).await?;
    let direct = shared.ensure_path(peer.node).await;
    match direct {
        Ok(()) => {
            shared
                .with_node(|node, now| node.trust_request(now, peer.node, &body.justification))?;
        }
        // spec §9.6: a peer we cannot reach (a private node we may not resolve) is asked
        // through the registry inbox. The engine's trust service records the request, so
        // the accepting answer found by a later inbox poll makes the peer trusted.
        Err(err) if err.code == ErrorCode::PeerUnreachable => {
            shared.with_node(|node, now| {
                node.trust_request_relayed(now, peer.node, &body.justification)
            })?;
            // Answers arrive only through the inbox: poll it promptly from now on.
            shared.notify.notify();
        }
        Err(err) => return Err(err),
    }
    json(&Status {
        status: "requested".to_string(),
    })
}

async fn handshakes(shared: &Rc<Shared>) -> Result<HttpResponse, ApiError> {
    let addr = ready(shared).await?;
    let inner = shared.inner.borrow();
    let pending = inner
        .node
        .as_ref()
        .and_then(|n| n.trust_service())
        .map(|t| {
            t.pending()
                .iter()
                .map(|p| Pending {
                    node: p.node,
                    address: Addr::new(addr.network, p.node).to_string(),
                    justification: p.justification.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    json(&PendingList { pending })
}

async fn approve(shared: &Rc<Shared>, body: Decision) -> Result<HttpResponse, ApiError> {
    ready(shared).await?;
    shared.with_node(|node, now| node.trust_approve(now, body.node))?;
    persist_if_needed(shared).await;
    json(&Empty {})
}

async fn reject(shared: &Rc<Shared>, body: Decision) -> Result<HttpResponse, ApiError> {
    ready(shared).await?;
    shared.with_node(|node, now| node.trust_reject(now, body.node, &body.reason))?;
    persist_if_needed(shared).await;
    json(&Empty {})
}

async fn trusted(shared: &Rc<Shared>) -> Result<HttpResponse, ApiError> {
    let addr = ready(shared).await?;
    let inner = shared.inner.borrow();
    let trusted = inner
        .node
        .as_ref()
        .and_then(|n| n.trust_service())
        .map(|t| {
            t.trusted()
                .map(|(node, _)| TrustedPeer {
                    node,
                    address: Addr::new(addr.network, node).to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    json(&TrustedList { trusted })
}

async fn dial(shared: &Rc<Shared>, body: DialRequest) -> Result<HttpResponse, ApiError> {
    let peer = parse_addr(&body.peer)?;
    let port = check_port(body.port)?;
    let timeout = timeout_of(body.timeout_ms)?;
    ready(shared).await?;
    shared.ensure_path(peer.node).await?;
    let conn = shared.with_node(|node, now| node.dial(now, peer, port))?;
    shared.inner.borrow_mut().conns.insert(
        conn,
        ConnWatch {
            peer_node: peer.node,
            ..ConnWatch::default()
        },
    );
    let opened = shared
        .wait_for(timeout, "dial", |inner| {
            let watch = inner.conns.get(&conn)?;
            if let Some(why) = &watch.failed {
                return Some(Err(ApiError::new(
                    ErrorCode::PeerUnreachable,
                    format!("dial {peer}:{port}: {why}"),
                )));
            }
            watch.opened.then_some(Ok(()))
        })
        .await;
    if let Err(err) = opened {
        // A stream that did not open is of no use to anyone: drop it.
        let _ = shared.with_node(|node, now| node.abort(now, conn));
        shared.inner.borrow_mut().conns.remove(&conn);
        if err.code == ErrorCode::Timeout {
            shared.forget_endpoint(peer.node);
        }
        return Err(err);
    }
    let local_port = shared
        .inner
        .borrow()
        .node
        .as_ref()
        .and_then(|n| n.connection_local(conn))
        .map_or(0, |l| l.port);
    json(&Dialed {
        conn: conn.0,
        peer: peer.to_string(),
        port,
        local_port,
    })
}

/// The verdict for a stream call that failed: the recorded reason if the stream broke.
fn stream_error(inner: &super::Inner, conn: ConnectionId, err: NodeError) -> ApiError {
    let reason = inner.conns.get(&conn).and_then(|w| w.failed.clone());
    match (err, reason) {
        (NodeError::UnknownConnection, Some(why)) | (NodeError::Stream(_), Some(why)) => {
            ApiError::new(ErrorCode::ConnectionClosed, why)
        }
        (err, _) => node_error(err),
    }
}

async fn write(
    shared: &Rc<Shared>,
    conn: ConnectionId,
    bytes: Vec<u8>,
    query: &str,
) -> Result<HttpResponse, ApiError> {
    let timeout = timeout_of(query_u64(query, "timeout_ms")?)?;
    ready(shared).await?;
    let mut written = 0usize;
    let result = shared
        .wait_for(timeout, "write", |inner| {
            let rest = bytes.get(written..).unwrap_or_default();
            if rest.is_empty() {
                return Some(Ok(()));
            }
            let (node, now) = match inner.node_mut() {
                Ok(found) => found,
                Err(err) => return Some(Err(err)),
            };
            match node.write(now, conn, rest) {
                Ok(n) => {
                    written += n;
                    (written >= bytes.len()).then_some(Ok(()))
                }
                Err(NodeError::Stream(StreamError::WouldBlock)) => None,
                Err(err) => Some(Err(stream_error(inner, conn, err))),
            }
        })
        .await;
    match result {
        Ok(()) => json(&Written { written }),
        Err(err) if err.code == ErrorCode::Timeout => Err(ApiError::new(
            ErrorCode::Timeout,
            format!(
                "{written} of {} bytes queued before the timeout",
                bytes.len()
            ),
        )
        .with_hint("the peer is not reading; retry the rest later")),
        Err(err) => Err(err),
    }
}

async fn read(
    shared: &Rc<Shared>,
    conn: ConnectionId,
    query: &str,
) -> Result<HttpResponse, ApiError> {
    let timeout = timeout_of(query_u64(query, "timeout_ms")?)?;
    let max = query_u64(query, "max_bytes")?
        .map_or(DEFAULT_READ_BYTES, |n| {
            usize::try_from(n).unwrap_or(MAX_READ_BYTES)
        })
        .clamp(1, MAX_READ_BYTES);
    ready(shared).await?;
    let mut buf = vec![0u8; max];
    let n = shared
        .wait_for(timeout, "read", |inner| {
            let (node, now) = match inner.node_mut() {
                Ok(found) => found,
                Err(err) => return Some(Err(err)),
            };
            match node.read(now, conn, &mut buf) {
                Ok(n) => Some(Ok(n)),
                Err(NodeError::Stream(StreamError::WouldBlock)) => None,
                Err(err) => Some(Err(stream_error(inner, conn, err))),
            }
        })
        .await?;
    buf.truncate(n);
    let headers = Headers::new();
    headers
        .set("content-type", "application/octet-stream")
        .map_err(internal)?;
    if n == 0 {
        headers.set(EOF_HEADER, "1").map_err(internal)?;
    }
    Ok(HttpResponse::from_bytes(buf)
        .map_err(internal)?
        .with_headers(headers))
}

async fn close(shared: &Rc<Shared>, conn: ConnectionId) -> Result<HttpResponse, ApiError> {
    ready(shared).await?;
    let result = shared.with_node(|node, now| node.close(now, conn));
    shared.inner.borrow_mut().conns.remove(&conn);
    result?;
    json(&Empty {})
}

async fn listen(shared: &Rc<Shared>, body: PortRequest) -> Result<HttpResponse, ApiError> {
    let port = check_port(body.port)?;
    ready(shared).await?;
    shared.with_node(|node, _| node.listen(port))?;
    shared.inner.borrow_mut().ports.entry(port).or_default();
    json(&PortAnswer { port })
}

fn require_listening(shared: &Shared, port: u16) -> Result<(), ApiError> {
    if shared.inner.borrow().ports.contains_key(&port) {
        Ok(())
    } else {
        Err(
            ApiError::bad_request(format!("port {port} is not listened on"))
                .with_hint("POST /v1/listen first"),
        )
    }
}

async fn accept(shared: &Rc<Shared>, body: PortWait) -> Result<HttpResponse, ApiError> {
    let port = check_port(body.port)?;
    let timeout = timeout_of(body.timeout_ms)?;
    ready(shared).await?;
    require_listening(shared, port)?;
    let accepted = shared
        .wait_for(timeout, "accept", |inner| {
            inner
                .ports
                .get_mut(&port)
                .and_then(|q| q.accepted.pop_front())
                .map(Ok)
        })
        .await?;
    json(&AcceptAnswer {
        conn: accepted.conn.0,
        peer: accepted.peer.to_string(),
        peer_port: accepted.peer_port,
        port,
    })
}

async fn send_to(shared: &Rc<Shared>, body: SendTo) -> Result<HttpResponse, ApiError> {
    let peer = parse_addr(&body.peer)?;
    let port = check_port(body.port)?;
    let data = decode_data(&body.data)?;
    ready(shared).await?;
    shared.ensure_path(peer.node).await?;
    shared.with_node(|node, now| node.send_to(now, peer, port, &data))?;
    json(&Empty {})
}

async fn recv_from(shared: &Rc<Shared>, body: PortWait) -> Result<HttpResponse, ApiError> {
    let port = check_port(body.port)?;
    let timeout = timeout_of(body.timeout_ms)?;
    ready(shared).await?;
    require_listening(shared, port)?;
    let datagram = shared
        .wait_for(timeout, "recv-from", |inner| {
            inner
                .ports
                .get_mut(&port)
                .and_then(|q| q.datagrams.pop_front())
                .map(Ok)
        })
        .await?;
    json(&DatagramAnswer {
        from: datagram.from.to_string(),
        src_port: datagram.src_port,
        port,
        data: encode_data(&datagram.payload),
    })
}

async fn send_message(
    shared: &Rc<Shared>,
    body: SendMessageRequest,
) -> Result<HttpResponse, ApiError> {
    let peer = parse_addr(&body.peer)?;
    let timeout = timeout_of(body.timeout_ms)?;
    let data = decode_data(&body.data)?;
    let filename = body.filename.clone().unwrap_or_default();
    let frame = match body.kind.as_str() {
        "text" => Frame::Text(&data),
        "json" => Frame::Json(&data),
        "binary" => Frame::Binary(&data),
        "file" if !filename.is_empty() => Frame::File {
            name: &filename,
            data: &data,
        },
        "file" => return Err(ApiError::bad_request("type file needs a filename")),
        other => {
            return Err(ApiError::bad_request(format!(
                "type {other:?} is not text, json, binary or file"
            )))
        }
    };
    ready(shared).await?;
    shared.ensure_path(peer.node).await?;
    let failures = unreachable_count(&shared.inner.borrow(), peer.node);
    let conn = shared.with_node(|node, now| node.send_message(now, peer, &frame))?;
    shared.inner.borrow_mut().messages.insert(conn, None);
    let result = shared
        .wait_for(timeout, "send-message", |inner| {
            match inner.messages.get(&conn) {
                Some(Some(Ok(line))) => return Some(Ok(line.clone())),
                Some(Some(Err(why))) => {
                    return Some(Err(ApiError::new(ErrorCode::ConnectionClosed, why.clone())))
                }
                _ => {}
            }
            unreachable_since(inner, peer.node, failures)
        })
        .await;
    shared.inner.borrow_mut().messages.remove(&conn);
    json(&MessageReply { reply: result? })
}

/// Returns once both FINs were exchanged: the broker's stream took every byte (it sends
/// no application-level answer, spec §10.4).
async fn publish(shared: &Rc<Shared>, body: PublishRequest) -> Result<HttpResponse, ApiError> {
    let peer = parse_addr(&body.peer)?;
    let data = decode_data(&body.data)?;
    let timeout = timeout_of(body.timeout_ms)?;
    ready(shared).await?;
    shared.ensure_path(peer.node).await?;
    let conn =
        shared.with_node(|node, now| node.publish(now, peer, body.topic.as_bytes(), &data))?;
    shared
        .wait_for(timeout, "publish", |inner| {
            match inner.node.as_ref()?.connection_state(conn) {
                Some(StreamState::TimeWait) => Some(Ok(())),
                None | Some(StreamState::Closed) => Some(Err(ApiError::new(
                    ErrorCode::ConnectionClosed,
                    "the broker's stream ended before the event was delivered",
                ))),
                Some(_) => None,
            }
        })
        .await?;
    json(&Empty {})
}

async fn subscribe(shared: &Rc<Shared>, body: SubscribeRequest) -> Result<HttpResponse, ApiError> {
    let peer = parse_addr(&body.peer)?;
    ready(shared).await?;
    shared.ensure_path(peer.node).await?;
    let conn = shared.with_node(|node, now| node.subscribe(now, peer, body.topic.as_bytes()))?;
    shared
        .inner
        .borrow_mut()
        .subscriptions
        .insert(conn, Default::default());
    json(&SubscriptionAnswer {
        subscription: conn.0,
    })
}

async fn next_event(
    shared: &Rc<Shared>,
    id: ConnectionId,
    body: TimeoutOnly,
) -> Result<HttpResponse, ApiError> {
    let timeout = timeout_of(body.timeout_ms)?;
    ready(shared).await?;
    let (topic, payload) = shared
        .wait_for(timeout, "next event", |inner| {
            let alive = inner.node.as_ref()?.connection_state(id).is_some();
            let Some(queue) = inner.subscriptions.get_mut(&id) else {
                return Some(Err(ApiError::new(
                    ErrorCode::UnknownConnection,
                    format!("no subscription {}", id.0),
                )));
            };
            if let Some(event) = queue.pop_front() {
                return Some(Ok(event));
            }
            if alive {
                return None;
            }
            inner.subscriptions.remove(&id);
            Some(Err(ApiError::new(
                ErrorCode::ConnectionClosed,
                "the broker ended the subscription",
            )))
        })
        .await?;
    json(&EventAnswer {
        topic: String::from_utf8_lossy(&topic).into_owned(),
        data: encode_data(&payload),
    })
}
