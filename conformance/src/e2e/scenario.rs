//! The steps of the Worker scenario, shared by `tests/worker_e2e.rs` (which asserts each
//! outcome) and `pilot-demo` (which narrates it). A step does the protocol work and returns
//! what came back; judging it is the caller's business.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use pilot_core::addr::Addr;
use rand_core::{OsRng, RngCore as _};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tracing::info;

use super::client::{ApiError, Conn, Datagram, Event, Info, WorkerApi};
use super::World;
use crate::peer::{Peer, PeerStream, ReceivedDatagram};

/// spec §10.1: the echo service.
pub const ECHO_PORT: u16 = 7;
/// Longest wait of one step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the Worker to register (first start compiles nothing, but workerd and the
/// relay session must come up).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a trust handshake to complete. Between two private nodes it travels
/// through the registry inbox (spec §9.6), which the Worker polls every 10 s.
pub const TRUST_TIMEOUT: Duration = Duration::from_secs(75);
/// Bytes per `/v1/conns/{conn}/write` call of a bulk transfer.
pub const WRITE_CHUNK_BYTES: usize = 64 * 1024;
/// Longest wait of one bulk write or read (the relay may be down meanwhile).
const TRANSFER_OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause before offering a write again that the Worker refused with `not_ready`.
const NOT_READY_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Pause between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Wait for one event before publishing again: the broker only forwards events published
/// after it read the subscription (spec §10.4), which the API cannot tell us.
const EVENT_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The two ends of the scenario.
#[derive(Debug, Clone)]
pub struct Ends {
    /// The Worker's API.
    pub api: WorkerApi,
    /// The Worker's address.
    pub worker: Addr,
    /// The native peer's address.
    pub peer: Addr,
}

impl Ends {
    /// Waits until the Worker registered; returns the ends and the Worker's info.
    pub async fn of(world: &World) -> anyhow::Result<(Self, Info)> {
        let info = world.wait_registered(REGISTER_TIMEOUT).await?;
        let worker = info
            .address
            .parse::<Addr>()
            .map_err(|e| anyhow!("Worker address {:?}: {e}", info.address))?;
        let ends = Self {
            api: world.api(),
            worker,
            peer: world.peer.addr(),
        };
        Ok((ends, info))
    }

    /// The peer's address in text form, as the API takes it.
    pub fn peer_text(&self) -> String {
        self.peer.to_string()
    }
}

/// The Worker asks `peer` for trust; the peer sees the request and approves it. Between
/// two private nodes the request travels through the registry inbox (spec §9.6), which also
/// records the trust pair when the peer accepts, so each may resolve the other from then on.
///
/// A handshake makes trust mutual, and a node refuses to ask a node it trusts already, so
/// this and [`peer_asks_worker_for_trust`] need two different peers. Done when the Worker,
/// polling its inbox, has adopted the accepting answer and lists the peer as trusted.
pub async fn worker_asks_peer_for_trust(peer: &Peer, ends: &Ends) -> anyhow::Result<()> {
    ends.api
        .handshake(
            &peer.addr().to_string(),
            "e2e: the Worker asks a native peer",
        )
        .await?;
    poll(
        TRUST_TIMEOUT,
        "the peer to see the Worker's request",
        || async {
            let pending = peer.pending_handshakes().await?;
            Ok(pending.iter().any(|h| h.node == ends.worker.node))
        },
    )
    .await?;
    peer.approve(ends.worker.node).await?;
    poll(
        TRUST_TIMEOUT,
        "the Worker to adopt the peer's answer",
        || async { Ok(trusts(&ends.api, peer.addr()).await?) },
    )
    .await?;
    Ok(())
}

/// The world's peer asks the Worker for trust; the Worker approves through its API; then
/// each trusts the other. Relayed through the registry inbox at first (spec §9.6), which the
/// Worker polls every 10 s.
pub async fn peer_asks_worker_for_trust(world: &World, ends: &Ends) -> anyhow::Result<()> {
    world
        .peer
        .request_trust(ends.worker, "e2e: the native peer asks the Worker")
        .await?;
    let request = poll_for(
        TRUST_TIMEOUT,
        "the Worker to see the peer's request",
        || async {
            let pending = ends.api.pending_handshakes().await?;
            Ok(pending
                .into_iter()
                .find(|h| h.address.parse::<Addr>().ok() == Some(ends.peer)))
        },
    )
    .await?;
    ends.api.approve(&request.node).await?;
    world
        .peer
        .wait_trusted(ends.worker.node, TRUST_TIMEOUT)
        .await?;
    Ok(())
}

/// Whether the Worker lists `peer` as trusted.
pub async fn trusts(api: &WorkerApi, peer: Addr) -> Result<bool, ApiError> {
    let trusted = api.trusted().await?;
    Ok(trusted.iter().any(|a| a.parse::<Addr>().ok() == Some(peer)))
}

/// The Worker opens a stream to the peer's echo port, sends `data` and reads it back.
pub async fn echo(ends: &Ends, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let conn = ends
        .api
        .dial(&ends.peer_text(), ECHO_PORT, STEP_TIMEOUT)
        .await?;
    ends.api
        .write(&conn.conn, data.to_vec(), STEP_TIMEOUT)
        .await?;
    let back = ends
        .api
        .read_exact(&conn.conn, data.len(), STEP_TIMEOUT)
        .await?;
    ends.api.close(&conn.conn).await?;
    Ok(back)
}

/// Round trips of `size` bytes over one echo stream; the time of each.
pub async fn echo_round_trips(
    ends: &Ends,
    count: usize,
    size: usize,
) -> anyhow::Result<Vec<Duration>> {
    let conn = ends
        .api
        .dial(&ends.peer_text(), ECHO_PORT, STEP_TIMEOUT)
        .await?;
    let payload = vec![0x5a; size];
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        ends.api
            .write(&conn.conn, payload.clone(), STEP_TIMEOUT)
            .await?;
        let back = ends.api.read_exact(&conn.conn, size, STEP_TIMEOUT).await?;
        times.push(start.elapsed());
        if back != payload {
            bail!("echo returned different bytes");
        }
    }
    ends.api.close(&conn.conn).await?;
    Ok(times)
}

/// The Worker sends one TEXT frame to the peer's port 1001; returns the ACK line and what
/// the peer's server received.
pub async fn message(
    world: &World,
    ends: &Ends,
    text: &str,
) -> anyhow::Result<(String, crate::peer::ReceivedMessage)> {
    let reply = ends
        .api
        .send_message(&ends.peer_text(), "text", text.as_bytes(), STEP_TIMEOUT)
        .await?;
    let received = world.peer.next_message(STEP_TIMEOUT).await?;
    Ok((reply, received))
}

/// The Worker subscribes to `topic` at the peer's broker and publishes `data` there until
/// the subscription delivers an event (bounded); returns it and how many publishes it took.
pub async fn publish_and_receive(
    ends: &Ends,
    topic: &str,
    data: &[u8],
) -> anyhow::Result<(Event, usize)> {
    let subscription = ends.api.subscribe(&ends.peer_text(), topic).await?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut publishes = 0;
    while Instant::now() < deadline {
        ends.api.publish(&ends.peer_text(), topic, data).await?;
        publishes += 1;
        match ends
            .api
            .next_event(&subscription, EVENT_RETRY_INTERVAL)
            .await
        {
            Ok(event) => return Ok((event, publishes)),
            Err(err) if err.code() == Some("timeout") => continue,
            Err(err) => return Err(err.into()),
        }
    }
    bail!("no event on {topic:?} after {publishes} publishes within {STEP_TIMEOUT:?}")
}

/// The Worker sends one datagram to the peer's `port`; returns what the peer received.
pub async fn datagram_to_peer(
    world: &World,
    ends: &Ends,
    port: u16,
    data: &[u8],
) -> anyhow::Result<ReceivedDatagram> {
    world.peer.listen_datagrams(port).await?;
    ends.api.send_to(&ends.peer_text(), port, data).await?;
    Ok(world.peer.next_datagram(port, STEP_TIMEOUT).await?)
}

/// The peer sends one datagram to the Worker's `port`; returns what the Worker received.
pub async fn datagram_to_worker(
    world: &World,
    ends: &Ends,
    port: u16,
    data: &[u8],
) -> anyhow::Result<Datagram> {
    // The Worker queues datagrams only for a listened port; datagrams are unreliable, so
    // send until one lands.
    ends.api.listen(port).await?;
    let api = ends.api.clone();
    let waiter = tokio::spawn(async move { api.recv_from(port, STEP_TIMEOUT).await });
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !waiter.is_finished() && Instant::now() < deadline {
        world
            .peer
            .send_datagram(ends.worker, port, data.to_vec())
            .await?;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Ok(waiter.await.context("recv-from task")??)
}

/// The peer dials the Worker's `port` (the Worker listens and accepts), sends `request`; the
/// Worker answers `reply`. Returns what the Worker accepted and read, and what the peer read.
pub async fn peer_dials_worker(
    world: &World,
    ends: &Ends,
    port: u16,
    request: &[u8],
    reply: &[u8],
) -> anyhow::Result<(Conn, Vec<u8>, Vec<u8>)> {
    ends.api.listen(port).await?;
    let api = ends.api.clone();
    let acceptor = tokio::spawn(async move { api.accept(port, STEP_TIMEOUT).await });
    let mut stream = world.peer.dial(ends.worker, port).await?;
    stream.write_all(request).await?;
    let conn = acceptor.await.context("accept task")??;
    let got = ends
        .api
        .read_exact(&conn.conn, request.len(), STEP_TIMEOUT)
        .await?;
    ends.api
        .write(&conn.conn, reply.to_vec(), STEP_TIMEOUT)
        .await?;
    ends.api.close(&conn.conn).await?;
    let back = read_to_end(&mut stream, STEP_TIMEOUT).await?;
    stream.close().await?;
    Ok((conn, got, back))
}

/// What a bulk transfer measured.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Bytes the Worker wrote.
    pub sent: usize,
    /// Bytes the peer read before end of stream.
    pub received: usize,
    /// SHA-256 of what was written.
    pub sent_sha256: [u8; 32],
    /// SHA-256 of what was read.
    pub received_sha256: [u8; 32],
    /// From the first write to the peer's end of stream.
    pub elapsed: Duration,
    /// Writes refused while the transport recovered, and offered again.
    pub write_retries: usize,
}

/// Shared progress of a running transfer: bytes the peer has read so far.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicUsize>);

impl Progress {
    /// Bytes read so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Waits until at least `bytes` were read, bounded by `timeout`.
    pub async fn reached(&self, bytes: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.get() < bytes {
            if Instant::now() >= deadline {
                bail!("transfer stalled at {} of {bytes} bytes", self.get());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// A Worker → peer transfer of random bytes running in the background.
#[derive(Debug)]
pub struct RunningTransfer {
    /// Bytes the peer has read so far.
    pub progress: Progress,
    started: Instant,
    sent_sha256: [u8; 32],
    sent: usize,
    writer: tokio::task::JoinHandle<Result<usize, ApiError>>,
    reader: tokio::task::JoinHandle<anyhow::Result<(usize, [u8; 32])>>,
}

impl RunningTransfer {
    /// Waits for both ends and reports.
    pub async fn finish(self) -> anyhow::Result<Transfer> {
        let write_retries = self.writer.await.context("writer task")??;
        let (received, received_sha256) = self.reader.await.context("reader task")??;
        Ok(Transfer {
            sent: self.sent,
            received,
            sent_sha256: self.sent_sha256,
            received_sha256,
            elapsed: self.started.elapsed(),
            write_retries,
        })
    }
}

/// Starts sending `len` random bytes from the Worker to the peer's `port` on one stream
/// (then FIN). Returns once the peer accepted the stream.
pub async fn start_transfer(
    world: &World,
    ends: &Ends,
    port: u16,
    len: usize,
) -> anyhow::Result<RunningTransfer> {
    let mut data = vec![0u8; len];
    OsRng.fill_bytes(&mut data);
    let sent_sha256: [u8; 32] = Sha256::digest(&data).into();

    world.peer.listen(port).await?;
    let conn = ends.api.dial(&ends.peer_text(), port, STEP_TIMEOUT).await?;
    let stream = world.peer.accept(port, STEP_TIMEOUT).await?;
    info!(port, bytes = len, "transfer started");

    let started = Instant::now();
    let progress = Progress::default();
    let reader = tokio::spawn(read_hashing(stream, progress.clone()));
    let api = ends.api.clone();
    let writer = tokio::spawn(async move { write_all(&api, &conn.conn, &data).await });
    Ok(RunningTransfer {
        progress,
        started,
        sent_sha256,
        sent: len,
        writer,
        reader,
    })
}

/// Writes every chunk; a chunk refused because the Worker is reconnecting (see
/// [`transport_recovering`]) is offered again after a pause, until [`TRANSFER_OP_TIMEOUT`].
async fn write_all(api: &WorkerApi, conn: &Value, data: &[u8]) -> Result<usize, ApiError> {
    let mut retries = 0;
    for chunk in data.chunks(WRITE_CHUNK_BYTES) {
        let deadline = Instant::now() + TRANSFER_OP_TIMEOUT;
        let written = loop {
            match api.write(conn, chunk.to_vec(), TRANSFER_OP_TIMEOUT).await {
                Err(err) if transport_recovering(&err) && Instant::now() < deadline => {
                    tracing::debug!(error = %err, "write refused while the transport recovers");
                    retries += 1;
                    tokio::time::sleep(NOT_READY_RETRY_INTERVAL).await;
                }
                other => break other?,
            }
        };
        if written != chunk.len() {
            return Err(ApiError::Unexpected(format!(
                "write queued {written} of {} bytes",
                chunk.len()
            )));
        }
    }
    api.close(conn).await?;
    Ok(retries)
}

/// Refusals that come before anything is queued while the relay session is down: `not_ready`
/// (no session) and `registry_error` (re-registration through the relay's pipe failed).
fn transport_recovering(err: &ApiError) -> bool {
    matches!(err.code(), Some("not_ready" | "registry_error"))
}

async fn read_hashing(
    mut stream: PeerStream,
    progress: Progress,
) -> anyhow::Result<(usize, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut total = 0usize;
    while let Some(bytes) = stream.read(TRANSFER_OP_TIMEOUT).await? {
        hasher.update(&bytes);
        total += bytes.len();
        progress.0.store(total, Ordering::Relaxed);
    }
    stream.close().await?;
    Ok((total, hasher.finalize().into()))
}

async fn read_to_end(stream: &mut PeerStream, timeout: Duration) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(bytes) = stream.read(timeout).await? {
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Polls `check` until it says yes, bounded by `timeout`.
pub async fn poll<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    poll_for(timeout, what, || {
        let fut = check();
        async move { Ok(fut.await?.then_some(())) }
    })
    .await
}

/// Polls `check` until it yields a value, bounded by `timeout`.
pub async fn poll_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
