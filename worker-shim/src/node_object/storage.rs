//! What the Durable Object keeps in its storage: the Ed25519 identity seed (created on first
//! start), the node ID, the trust set and the peer key cache. The X25519 tunnel key is not
//! stored: it is fresh per instance (spec §4.1).

use std::collections::BTreeMap;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pilot_core::crypto::Identity;
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::driver::Shared;
use crate::api::{ApiError, ErrorCode};

const IDENTITY_KEY: &str = "identity_seed";
const NODE_ID_KEY: &str = "node_id";
const TRUSTED_KEY: &str = "trusted";
const PEER_KEYS_KEY: &str = "peer_keys";
const HOSTNAME_KEY: &str = "hostname";

fn storage_error(err: worker::Error) -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        format!("Durable Object storage: {err}"),
    )
}

/// The RFC 8032 seed of our identity, created with getrandom on first start.
pub async fn load_seed(shared: &Shared) -> Result<Zeroizing<[u8; 32]>, ApiError> {
    let storage = shared.state.storage();
    let stored: Option<String> = storage.get(IDENTITY_KEY).await.map_err(storage_error)?;
    if let Some(text) = stored.map(Zeroizing::new) {
        let bytes = Zeroizing::new(BASE64.decode(text.as_bytes()).unwrap_or_default());
        let mut seed = Zeroizing::new([0u8; 32]);
        if bytes.len() != seed.len() {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "stored identity seed is not 32 bytes of base64",
            )
            .with_hint("delete the Durable Object's storage to create a new identity"));
        }
        seed.copy_from_slice(&bytes);
        return Ok(seed);
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut_slice())
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("no randomness: {e}")))?;
    let text = Zeroizing::new(BASE64.encode(seed.as_slice()));
    storage
        .put(IDENTITY_KEY, text.as_str())
        .await
        .map_err(storage_error)?;
    info!("created a new identity");
    Ok(seed)
}

/// Our identity, loaded once per instance.
pub async fn load_identity(shared: &Shared) -> Result<Rc<Identity>, ApiError> {
    if let Some(identity) = shared.inner.borrow().identity.clone() {
        return Ok(identity);
    }
    let seed = load_seed(shared).await?;
    let identity = Rc::new(Identity::from_seed(&seed));
    shared.inner.borrow_mut().identity = Some(Rc::clone(&identity));
    Ok(identity)
}

/// Remembers the node ID (for operators reading the storage; the registry is the authority).
pub async fn save_node_id(shared: &Shared, node_id: u32) {
    if let Err(err) = shared.state.storage().put(NODE_ID_KEY, node_id).await {
        warn!(%err, "cannot store the node ID");
    }
}

/// The stored trust set and peer key cache (empty if none or unreadable).
pub async fn load_trust(shared: &Shared) -> (Vec<u32>, BTreeMap<u32, [u8; 32]>) {
    let storage = shared.state.storage();
    let trusted: Vec<u32> = storage
        .get(TRUSTED_KEY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let stored: Vec<(u32, String)> = storage
        .get(PEER_KEYS_KEY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let keys = stored
        .into_iter()
        .filter_map(|(node, key)| {
            let key: [u8; 32] = BASE64.decode(key).ok()?.try_into().ok()?;
            Some((node, key))
        })
        .collect();
    (trusted, keys)
}

/// Stores the trust set and the peer key cache.
pub async fn save_trust(shared: &Shared, trusted: &[u32], keys: &BTreeMap<u32, [u8; 32]>) {
    let storage = shared.state.storage();
    let keys: Vec<(u32, String)> = keys
        .iter()
        .map(|(node, key)| (*node, BASE64.encode(key)))
        .collect();
    if let Err(err) = storage.put(TRUSTED_KEY, trusted).await {
        warn!(%err, "cannot store the trust set");
    }
    if let Err(err) = storage.put(PEER_KEYS_KEY, keys).await {
        warn!(%err, "cannot store the peer key cache");
    }
}

/// The hostname last claimed through the API (re-claimed at each registration).
pub async fn load_hostname(shared: &Shared) -> Option<String> {
    let stored: Option<String> = shared
        .state
        .storage()
        .get(HOSTNAME_KEY)
        .await
        .ok()
        .flatten();
    stored.filter(|h| !h.is_empty())
}

/// Remembers a hostname claimed through the API.
pub async fn save_hostname(shared: &Shared, hostname: &str) {
    if let Err(err) = shared.state.storage().put(HOSTNAME_KEY, hostname).await {
        warn!(%err, "cannot store the hostname");
    }
}
