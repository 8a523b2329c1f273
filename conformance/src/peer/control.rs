//! The control socket of a running peer: how `pilot-peer handshake|pending|approve|reject|
//! trusted` reach the daemon that holds the trust store.
//!
//! A Unix domain socket (mode 0600, so only the daemon's user may act on its trust) serves
//! one JSON request per connection, one line each way:
//!
//! ```text
//! → {"cmd":"handshake","addr":"0:0000.0000.0005","justification":"demo"}
//! ← {"ok":true,"path":"relayed"}
//! → {"cmd":"pending"}
//! ← {"ok":true,"pending":[{"node":5,"address":"0:0000.0000.0005","justification":"demo","path":"relayed","received_at_unix_secs":1790000000}]}
//! → {"cmd":"approve","node":5}      → {"cmd":"reject","node":5,"reason":"no"}
//! ← {"ok":true}                      ← {"ok":false,"error":"node error: trust: no trust request from node 5 pending"}
//! → {"cmd":"trusted"}
//! ← {"ok":true,"trusted":[5]}
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pilot_core::addr::Addr;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Peer, PeerError, TrustPath};

/// Longest request line read; a longer one is refused.
const MAX_CONTROL_LINE_BYTES: u64 = 64 * 1024;
/// How long a client may take to send its request line. A client that connects and stays
/// silent would otherwise hold a task and a descriptor for as long as the daemon runs.
const CONTROL_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// [`Peer::request_trust`].
    Handshake {
        /// The node asked, e.g. `0:0000.0000.0005`.
        addr: String,
        /// Why.
        #[serde(default)]
        justification: String,
    },
    /// [`Peer::pending_handshakes`].
    Pending,
    /// [`Peer::approve`].
    Approve {
        /// The requester.
        node: u32,
    },
    /// [`Peer::reject`].
    Reject {
        /// The requester.
        node: u32,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// [`Peer::trusted`].
    Trusted,
}

/// A control socket being served; dropping it stops serving and removes the socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Err(err) = std::fs::remove_file(&self.path) {
            debug!(path = %self.path.display(), %err, "cannot remove the control socket");
        }
    }
}

/// Serves `peer`'s control socket at `path`. A stale socket file (nobody answering) is
/// replaced; one a running peer answers is an error.
pub async fn serve_control(path: &Path, peer: Arc<Peer>) -> io::Result<ControlServer> {
    ensure_control_free(path).await?;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let peer = Arc::clone(&peer);
                    tokio::spawn(async move {
                        if let Err(err) = serve_one(stream, &peer).await {
                            debug!(%err, "control connection failed");
                        }
                    });
                }
                Err(err) => {
                    warn!(%err, "control socket accept failed");
                    return;
                }
            }
        }
    });
    Ok(ControlServer {
        path: path.to_path_buf(),
        task,
    })
}

/// Fails if a running peer answers on the control socket at `path`; a stale file is fine.
/// `run` checks this before registering, so a daemon that cannot serve its socket never
/// starts a node.
pub async fn ensure_control_free(path: &Path) -> io::Result<()> {
    if path.exists() && UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another pilot-peer serves {}; stop it or pick another --control path",
                path.display()
            ),
        ));
    }
    Ok(())
}

async fn serve_one(stream: UnixStream, peer: &Peer) -> io::Result<()> {
    let (mut read, mut write) = stream.into_split();
    let answer = match read_request(&mut read).await {
        Ok(request) => match answer(peer, request).await {
            Ok(mut value) => {
                if let Value::Object(fields) = &mut value {
                    fields.insert("ok".to_string(), Value::Bool(true));
                }
                value
            }
            Err(err) => json!({"ok": false, "error": err.to_string()}),
        },
        Err(why) => json!({"ok": false, "error": format!("bad control request: {why}")}),
    };
    let mut text = answer.to_string();
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await?;
    // Closing a Unix socket with unread input resets it, and the client would lose the
    // answer (e.g. to an oversized line); so drain what is left, for a bounded time.
    let _ = tokio::time::timeout(
        CONTROL_REQUEST_TIMEOUT,
        tokio::io::copy(&mut read, &mut tokio::io::sink()),
    )
    .await;
    Ok(())
}

/// Reads and parses the one request line, within [`CONTROL_REQUEST_TIMEOUT`] and
/// [`MAX_CONTROL_LINE_BYTES`]; `Err` says what was wrong with it.
async fn read_request(
    read: &mut tokio::net::unix::OwnedReadHalf,
) -> Result<ControlRequest, String> {
    let mut bytes = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_CONTROL_LINE_BYTES + 1));
    match tokio::time::timeout(
        CONTROL_REQUEST_TIMEOUT,
        reader.read_until(b'\n', &mut bytes),
    )
    .await
    {
        Err(_) => {
            return Err(format!(
                "no request line within {CONTROL_REQUEST_TIMEOUT:?}"
            ))
        }
        Ok(Err(err)) => return Err(format!("cannot read the request: {err}")),
        Ok(Ok(_)) => {}
    }
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_CONTROL_LINE_BYTES {
        return Err(format!(
            "request line longer than {MAX_CONTROL_LINE_BYTES} bytes"
        ));
    }
    serde_json::from_slice(&bytes).map_err(|err| err.to_string())
}

async fn answer(peer: &Peer, request: ControlRequest) -> Result<Value, PeerError> {
    Ok(match request {
        ControlRequest::Handshake {
            addr,
            justification,
        } => {
            let addr: Addr = addr
                .parse()
                .map_err(|err| PeerError::Io(io::Error::other(format!("bad address: {err}"))))?;
            let path = match peer.request_trust(addr, &justification).await? {
                TrustPath::Direct => "direct",
                TrustPath::Relayed => "relayed",
            };
            json!({"path": path})
        }
        ControlRequest::Pending => {
            let pending: Vec<Value> = peer
                .pending_handshakes()
                .await?
                .into_iter()
                .map(|p| {
                    json!({
                        "node": p.node,
                        "address": p.address.to_string(),
                        "justification": p.justification,
                        "path": match p.path {
                            TrustPath::Direct => "direct",
                            TrustPath::Relayed => "relayed",
                        },
                        "received_at_unix_secs": p.received_at_unix_secs,
                    })
                })
                .collect();
            json!({"pending": pending})
        }
        ControlRequest::Approve { node } => {
            peer.approve(node).await?;
            json!({})
        }
        ControlRequest::Reject { node, reason } => {
            peer.reject(node, &reason).await?;
            json!({})
        }
        ControlRequest::Trusted => json!({"trusted": peer.trusted().await?}),
    })
}

/// Sends one request to the control socket at `path` and returns the answer object. An
/// answer with `"ok":false` is returned as `Err` carrying its `error` text.
pub async fn control_call(path: &Path, request: &ControlRequest) -> io::Result<Value> {
    let stream = UnixStream::connect(path).await.map_err(|err| {
        io::Error::new(
            err.kind(),
            format!(
                "cannot reach a running pilot-peer at {}: {err} (start one with `run`, same \
                 --identity or --control)",
                path.display()
            ),
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request).map_err(io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await?;
    let mut line = String::new();
    BufReader::new(read.take(MAX_CONTROL_LINE_BYTES * 16))
        .read_line(&mut line)
        .await?;
    let value: Value = serde_json::from_str(&line).map_err(io::Error::other)?;
    if value.get("ok") == Some(&Value::Bool(true)) {
        Ok(value)
    } else {
        let error = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error text")
            .to_string();
        Err(io::Error::other(error))
    }
}
