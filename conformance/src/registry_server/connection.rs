//! One registry connection: read frames, answer each request in order, close on idle,
//! broken framing or abuse (spec §9.1).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pilot_core::registry::{FrameReader, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};
use tracing::{debug, warn};

use super::state::{Origin, Refusal, Registry};

/// Bytes read from the socket per call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// spec §9.1: the request rate of a connection is judged only after this much lifetime.
const RATE_GRACE_PERIOD: Duration = Duration::from_secs(5);
/// spec §9.1: above this average rate each request is delayed by [`SLOWDOWN_PER_REQUEST`].
const SLOW_RATE_REQUESTS_PER_SEC: f64 = 100.0;
/// spec §9.1: above this average rate the connection is closed.
const CLOSE_RATE_REQUESTS_PER_SEC: f64 = 500.0;
/// spec §9.1: the delay added to each request of a fast connection.
const SLOWDOWN_PER_REQUEST: Duration = Duration::from_millis(10);

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The client closed after a whole number of messages.
    ByPeer,
    /// The client closed in the middle of a message.
    Truncated {
        /// Bytes of the unfinished message.
        buffered: usize,
    },
    /// Nothing arrived (or could be sent) within the idle timeout.
    Idle,
    /// A length prefix above the size limit: the stream cannot be resynchronised.
    FramingBroken,
    /// The client sent requests faster than [`CLOSE_RATE_REQUESTS_PER_SEC`].
    TooFast,
    /// A response could not be encoded (not expected).
    EncodeFailed,
}

/// How to treat the next request of a connection, given its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Answer at once.
    Normal,
    /// Answer after [`SLOWDOWN_PER_REQUEST`].
    Slow,
    /// Close the connection.
    Close,
}

/// spec §9.1: after [`RATE_GRACE_PERIOD`], more than 100 requests/s on average are slowed
/// and more than 500 requests/s close the connection.
pub(crate) fn pace(requests: u64, lifetime: Duration) -> Pace {
    if lifetime < RATE_GRACE_PERIOD {
        return Pace::Normal;
    }
    // Precision loss above 2^53 requests is irrelevant for a rate estimate.
    #[allow(clippy::cast_precision_loss)]
    let rate = requests as f64 / lifetime.as_secs_f64();
    if rate > CLOSE_RATE_REQUESTS_PER_SEC {
        Pace::Close
    } else if rate > SLOW_RATE_REQUESTS_PER_SEC {
        Pace::Slow
    } else {
        Pace::Normal
    }
}

/// Serves one accepted connection until it ends; errors are logged, never propagated.
pub(crate) async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    idle_timeout: Duration,
) {
    match serve_inner(&mut stream, peer, &registry, idle_timeout).await {
        Ok(Closed::ByPeer) => debug!("connection closed by peer"),
        Ok(Closed::Truncated { buffered }) => {
            warn!(buffered, "connection closed in the middle of a message");
        }
        Ok(Closed::Idle) => debug!(?idle_timeout, "idle connection closed"),
        Ok(closed) => warn!(reason = ?closed, "connection closed by the registry"),
        Err(err) => debug!(error = %err, "connection failed"),
    }
}

async fn serve_inner(
    stream: &mut TcpStream,
    peer: SocketAddr,
    registry: &Mutex<Registry>,
    idle_timeout: Duration,
) -> std::io::Result<Closed> {
    let started = Instant::now();
    let mut served: u64 = 0;
    let mut reader = FrameReader::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];

    loop {
        // spec §9.1: strictly one response per request, in order.
        loop {
            let body = match reader.next_message() {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(err) => {
                    // The length prefix is unusable, so nothing after it can be framed. Say
                    // why (best effort), then close.
                    warn!(error = %err, "broken framing");
                    if let Ok(frame) = error_response(&Refusal::Malformed(err)).encode() {
                        let _ = timeout(idle_timeout, stream.write_all(&frame)).await;
                    }
                    return Ok(Closed::FramingBroken);
                }
            };

            served = served.saturating_add(1);
            match pace(served, started.elapsed()) {
                Pace::Normal => {}
                Pace::Slow => sleep(SLOWDOWN_PER_REQUEST).await,
                Pace::Close => return Ok(Closed::TooFast),
            }

            let Ok(frame) = answer(&body, peer, registry).encode() else {
                return Ok(Closed::EncodeFailed);
            };
            match timeout(idle_timeout, stream.write_all(&frame)).await {
                Ok(written) => written?,
                Err(_) => return Ok(Closed::Idle),
            }
        }

        let read = match timeout(idle_timeout, stream.read(&mut chunk)).await {
            Ok(read) => read?,
            Err(_) => return Ok(Closed::Idle),
        };
        if read == 0 {
            return Ok(match reader.buffered() {
                0 => Closed::ByPeer,
                buffered => Closed::Truncated { buffered },
            });
        }
        reader.push(chunk.get(..read).unwrap_or_default());
    }
}

/// Decodes one body and lets the registry answer it.
fn answer(body: &[u8], peer: SocketAddr, registry: &Mutex<Registry>) -> Response {
    let request = match Request::decode(body) {
        Ok(request) => request,
        Err(err) => {
            warn!(error = %err, "undecodable request");
            return error_response(&Refusal::Malformed(err));
        }
    };

    let kind = request.type_name();
    let origin = Origin {
        peer_ip: peer.ip(),
        now_unix: unix_now(),
    };
    // A panic cannot leave the records half-updated in a way that matters more than
    // stopping service, so a poisoned lock is taken over rather than propagated.
    let response = registry
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .handle(request, &origin);
    match response.error_text() {
        Some(error) => debug!(request = kind, error, "refused"),
        None => debug!(request = kind, "answered"),
    }
    response
}

fn error_response(refusal: &Refusal) -> Response {
    Response::Error {
        error: refusal.to_string(),
    }
}

/// Wall-clock Unix seconds; a clock before 1970 reads as 0.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_ignores_the_first_seconds() {
        assert_eq!(pace(10_000, Duration::from_secs(4)), Pace::Normal);
    }

    #[test]
    fn pace_slows_above_100_and_closes_above_500_per_second() {
        let ten_secs = Duration::from_secs(10);
        assert_eq!(pace(1_000, ten_secs), Pace::Normal);
        assert_eq!(pace(1_001, ten_secs), Pace::Slow);
        assert_eq!(pace(5_000, ten_secs), Pace::Slow);
        assert_eq!(pace(5_001, ten_secs), Pace::Close);
    }
}
