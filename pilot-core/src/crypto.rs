//! Tunnel cryptography (spec §4): identities, tunnel keys, session keys and the send nonce.
//!
//! * [`Identity`]: the long-term Ed25519 key registered with the registry; signs PILA frames.
//! * [`TunnelKey`]: the X25519 key drawn fresh at every process start and shared by all peers.
//! * [`derive_session_key`]: X25519, then HKDF-SHA256 into the AES-256-GCM [`SessionKey`]
//!   (spec §4.2, the V-FORK/V-NEW scheme; the V-FEB SHA-256 scheme is not implemented).
//! * [`SendState`]: the sending half of a session: a random 4-byte nonce prefix and a counter
//!   that is pre-incremented, so the first frame carries counter 1 (spec §4.3).
//!
//! Secrets are zeroized on drop, never printed by `Debug`, and compared in constant time.
//! All randomness comes from the caller's RNG; with the `getrandom` feature, [`OsRng`] is the
//! operating system's.

use core::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes256Gcm;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::{ZeroizeOnDrop, Zeroizing};

#[cfg(feature = "getrandom")]
pub use rand_core::OsRng;

/// Length of an X25519 public key, private key and shared secret, in bytes.
pub const X25519_KEY_LEN: usize = 32;
/// Length of an Ed25519 public key and seed, in bytes.
pub const ED25519_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature, in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// Length of the AES-256-GCM key, in bytes.
pub const SESSION_KEY_LEN: usize = 32;
/// Length of the per-session random nonce prefix, in bytes (spec §4.3).
pub const NONCE_PREFIX_LEN: usize = 4;
/// Length of the full GCM nonce: prefix ‖ u64 counter BE (spec §4.3).
pub const NONCE_LEN: usize = 12;
/// Length of the GCM authentication tag, in bytes.
pub const TAG_LEN: usize = 16;
/// HKDF `info` label of the session key (spec §4.2; no trailing colon, unlike V-FEB).
pub const HKDF_INFO: &[u8] = b"pilot-tunnel-v1";

/// Why a cryptographic step refused to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The peer's X25519 key is of low order, so the shared secret is all zero (spec §4.2).
    NonContributory,
    /// HKDF refused the output length. Cannot happen for a 32-byte key; reported, not panicked.
    KeyDerivation,
    /// The bytes are not a valid Ed25519 public key.
    InvalidPublicKey,
    /// A 64-byte Ed25519 private key whose public half does not belong to its seed.
    KeypairMismatch,
    /// The Ed25519 signature does not verify under the given public key.
    BadSignature,
    /// The send counter reached `u64::MAX`; the session must be re-derived (spec §4.3).
    NonceExhausted,
    /// AES-GCM refused to encrypt: the plaintext exceeds GCM's length limit.
    SealFailed,
    /// AES-GCM authentication failed: wrong key, wrong AAD, or altered bytes.
    OpenFailed,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CryptoError::NonContributory => "peer X25519 key yields a non-contributory secret",
            CryptoError::KeyDerivation => "HKDF key derivation failed",
            CryptoError::InvalidPublicKey => "invalid Ed25519 public key",
            CryptoError::KeypairMismatch => "Ed25519 public key does not match its seed",
            CryptoError::BadSignature => "Ed25519 signature does not verify",
            CryptoError::NonceExhausted => "send counter exhausted",
            CryptoError::SealFailed => "AES-GCM encryption refused the plaintext",
            CryptoError::OpenFailed => "AES-GCM authentication failed",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CryptoError {}

/// Compares two 32-byte keys in constant time.
pub fn keys_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// The node's long-term Ed25519 identity (spec §4.1). Zeroized on drop.
pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    /// The identity whose RFC 8032 seed (the first half of Go's 64-byte private key) is `seed`.
    pub fn from_seed(seed: &[u8; ED25519_KEY_LEN]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The identity stored as Go's 64-byte private key (seed ‖ public key, the
    /// `private_key` of `identity.json`, spec §4.1). Fails if the halves do not match.
    pub fn from_keypair_bytes(keypair: &[u8; 2 * ED25519_KEY_LEN]) -> Result<Self, CryptoError> {
        SigningKey::from_keypair_bytes(keypair)
            .map(|signing| Self { signing })
            .map_err(|_| CryptoError::KeypairMismatch)
    }

    /// A new identity drawn from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; ED25519_KEY_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The Ed25519 public key, as registered with the registry.
    pub fn public_key(&self) -> [u8; ED25519_KEY_LEN] {
        self.signing.verifying_key().to_bytes()
    }

    /// Signs `message` with plain Ed25519 (RFC 8032, no pre-hash, no context; spec §0.2).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }
}

impl ZeroizeOnDrop for Identity {}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &HexKey(&self.public_key()))
            .finish_non_exhaustive()
    }
}

/// Checks an Ed25519 `signature` of `message` under `public_key`.
///
/// Uses the strict RFC 8032 check (canonical encodings, no small-order keys or `R`). This is
/// stricter than Go's `ed25519.Verify`, but every key and signature an honest daemon produces
/// passes it; only crafted weak keys are refused.
pub fn verify_signature(
    public_key: &[u8; ED25519_KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| CryptoError::InvalidPublicKey)?;
    let signature = Signature::from_bytes(signature);
    key.verify_strict(message, &signature)
        .map_err(|_| CryptoError::BadSignature)
}

/// The process's X25519 tunnel key (spec §4.1): fresh at every start, never persisted.
/// Zeroized on drop.
pub struct TunnelKey {
    secret: StaticSecret,
    public: X25519Public,
}

impl TunnelKey {
    /// A new tunnel key drawn from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self::from_secret(StaticSecret::random_from_rng(rng))
    }

    /// The tunnel key with the given private scalar bytes. For tests and vectors: a real
    /// process draws its key with [`TunnelKey::generate`].
    pub fn from_bytes(private: &[u8; X25519_KEY_LEN]) -> Self {
        Self::from_secret(StaticSecret::from(*private))
    }

    fn from_secret(secret: StaticSecret) -> Self {
        let public = X25519Public::from(&secret);
        Self { secret, public }
    }

    /// The public key sent in PILK and PILA frames.
    pub fn public_key(&self) -> [u8; X25519_KEY_LEN] {
        self.public.to_bytes()
    }

    /// X25519 with the peer's public key; rejects low-order keys (spec §4.2).
    pub fn diffie_hellman(
        &self,
        peer_public: &[u8; X25519_KEY_LEN],
    ) -> Result<SharedSecret, CryptoError> {
        let shared = self
            .secret
            .diffie_hellman(&X25519Public::from(*peer_public));
        if !shared.was_contributory() {
            return Err(CryptoError::NonContributory);
        }
        Ok(SharedSecret(shared))
    }
}

impl ZeroizeOnDrop for TunnelKey {}

impl fmt::Debug for TunnelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelKey")
            .field("public_key", &HexKey(&self.public_key()))
            .finish_non_exhaustive()
    }
}

/// An X25519 shared secret that passed the contributory check. Zeroized on drop.
pub struct SharedSecret(x25519_dalek::SharedSecret);

impl SharedSecret {
    /// The raw secret, the HKDF input keying material.
    pub fn as_bytes(&self) -> &[u8; X25519_KEY_LEN] {
        self.0.as_bytes()
    }
}

impl ZeroizeOnDrop for SharedSecret {}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

/// Derives the AES-256-GCM key both peers share, in both directions (spec §4.2).
///
/// X25519 of `own` and `peer_public`, rejected when non-contributory, then RFC 5869
/// HKDF-SHA256 with an empty salt and info [`HKDF_INFO`], 32 bytes.
pub fn derive_session_key(
    own: &TunnelKey,
    peer_public: &[u8; X25519_KEY_LEN],
) -> Result<SessionKey, CryptoError> {
    let shared = own.diffie_hellman(peer_public)?;
    SessionKey::from_shared_secret(&shared)
}

/// The symmetric key of a session: AES-256-GCM, one key for both directions (spec §4.2).
///
/// Holds the expanded cipher (its key schedule is zeroized on drop) and the key bytes for
/// constant-time comparison. `==` is constant time. Deliberately not `Clone`.
pub struct SessionKey {
    bytes: Zeroizing<[u8; SESSION_KEY_LEN]>,
    cipher: Aes256Gcm,
}

impl SessionKey {
    /// The session key derived from an X25519 shared secret with HKDF-SHA256 (spec §4.2).
    pub fn from_shared_secret(shared: &SharedSecret) -> Result<Self, CryptoError> {
        let mut okm = Zeroizing::new([0u8; SESSION_KEY_LEN]);
        Hkdf::<Sha256>::new(None, shared.as_bytes())
            .expand(HKDF_INFO, okm.as_mut())
            .map_err(|_| CryptoError::KeyDerivation)?;
        Ok(Self::from_bytes(&okm))
    }

    /// A session key from raw AES-256 key bytes (vectors, tests).
    pub fn from_bytes(bytes: &[u8; SESSION_KEY_LEN]) -> Self {
        let cipher = Aes256Gcm::new(&(*bytes).into());
        Self {
            bytes: Zeroizing::new(*bytes),
            cipher,
        }
    }

    /// Encrypts `buffer` in place under `nonce` and `aad`; returns the tag.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &Nonce,
        aad: &[u8],
        buffer: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        self.cipher
            .encrypt_in_place_detached(&nonce.to_bytes().into(), aad, buffer)
            .map(Into::into)
            .map_err(|_| CryptoError::SealFailed)
    }

    /// Authenticates and decrypts `buffer` in place; on failure `buffer` is left unchanged.
    pub(crate) fn open_in_place(
        &self,
        nonce: &Nonce,
        aad: &[u8],
        buffer: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        self.cipher
            .decrypt_in_place_detached(&nonce.to_bytes().into(), aad, buffer, &(*tag).into())
            .map_err(|_| CryptoError::OpenFailed)
    }
}

impl ConstantTimeEq for SessionKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.bytes.as_slice().ct_eq(other.bytes.as_slice())
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SessionKey {}

impl ZeroizeOnDrop for SessionKey {}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// A 12-byte GCM nonce: the sender's prefix and its counter (spec §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce {
    /// The sender's per-session random prefix.
    pub prefix: [u8; NONCE_PREFIX_LEN],
    /// The sender's counter; the first frame of a session carries 1.
    pub counter: u64,
}

impl Nonce {
    /// The wire form: prefix ‖ counter big-endian.
    pub fn to_bytes(&self) -> [u8; NONCE_LEN] {
        let mut out = [0u8; NONCE_LEN];
        let (prefix, counter) = out.split_at_mut(NONCE_PREFIX_LEN);
        prefix.copy_from_slice(&self.prefix);
        counter.copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Reads the wire form.
    pub fn from_bytes(bytes: &[u8; NONCE_LEN]) -> Self {
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        let mut counter = [0u8; 8];
        let (p, c) = bytes.split_at(NONCE_PREFIX_LEN);
        prefix.copy_from_slice(p);
        counter.copy_from_slice(c);
        Self {
            prefix,
            counter: u64::from_be_bytes(counter),
        }
    }
}

/// The sending half of a session: nonce prefix and counter (spec §4.3).
///
/// A new `SendState` belongs to every new session object (first install, peer key change,
/// re-derive), even when the AES key is unchanged: the fresh prefix marks a new send epoch
/// for V-NEW receivers (spec §5.4).
///
/// Deliberately not `Clone`: two copies would hand out the same nonces under one key.
#[derive(Debug, PartialEq, Eq)]
pub struct SendState {
    prefix: [u8; NONCE_PREFIX_LEN],
    last_counter: u64,
}

impl SendState {
    /// A fresh send state with a random prefix; its first frame carries counter 1.
    pub fn new(rng: &mut impl CryptoRngCore) -> Self {
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        rng.fill_bytes(&mut prefix);
        Self::with_fixed_prefix_for_replay(prefix)
    }

    /// A send state with a fresh random prefix that carries on from `last_counter` (the next
    /// frame uses `last_counter + 1`).
    ///
    /// For a session rebuilt toward a peer whose X25519 key is unchanged: the AES key is the
    /// same, and V-FEB/V-FORK/V-MID receivers keep one replay window per key, so the counter
    /// must not restart (spec §5.4); the fresh prefix tells V-NEW receivers it is a new epoch.
    pub fn new_continuing(rng: &mut impl CryptoRngCore, last_counter: u64) -> Self {
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        rng.fill_bytes(&mut prefix);
        Self::with_fixed_prefix_and_counter_for_replay(prefix, last_counter)
    }

    /// A send state with a caller-chosen prefix whose first frame carries counter 1: for
    /// tests, test vectors and cross-implementation checks that need byte-exact frames. A
    /// live session must use [`SendState::new`].
    ///
    /// # Nonce reuse
    ///
    /// Every call with the same prefix hands out the same nonce sequence. Sealing with two
    /// such states under one session key reuses AES-GCM nonces, which leaks the XOR of the
    /// plaintexts and lets anyone who sees both frames forge tags under that key. Use each
    /// fixed prefix at most once per key, and never with a key that protects real traffic.
    ///
    /// ```
    /// use pilot_core::crypto::SendState;
    ///
    /// let mut first = SendState::with_fixed_prefix_for_replay([1, 2, 3, 4]);
    /// let mut second = SendState::with_fixed_prefix_for_replay([1, 2, 3, 4]);
    /// // The same nonce twice: never seal with both under one key.
    /// assert_eq!(first.next_nonce(), second.next_nonce());
    /// ```
    pub fn with_fixed_prefix_for_replay(prefix: [u8; NONCE_PREFIX_LEN]) -> Self {
        Self::with_fixed_prefix_and_counter_for_replay(prefix, 0)
    }

    /// A send state with a caller-chosen prefix whose next frame carries `last_counter + 1`:
    /// for tests, test vectors and cross-implementation checks that need byte-exact frames,
    /// including counters near the end of the range. A live session must use
    /// [`SendState::new`].
    ///
    /// # Nonce reuse
    ///
    /// A (key, prefix, counter) triple may seal at most one frame. Two states built here with
    /// the same prefix and overlapping counters, or one built to resume a live state, reuse
    /// AES-GCM nonces under the key: that leaks the XOR of the plaintexts and lets anyone who
    /// sees both frames forge tags under that key.
    pub fn with_fixed_prefix_and_counter_for_replay(
        prefix: [u8; NONCE_PREFIX_LEN],
        last_counter: u64,
    ) -> Self {
        Self {
            prefix,
            last_counter,
        }
    }

    /// This session's nonce prefix.
    pub fn prefix(&self) -> [u8; NONCE_PREFIX_LEN] {
        self.prefix
    }

    /// The counter of the last nonce handed out; 0 before the first frame.
    pub fn last_counter(&self) -> u64 {
        self.last_counter
    }

    /// The nonce for the next frame. Pre-increments, so counter 0 is never used, and fails
    /// instead of wrapping at `u64::MAX` (spec §4.3).
    pub fn next_nonce(&mut self) -> Result<Nonce, CryptoError> {
        let counter = self
            .last_counter
            .checked_add(1)
            .ok_or(CryptoError::NonceExhausted)?;
        self.last_counter = counter;
        Ok(Nonce {
            prefix: self.prefix,
            counter,
        })
    }
}

/// Prints a public key as hex in `Debug` output.
struct HexKey<'a>(&'a [u8; 32]);

impl fmt::Debug for HexKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use alloc::format;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    // spec §4.6 worked example (RFC 7748 §6.1 keys).
    const ALICE_PRIVATE: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const BOB_PRIVATE: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
    const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    const SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    const AES_KEY: &str = "3e765a2f49fe2a9185dd5d57c08a3525060d2d2c2b2a356fadef25f614d38662";
    const AES_KEY_FEB: &str = "7fba3471bc8efe5a218c59651ad860926646b44c842bb2747ad11d976d60c50e";

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(7)
    }

    #[test]
    fn tunnel_keys_agree_on_the_worked_example_secret_and_key() {
        let alice = TunnelKey::from_bytes(&h32(ALICE_PRIVATE));
        let bob = TunnelKey::from_bytes(&h32(BOB_PRIVATE));
        assert_eq!(alice.public_key(), h32(ALICE_PUBLIC));
        assert_eq!(bob.public_key(), h32(BOB_PUBLIC));

        let ss = alice.diffie_hellman(&bob.public_key()).unwrap();
        assert_eq!(ss.as_bytes(), &h32(SHARED));

        let ab = derive_session_key(&alice, &bob.public_key()).unwrap();
        let ba = derive_session_key(&bob, &alice.public_key()).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(ab, SessionKey::from_bytes(&h32(AES_KEY)));
        assert_ne!(ab, SessionKey::from_bytes(&h32(AES_KEY_FEB)));
    }

    #[test]
    fn low_order_peer_key_is_rejected_as_non_contributory() {
        let own = TunnelKey::generate(&mut rng());
        // The identity point and a small-order point of Curve25519 both give an all-zero secret.
        for low_order in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert_eq!(
                derive_session_key(&own, &low_order).unwrap_err(),
                CryptoError::NonContributory
            );
        }
    }

    #[test]
    fn identity_signature_verifies_and_rfc8032_test1_matches() {
        // RFC 8032 §7.1 TEST 1: empty message.
        let seed = h32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let id = Identity::from_seed(&seed);
        assert_eq!(
            id.public_key(),
            h32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let sig = id.sign(b"");
        assert_eq!(
            hex::encode(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert_eq!(verify_signature(&id.public_key(), b"", &sig), Ok(()));
        assert_eq!(
            verify_signature(&id.public_key(), b"x", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn go_keypair_bytes_load_only_when_the_halves_match() {
        let seed = [0x11u8; 32];
        let public = Identity::from_seed(&seed).public_key();
        let mut keypair = [0u8; 64];
        keypair[..32].copy_from_slice(&seed);
        keypair[32..].copy_from_slice(&public);
        let loaded = Identity::from_keypair_bytes(&keypair).unwrap();
        assert_eq!(loaded.public_key(), public);

        keypair[40] ^= 1;
        assert_eq!(
            Identity::from_keypair_bytes(&keypair).unwrap_err(),
            CryptoError::KeypairMismatch
        );
    }

    #[test]
    fn signature_under_another_key_is_rejected() {
        let a = Identity::generate(&mut rng());
        let b = Identity::generate(&mut ChaCha20Rng::seed_from_u64(8));
        let sig = a.sign(b"auth");
        assert_eq!(
            verify_signature(&b.public_key(), b"auth", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn undecodable_public_key_is_reported_as_invalid() {
        // No curve point has y = 2, so these bytes do not decode.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert_eq!(
            verify_signature(&bad, b"m", &[0u8; 64]),
            Err(CryptoError::InvalidPublicKey)
        );
    }

    #[test]
    fn send_counter_starts_at_one_and_never_wraps() {
        let mut send = SendState::with_fixed_prefix_for_replay([1, 2, 3, 4]);
        assert_eq!(send.last_counter(), 0);
        let first = send.next_nonce().unwrap();
        assert_eq!(first.counter, 1);
        assert_eq!(first.to_bytes(), [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1]);

        let mut end = SendState::with_fixed_prefix_and_counter_for_replay([0; 4], u64::MAX - 1);
        assert_eq!(end.next_nonce().unwrap().counter, u64::MAX);
        assert_eq!(end.next_nonce(), Err(CryptoError::NonceExhausted));
        assert_eq!(end.last_counter(), u64::MAX);
    }

    #[test]
    fn fresh_send_states_draw_their_prefix_from_the_rng() {
        let mut rng = rng();
        let a = SendState::new(&mut rng);
        let b = SendState::new(&mut rng);
        assert_ne!(a.prefix(), b.prefix());
        assert_eq!(a.last_counter(), 0);
    }

    #[test]
    fn nonce_bytes_round_trip() {
        let n = Nonce {
            prefix: *b"\xa1\xa2\xa3\xa4",
            counter: (1 << 32) + 5,
        };
        assert_eq!(hex::encode(n.to_bytes()), "a1a2a3a40000000100000005");
        assert_eq!(Nonce::from_bytes(&n.to_bytes()), n);
    }

    #[test]
    fn open_fails_and_leaves_buffer_untouched_on_wrong_aad() {
        let key = SessionKey::from_bytes(&h32(AES_KEY));
        let nonce = Nonce {
            prefix: [9; 4],
            counter: 1,
        };
        let mut buf = *b"packet bytes";
        let tag = key.seal_in_place(&nonce, b"\0\0\0\x01", &mut buf).unwrap();
        let sealed = buf;
        assert_eq!(
            key.open_in_place(&nonce, b"\0\0\0\x02", &mut buf, &tag),
            Err(CryptoError::OpenFailed)
        );
        assert_eq!(buf, sealed);
        key.open_in_place(&nonce, b"\0\0\0\x01", &mut buf, &tag)
            .unwrap();
        assert_eq!(&buf, b"packet bytes");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let key = SessionKey::from_bytes(&h32(AES_KEY));
        assert_eq!(format!("{key:?}"), "SessionKey(..)");
        let tunnel = TunnelKey::from_bytes(&h32(ALICE_PRIVATE));
        let shown = format!("{tunnel:?}");
        assert!(shown.contains(ALICE_PUBLIC));
        assert!(!shown.contains(ALICE_PRIVATE));
        let seed = [0x42u8; 32];
        let shown = format!("{:?}", Identity::from_seed(&seed));
        assert!(!shown.contains(&hex::encode(seed)));
    }

    #[test]
    fn secret_holders_zeroize_on_drop() {
        fn zeroizes_on_drop<T: ZeroizeOnDrop>() {}
        fn zeroizable<T: zeroize::Zeroize>() {}
        // The wrapped types must zeroize themselves for our marker impls to be true; this
        // fails to compile if a dependency feature that provides it is switched off.
        zeroizes_on_drop::<SigningKey>();
        zeroizes_on_drop::<aes::Aes256>();
        zeroizes_on_drop::<Zeroizing<[u8; 32]>>();
        // x25519-dalek derives `Zeroize` with `zeroize(drop)`, which adds the `Drop` impl
        // but not the `ZeroizeOnDrop` marker.
        zeroizable::<StaticSecret>();
        zeroizable::<x25519_dalek::SharedSecret>();
    }
}
