//! Randomness for keys, nonce prefixes and group IDs: the platform CSPRNG.
//!
//! getrandom 0.2 with its `js` feature calls `crypto.getRandomValues`, which Workers and
//! Node >= 20 provide as a global. Errors are reported, not panicked: with `panic = "abort"`
//! a panic would kill the whole module instance.

use crate::error::PilotError;

/// `N` bytes from the platform CSPRNG.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], PilotError> {
    let mut bytes = [0u8; N];
    fill(&mut bytes)?;
    Ok(bytes)
}

/// Fills `bytes` from the platform CSPRNG.
pub(crate) fn fill(bytes: &mut [u8]) -> Result<(), PilotError> {
    getrandom::getrandom(bytes).map_err(|e| {
        PilotError::new(
            "RNG_UNAVAILABLE",
            alloc::format!("crypto.getRandomValues failed: {e}"),
        )
    })
}
