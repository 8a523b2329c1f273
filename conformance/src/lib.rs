//! Conformance runners: every case of `../shared/vectors/*.json` against pilot-core.
//!
//! Each vector file has one runner in [`runners`]. The `vectors` test (a custom harness, see
//! `tests/vectors.rs`) finds the directory, runs every known file, reports files that are
//! missing or unknown, and prints a per-file tally.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod e2e;
pub mod peer;
pub mod registry_server;
pub mod runners;

/// Environment variable that points the conformance run at another vector directory.
pub const VECTORS_DIR_ENV: &str = "PILOT_VECTORS_DIR";

/// One vector file as the Go generator writes it.
#[derive(Debug, Deserialize)]
pub struct VectorFile {
    /// Where the cases were generated (repository, commit).
    #[serde(default)]
    pub source: String,
    /// The generator's description of the format.
    #[serde(default)]
    pub description: String,
    /// The cases; each runner gives them a typed shape.
    pub cases: Vec<serde_json::Value>,
}

/// The verdict on one case.
#[derive(Debug)]
pub struct CaseOutcome {
    /// The case's `name` field.
    pub name: String,
    /// `Ok` when pilot-core behaved as the case says, else what differed.
    pub result: Result<(), String>,
}

impl CaseOutcome {
    /// Builds an outcome from a case name and a check result.
    pub fn new(name: impl Into<String>, result: Result<(), String>) -> Self {
        Self {
            name: name.into(),
            result,
        }
    }
}

/// A runner: takes the parsed file, returns one outcome per case.
pub type Runner = fn(&VectorFile) -> Vec<CaseOutcome>;

/// Every vector file this crate knows, with its runner.
pub const KNOWN_FILES: &[(&str, Runner)] = &[
    ("pilot-address.json", runners::address::run),
    ("pilot-packet.json", runners::packet::run),
    ("pilot-tunnel-frames.json", runners::tunnel_frames::run),
    ("pilot-replay-window.json", runners::replay_window::run),
    ("pilot-dataexchange.json", runners::dataexchange::run),
    ("pilot-eventstream.json", runners::eventstream::run),
];

/// The vector directory: `$PILOT_VECTORS_DIR`, else `../shared/vectors` next to the repository.
pub fn vectors_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(VECTORS_DIR_ENV) {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

/// Reads and parses one vector file.
pub fn load(path: &Path) -> Result<VectorFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Decodes a hex string from a vector, naming the field on error.
pub fn hex_field(field: &str, value: &str) -> Result<Vec<u8>, String> {
    hex::decode(value).map_err(|e| format!("field {field}: bad hex: {e}"))
}

/// Deserializes a case into its typed shape, naming the case on error.
pub fn typed<T: serde::de::DeserializeOwned>(case: &serde_json::Value) -> Result<T, String> {
    T::deserialize(case).map_err(|e| format!("case does not match the expected shape: {e}"))
}

/// The `name` field of a case, or a placeholder.
pub fn case_name(case: &serde_json::Value) -> String {
    case.get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("<unnamed>")
        .to_owned()
}

/// Compares two byte strings and describes the first difference.
pub fn expect_bytes(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    Err(format!(
        "{what}: got {} want {}",
        hex::encode(got),
        hex::encode(want)
    ))
}

/// Compares two values and describes the difference, naming what was compared.
pub fn expect_eq<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: T,
    want: T,
) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?} want {want:?}"))
    }
}

/// A future that completes on Ctrl-C or, on Unix, SIGTERM. On Unix the handlers are
/// installed when this is called, not when the future is first polled: call it before
/// announcing readiness, so a signal sent right after the announcement is never met by the
/// default action (immediate death, skipping the clean shutdown). Needs a tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let interrupt = async {
                match interrupt {
                    Ok(mut stream) => {
                        stream.recv().await;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot listen for Ctrl-C");
                        std::future::pending::<()>().await;
                    }
                }
            };
            let terminate = async {
                match terminate {
                    Ok(mut stream) => {
                        stream.recv().await;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot listen for SIGTERM");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = interrupt => tracing::info!("Ctrl-C received"),
                () = terminate => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received");
    }
}
