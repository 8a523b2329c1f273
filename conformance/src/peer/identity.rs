//! The peer's Ed25519 identity, persisted in a small JSON file.
//!
//! Format (one object, UTF-8): `{"version":1,"seed":"<standard base64 of 32 bytes>"}`. The
//! seed is the RFC 8032 secret seed (the first half of Go's `private_key`). The file is
//! created with mode 0600 on Unix when missing; an existing file is read as is.

use std::fs::{File, OpenOptions};
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

/// Reads the seed stored at `path`, or creates the file with a fresh random seed. Errors
/// name the file.
pub fn load_or_create(path: &Path) -> io::Result<Zeroizing<[u8; SEED_BYTES]>> {
    let seed = match OpenOptions::new().read(true).open(path) {
        Ok(mut file) => {
            let mut text = Zeroizing::new(String::new());
            check_private(&file)
                .and_then(|()| file.read_to_string(&mut text))
                .and_then(|_| parse(&text))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => create(path),
        Err(err) => Err(err),
    };
    seed.map_err(|err| {
        io::Error::new(
            err.kind(),
            format!(
                "identity file {}: {err} (fix it, or point --identity at a new file)",
                path.display()
            ),
        )
    })
}

/// Takes an exclusive lock on the identity file at `path`, held until the returned file is
/// dropped. Two running nodes with one identity would take turns overwriting each other's
/// registry entry (spec §9.3: the key is the identity), so the second one must not start.
/// The lock is advisory (`flock(2)`); on non-Unix systems there is none.
pub fn lock(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).open(path)?;
    #[cfg(unix)]
    {
        use rustix::fs::{flock, FlockOperation};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "identity file {} is in use by another running pilot-peer; stop that \
                         one, or give this one its own --identity",
                        path.display()
                    ),
                ))
            }
            Err(err) => {
                return Err(io::Error::new(
                    io::Error::from(err).kind(),
                    format!("cannot lock identity file {}: {err}", path.display()),
                ))
            }
        }
    }
    Ok(file)
}

/// Refuses a seed file other users may read or write (as ssh does for private keys).
fn check_private(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the secret seed is open to other users (mode {:o}); run `chmod 600` on it, \
                     and make a new identity if others may have read it",
                    mode & 0o777
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
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

    #[cfg(unix)]
    #[test]
    fn identity_is_locked_by_one_holder_at_a_time() {
        let dir = std::env::temp_dir().join(format!("pilot-peer-id-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.json");
        let _ = std::fs::remove_file(&path);
        load_or_create(&path).unwrap();
        let held = lock(&path).unwrap();
        let err = lock(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("identity.json"), "{err}");
        drop(held);
        drop(lock(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn damaged_identity_error_names_the_file() {
        let dir = std::env::temp_dir().join(format!("pilot-peer-id-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.json");
        std::fs::write(&path, "{").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("identity.json"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn identity_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("pilot-peer-id-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.json");
        let _ = std::fs::remove_file(&path);
        let seed = load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("identity.json"), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(*load_or_create(&path).unwrap(), *seed);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn wrong_seed_length_is_refused() {
        let text = r#"{"version":1,"seed":"AAAA"}"#;
        assert!(parse(text).is_err());
    }
}
