//! Key material held inside the module (spec §4.1): the Ed25519 identity and the X25519
//! tunnel key. JavaScript holds opaque handles; secrets never cross into JS memory after
//! construction and are zeroized when the handle is freed.

use alloc::vec::Vec;

use pilot_core::crypto;
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use crate::error::PilotError;
use crate::js::array;
use crate::rng;

/// The node's long-term Ed25519 identity, registered with the registry; signs PILA frames.
#[wasm_bindgen]
pub struct Identity {
    pub(crate) inner: crypto::Identity,
}

#[wasm_bindgen]
impl Identity {
    /// A new identity from the platform CSPRNG (crypto.getRandomValues).
    pub fn generate() -> Result<Identity, PilotError> {
        let mut seed = Zeroizing::new([0u8; crypto::ED25519_KEY_LEN]);
        rng::fill(seed.as_mut())?;
        Ok(Self {
            inner: crypto::Identity::from_seed(&seed),
        })
    }

    /// The identity with this 32-byte RFC 8032 seed (the first half of Go's private key).
    #[wasm_bindgen(js_name = fromSeed)]
    pub fn from_seed(seed: &[u8]) -> Result<Identity, PilotError> {
        let seed = Zeroizing::new(array::<{ crypto::ED25519_KEY_LEN }>("seed", seed)?);
        Ok(Self {
            inner: crypto::Identity::from_seed(&seed),
        })
    }

    /// The identity stored as Go's 64-byte private key (seed ‖ public key).
    #[wasm_bindgen(js_name = fromKeypair)]
    pub fn from_keypair(keypair: &[u8]) -> Result<Identity, PilotError> {
        let keypair = Zeroizing::new(array::<{ 2 * crypto::ED25519_KEY_LEN }>(
            "keypair", keypair,
        )?);
        Ok(Self {
            inner: crypto::Identity::from_keypair_bytes(&keypair)?,
        })
    }

    /// The 32-byte Ed25519 public key.
    #[wasm_bindgen(getter, js_name = publicKey)]
    pub fn public_key(&self) -> Vec<u8> {
        self.inner.public_key().to_vec()
    }

    /// A plain Ed25519 signature of `message` (registry challenges, spec §9).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.inner.sign(message).to_vec()
    }
}

/// Checks an Ed25519 signature (strict RFC 8032); throws `CRYPTO_BAD_SIGNATURE` or
/// `CRYPTO_INVALID_PUBLIC_KEY`.
#[wasm_bindgen(js_name = verifySignature)]
pub fn verify_signature(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), PilotError> {
    crypto::verify_signature(
        &array("publicKey", public_key)?,
        message,
        &array("signature", signature)?,
    )?;
    Ok(())
}

/// The process's X25519 tunnel key: drawn fresh at every start, never persisted.
#[wasm_bindgen]
pub struct TunnelKey {
    pub(crate) inner: crypto::TunnelKey,
}

#[wasm_bindgen]
impl TunnelKey {
    /// A new tunnel key from the platform CSPRNG (crypto.getRandomValues).
    pub fn generate() -> Result<TunnelKey, PilotError> {
        let mut private = Zeroizing::new([0u8; crypto::X25519_KEY_LEN]);
        rng::fill(private.as_mut())?;
        Ok(Self {
            inner: crypto::TunnelKey::from_bytes(&private),
        })
    }

    /// The tunnel key with this 32-byte private scalar: for tests and recorded transcripts.
    #[wasm_bindgen(js_name = fromPrivate)]
    pub fn from_private(private: &[u8]) -> Result<TunnelKey, PilotError> {
        let private = Zeroizing::new(array::<{ crypto::X25519_KEY_LEN }>("private", private)?);
        Ok(Self {
            inner: crypto::TunnelKey::from_bytes(&private),
        })
    }

    /// The 32-byte X25519 public key sent in PILK and PILA frames.
    #[wasm_bindgen(getter, js_name = publicKey)]
    pub fn public_key(&self) -> Vec<u8> {
        self.inner.public_key().to_vec()
    }
}
