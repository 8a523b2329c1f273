//! The peer's trust store on disk: the nodes it trusts, so that a restart keeps admitting
//! them (spec §6.8). Pending requests are not kept: a requester that gets no answer asks again.
//!
//! Format (one object, UTF-8):
//! `{"version":1,"trusted":[{"node":5,"key":"<standard base64 of 32 bytes>","since_unix_secs":1790000000}]}`
//! (`key` is `null` when trust came through the registry relay without a key). Written
//! atomically: a temporary file in the same directory (mode 0600), synced, then renamed over
//! the store, so a crash leaves the old store or the new one, never half of one.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use pilot_core::services::trust_service::TrustedPeer;
use serde::{Deserialize, Serialize};

/// The only format version written and accepted.
const TRUST_STORE_FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    trusted: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    node: u32,
    key: Option<String>,
    since_unix_secs: u64,
}

/// The trusted nodes saved at `path`; none if the file does not exist. A store that other
/// users may write is refused: whoever can edit it decides which nodes we admit.
pub fn load(path: &Path) -> io::Result<Vec<(u32, TrustedPeer)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(io::Error::new(
                err.kind(),
                format!("cannot read trust store {}: {err}", path.display()),
            ))
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "trust store {} is writable by other users (mode {:o}); run `chmod 600` on \
                     it if its contents are yours, else delete it",
                    path.display(),
                    mode & 0o777
                ),
            ));
        }
    }
    parse(&text).map_err(|why| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "trust store {}: {why} (fix or delete the file)",
                path.display()
            ),
        )
    })
}

fn parse(text: &str) -> Result<Vec<(u32, TrustedPeer)>, String> {
    let file: StoreFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.version != TRUST_STORE_FORMAT_VERSION {
        return Err(format!(
            "version {} (expected {TRUST_STORE_FORMAT_VERSION})",
            file.version
        ));
    }
    file.trusted
        .into_iter()
        .map(|entry| {
            let key = entry.key.map(|key| decode_key(&key)).transpose()?;
            let peer = TrustedPeer {
                key,
                since_unix_secs: entry.since_unix_secs,
            };
            Ok((entry.node, peer))
        })
        .collect()
}

fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| format!("bad key: {e}"))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| "a key is not 32 bytes".to_string())
}

/// Replaces the store at `path` with `trusted`, atomically.
pub fn save<'a>(
    path: &Path,
    trusted: impl Iterator<Item = (u32, &'a TrustedPeer)>,
) -> io::Result<()> {
    let file = StoreFile {
        version: TRUST_STORE_FORMAT_VERSION,
        trusted: trusted
            .map(|(node, peer)| Entry {
                node,
                key: peer
                    .key
                    .map(|key| base64::engine::general_purpose::STANDARD.encode(key)),
                since_unix_secs: peer.since_unix_secs,
            })
            .collect(),
    };
    let mut text = serde_json::to_string(&file).map_err(io::Error::other)?;
    text.push('\n');
    let temporary = temporary_path(path);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut out = options.open(&temporary)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&temporary, path)
}

/// `<store>.tmp`, next to the store so the rename stays on one file system.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn saved_store_is_read_back_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("pilot-peer-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trust.json");
        let _ = std::fs::remove_file(&path);
        assert!(load(&path).unwrap().is_empty(), "a missing store is empty");
        let with_key = TrustedPeer {
            key: Some([7; 32]),
            since_unix_secs: 1_790_000_000,
        };
        let relayed = TrustedPeer {
            key: None,
            since_unix_secs: 1_790_000_001,
        };
        save(&path, [(5, &with_key), (9, &relayed)].into_iter()).unwrap();
        assert_eq!(load(&path).unwrap(), vec![(5, with_key), (9, relayed)]);
        assert!(
            !temporary_path(&path).exists(),
            "the temporary file was renamed"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn store_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir =
            std::env::temp_dir().join(format!("pilot-peer-trust-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trust.json");
        std::fs::write(&path, r#"{"version":1,"trusted":[]}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = load(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&path).unwrap().is_empty());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn damaged_store_is_refused_with_its_path() {
        assert!(parse(r#"{"version":2,"trusted":[]}"#).is_err());
        assert!(
            parse(r#"{"version":1,"trusted":[{"node":1,"key":"AAAA","since_unix_secs":0}]}"#)
                .is_err()
        );
        assert!(parse("not json").is_err());
        let dir = std::env::temp_dir().join(format!("pilot-peer-trust-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trust.json");
        std::fs::write(&path, "{").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.to_string().contains("trust.json"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
