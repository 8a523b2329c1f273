//! The peer's Ed25519 identity, persisted in a small JSON file.
//!
//! Format (one object, UTF-8): `{"version":1,"seed":"<standard base64 of 32 bytes>"}`. The
//! seed is the RFC 8032 secret seed (the first half of Go's `private_key`). The file is
//! created with mode 0600 on Unix when missing; an existing file is read as is.

use std::fs::OpenOptions;
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use base64::Engine as _;
use rand_core::{OsRng, RngCore as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The only format version written and accepted.
const IDENTITY_FORMAT_VERSION: u32 = 1;
/// Length of an Ed25519 seed.
const SEED_BYTES: usize = 32;

#[derive(Serialize, Deserialize)]
struct IdentityFile {
    version: u32,
    seed: String,
}

/// Reads the seed stored at `path`, or creates the file with a fresh random seed.
pub fn load_or_create(path: &Path) -> io::Result<Zeroizing<[u8; SEED_BYTES]>> {
    match OpenOptions::new().read(true).open(path) {
        Ok(mut file) => {
            let mut text = Zeroizing::new(String::new());
            file.read_to_string(&mut text)?;
            parse(&text)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => create(path),
        Err(err) => Err(err),
    }
}

fn parse(text: &str) -> io::Result<Zeroizing<[u8; SEED_BYTES]>> {
    let file: IdentityFile = serde_json::from_str(text).map_err(io::Error::other)?;
    if file.version != IDENTITY_FORMAT_VERSION {
        return Err(io::Error::other(format!(
            "identity file version {} (expected {IDENTITY_FORMAT_VERSION})",
            file.version
        )));
    }
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(file.seed.as_bytes())
            .map_err(io::Error::other)?,
    );
    let seed: [u8; SEED_BYTES] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| io::Error::other("identity seed is not 32 bytes"))?;
    Ok(Zeroizing::new(seed))
}

fn create(path: &Path) -> io::Result<Zeroizing<[u8; SEED_BYTES]>> {
    let mut seed = Zeroizing::new([0u8; SEED_BYTES]);
    OsRng.fill_bytes(seed.as_mut());
    let record = IdentityFile {
        version: IDENTITY_FORMAT_VERSION,
        seed: base64::engine::general_purpose::STANDARD.encode(seed.as_ref()),
    };
    let text = Zeroizing::new(serde_json::to_string(&record).map_err(io::Error::other)?);
    let mut options = OpenOptions::new();
    // `create_new`: never overwrite an identity another process just wrote.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(seed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn created_identity_is_read_back_unchanged() {
        let dir = std::env::temp_dir().join(format!("pilot-peer-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.json");
        let _ = std::fs::remove_file(&path);
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(*first, *second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn wrong_seed_length_is_refused() {
        let text = r#"{"version":1,"seed":"AAAA"}"#;
        assert!(parse(text).is_err());
    }
}
