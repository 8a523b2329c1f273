//! The authenticated key exchange and the encrypted session (spec §3.3, §3.5, §4, §5).
//!
//! `buildPila` announces our tunnel key; `handlePila` verifies a peer's PILA against the key
//! the registry holds for it and derives a [`Session`]. A session seals packets into PILS
//! frames and opens PILS frames, judging each authenticated one with pilot-core's
//! `ReceiveState` (replay window, receive epochs, drop gates).

use alloc::vec::Vec;

use pilot_core::crypto::{self, SendState, SessionKey, NONCE_PREFIX_LEN, SESSION_KEY_LEN};
use pilot_core::frame::pila::{Pila, Trailer};
use pilot_core::frame::pils::{self, PilsError};
use pilot_core::replay::{Accept, DropReason, GateVerdict, ReceiveState, RecvVerdict, Reject};
use pilot_core::time::Instant;
use wasm_bindgen::prelude::*;

use crate::error::PilotError;
use crate::frame::trailer_object;
use crate::js::{array, instant, Obj};
use crate::keys::{Identity, TunnelKey};
use crate::rng;

#[wasm_bindgen(typescript_custom_section)]
const TS_SESSION: &str = r#"
/** The cleartext header of a PILS frame: claims, not yet authenticated. */
export interface PilsHeader {
  sender: number;
  prefix: Uint8Array;
  counter: bigint;
}

/** A verified PILA and the session derived from it. */
export interface HandledPila {
  peerNode: number;
  peerX25519Public: Uint8Array;
  peerEd25519Public: Uint8Array;
  trailer: PilaTrailer;
  session: Session;
}

/**
 * What to do with a received PILS frame.
 * - deliver: accepted (reason first | new_max | in_window; olderEpoch when judged in a retained older epoch)
 * - new_epoch: accepted, the peer began a new send epoch (spec §5.4)
 * - replay | outside_window | zero_counter: discarded, session kept
 * - stale_epoch | retired_epoch: discarded, session kept (an old epoch of the peer)
 * - auth_failed: AEAD failed, discarded, counted by the decrypt drop gate
 * - drop_session: discard and delete the session, start a new key exchange
 *   (reason decrypt_failures | outside_window | replay | epochs_exhausted)
 */
export type OpenVerdict =
  | "deliver" | "new_epoch" | "replay" | "outside_window" | "zero_counter"
  | "stale_epoch" | "retired_epoch" | "auth_failed" | "drop_session";

/** The result of `Session.open`. `packet` is present only when `deliver` is true. */
export interface Opened {
  verdict: OpenVerdict;
  deliver: boolean;
  reason?: string;
  olderEpoch?: boolean;
  sender: number;
  /** Nonce prefix and counter, present when the frame authenticated. */
  prefix?: Uint8Array;
  counter?: bigint;
  packet?: Uint8Array;
}

/** A snapshot of a session's receive side at `now`. */
export interface SessionStatus {
  /** Milliseconds the drop gates judge: since the newest receive epoch began (or install). */
  dropGateAge: number;
  decryptFailures: number;
  outsideWindow: number;
  replays: number;
  epochsBegun: number;
  dropped: boolean;
  dropReason?: string;
  /** Sessions hold no timer of their own: always null. */
  nextDeadline: null;
}
"#;

/// Reads a PILS header without decrypting (sender node, nonce prefix and counter), so the
/// caller can pick the session by sender. Nothing in it is authenticated yet.
#[wasm_bindgen(js_name = peekPils, unchecked_return_type = "PilsHeader")]
pub fn peek_pils(frame: &[u8]) -> Result<JsValue, PilotError> {
    let header = pils::peek(frame)?;
    Ok(Obj::new()
        .set("sender", header.sender_node)
        .bytes("prefix", &header.nonce.prefix)
        .set("counter", header.nonce.counter)
        .build())
}

/// Builds and signs our PILA frame announcing `x25519_public` for `node` (spec §3.5).
///
/// `caps` and `flags` form the V-FORK trailer (spec §3.6); omit both to send none, which is
/// what V-NEW peers expect by default.
#[wasm_bindgen(js_name = buildPila)]
pub fn build_pila(
    identity: &Identity,
    node: u32,
    x25519_public: &[u8],
    caps: Option<u64>,
    flags: Option<u64>,
) -> Result<Vec<u8>, PilotError> {
    let trailer = Trailer {
        caps: caps.unwrap_or(0),
        flags: flags.unwrap_or(0),
    };
    let pila = Pila::sign(
        &identity.inner,
        node,
        &array("x25519Public", x25519_public)?,
        trailer,
    );
    let mut out = Vec::new();
    pila.encode(&mut out);
    Ok(out)
}

/// Accepts a peer's PILA and derives the session with it.
///
/// Verifies the frame against `registry_key` (the Ed25519 key the registry holds for the
/// node the frame names), then derives the AES-256-GCM key from our tunnel key and the
/// peer's X25519 key (X25519 + HKDF-SHA256, spec §4.2). The session's send prefix is random
/// unless `send_prefix` (4 bytes) is given for a deterministic replay. `now` is in ms.
#[wasm_bindgen(js_name = handlePila, unchecked_return_type = "HandledPila")]
pub fn handle_pila(
    frame: &[u8],
    registry_key: &[u8],
    tunnel_key: &TunnelKey,
    own_node: u32,
    now: f64,
    send_prefix: Option<Vec<u8>>,
) -> Result<JsValue, PilotError> {
    let pila = Pila::decode(frame)?;
    pila.verify(&array("registryKey", registry_key)?)?;
    let session = Session::derive(
        tunnel_key,
        &pila.x25519_public,
        own_node,
        pila.node,
        now,
        send_prefix,
    )?;
    Ok(Obj::new()
        .set("peerNode", pila.node)
        .bytes("peerX25519Public", &pila.x25519_public)
        .bytes("peerEd25519Public", &pila.ed25519_public)
        .set("trailer", trailer_object(pila.trailer))
        .set("session", session)
        .build())
}

/// One installed session with one peer: seals our packets, opens and judges the peer's.
///
/// Holds the session key (zeroized on free), our send state (nonce prefix and counter) and
/// the receive state. After a `drop_session` verdict every further call throws
/// `SESSION_DROPPED`: delete it and run a new key exchange (spec §5.3, §6.5).
#[wasm_bindgen]
pub struct Session {
    key: SessionKey,
    send: SendState,
    receive: ReceiveState,
    own_node: u32,
    peer_node: u32,
    dropped: Option<DropReason>,
}

#[wasm_bindgen]
impl Session {
    /// Derives a session from our tunnel key and the peer's X25519 key WITHOUT any
    /// authentication: for PILK (spec §3.4). Prefer `handlePila`.
    #[wasm_bindgen(js_name = deriveUnauthenticated)]
    pub fn derive_unauthenticated(
        tunnel_key: &TunnelKey,
        peer_x25519_public: &[u8],
        own_node: u32,
        peer_node: u32,
        now: f64,
        send_prefix: Option<Vec<u8>>,
    ) -> Result<Session, PilotError> {
        let peer = array("peerX25519Public", peer_x25519_public)?;
        Self::derive(tunnel_key, &peer, own_node, peer_node, now, send_prefix)
    }

    /// A session from raw AES-256 key bytes and an explicit send state: for test vectors and
    /// recorded transcripts only. The next frame sealed carries `last_send_counter + 1`;
    /// reusing a (key, prefix, counter) triple breaks AES-GCM.
    #[wasm_bindgen(js_name = fromKey)]
    pub fn from_key(
        aes_key: &[u8],
        own_node: u32,
        peer_node: u32,
        now: f64,
        send_prefix: &[u8],
        last_send_counter: Option<u64>,
    ) -> Result<Session, PilotError> {
        let key = SessionKey::from_bytes(&array::<SESSION_KEY_LEN>("aesKey", aes_key)?);
        let send = SendState::with_fixed_prefix_and_counter_for_replay(
            array("sendPrefix", send_prefix)?,
            last_send_counter.unwrap_or(0),
        );
        Ok(Self::install(key, send, own_node, peer_node, instant(now)?))
    }

    /// Encrypts a marshaled Pilot packet into a PILS frame from our node (spec §3.3).
    pub fn seal(&mut self, packet: &[u8]) -> Result<Vec<u8>, PilotError> {
        self.check_live()?;
        let mut out = Vec::new();
        pils::seal(&self.key, &mut self.send, self.own_node, packet, &mut out)?;
        Ok(out)
    }

    /// Authenticates, decrypts and judges a PILS frame received at `now` (ms).
    ///
    /// Throws for frames dropped before any crypto (`PILS_TOO_SHORT`, `PILS_BAD_MAGIC`,
    /// `SESSION_WRONG_SENDER` when the header names another node than this session's peer).
    /// Everything else is a verdict: see `OpenVerdict`.
    #[wasm_bindgen(unchecked_return_type = "Opened")]
    pub fn open(&mut self, frame: Vec<u8>, now: f64) -> Result<JsValue, PilotError> {
        self.check_live()?;
        let now = instant(now)?;
        let mut frame = frame;
        let header = pils::peek(&frame)?;
        if header.sender_node != self.peer_node {
            return Err(PilotError::new(
                "SESSION_WRONG_SENDER",
                alloc::format!(
                    "PILS frame from node {} given to the session with node {}",
                    header.sender_node,
                    self.peer_node
                ),
            ));
        }

        let opened = match pils::open(&self.key, &mut frame) {
            Ok(opened) => opened,
            Err(PilsError::Authentication) => return Ok(self.on_auth_failure(now)),
            Err(other) => return Err(other.into()),
        };
        let verdict = self.receive.on_authenticated(opened.nonce, now);
        let mut result = verdict_object(verdict)
            .set("sender", opened.sender_node)
            .bytes("prefix", &opened.nonce.prefix())
            .set("counter", opened.nonce.counter());
        if verdict.is_deliver() {
            result = result.bytes("packet", opened.packet);
        }
        if let RecvVerdict::DropSession(reason) = verdict {
            self.dropped = Some(reason);
        }
        Ok(result.build())
    }

    /// The receive side's state at `now` (ms). Sessions hold no timer: the drop gates are
    /// judged when frames arrive, so this only reports (for logs and dashboards).
    #[wasm_bindgen(unchecked_return_type = "SessionStatus")]
    pub fn tick(&self, now: f64) -> Result<JsValue, PilotError> {
        let age = self.receive.drop_gate_age(instant(now)?);
        let faults = self.receive.faults();
        let mut status = Obj::new()
            .set("dropGateAge", age.as_secs_f64() * 1_000.0)
            .set("decryptFailures", faults.decrypt_fail_count())
            .set("outsideWindow", faults.outside_window_count())
            .set("replays", faults.replay_count())
            .set("epochsBegun", self.receive.epochs().begun_count() as u32)
            .set("dropped", self.dropped.is_some())
            .set("nextDeadline", JsValue::NULL);
        if let Some(reason) = self.dropped {
            status = status.set("dropReason", drop_reason(reason));
        }
        Ok(status.build())
    }

    /// Our node ID, the sender of every frame this session seals.
    #[wasm_bindgen(getter, js_name = ownNode)]
    pub fn own_node(&self) -> u32 {
        self.own_node
    }

    /// The peer's node ID; frames from any other sender are refused.
    #[wasm_bindgen(getter, js_name = peerNode)]
    pub fn peer_node(&self) -> u32 {
        self.peer_node
    }

    /// Our 4-byte send nonce prefix.
    #[wasm_bindgen(getter, js_name = sendPrefix)]
    pub fn send_prefix(&self) -> Vec<u8> {
        self.send.prefix().to_vec()
    }

    /// The counter of the last frame we sealed (0 before the first).
    #[wasm_bindgen(getter, js_name = lastSendCounter)]
    pub fn last_send_counter(&self) -> u64 {
        self.send.last_counter()
    }

    /// The highest counter accepted in the peer's newest epoch; undefined before any.
    #[wasm_bindgen(getter, js_name = receiveMax)]
    pub fn receive_max(&self) -> Option<u64> {
        self.receive
            .epochs()
            .newest_window()
            .map(|window| window.max())
    }

    /// Whether a drop gate fired; the session is then unusable.
    #[wasm_bindgen(getter)]
    pub fn dropped(&self) -> bool {
        self.dropped.is_some()
    }
}

impl Session {
    /// X25519 + HKDF with the peer's key, then a fresh (or given) send state.
    fn derive(
        tunnel_key: &TunnelKey,
        peer_x25519_public: &[u8; crypto::X25519_KEY_LEN],
        own_node: u32,
        peer_node: u32,
        now: f64,
        send_prefix: Option<Vec<u8>>,
    ) -> Result<Session, PilotError> {
        let now = instant(now)?;
        let key = crypto::derive_session_key(&tunnel_key.inner, peer_x25519_public)?;
        let prefix: [u8; NONCE_PREFIX_LEN] = match send_prefix {
            Some(prefix) => array("sendPrefix", &prefix)?,
            None => rng::random_array()?,
        };
        Ok(Self::install(
            key,
            SendState::with_fixed_prefix_for_replay(prefix),
            own_node,
            peer_node,
            now,
        ))
    }

    fn install(
        key: SessionKey,
        send: SendState,
        own_node: u32,
        peer_node: u32,
        now: Instant,
    ) -> Self {
        Self {
            key,
            send,
            receive: ReceiveState::new(now),
            own_node,
            peer_node,
            dropped: None,
        }
    }

    fn check_live(&self) -> Result<(), PilotError> {
        match self.dropped {
            None => Ok(()),
            Some(reason) => Err(PilotError::new(
                "SESSION_DROPPED",
                alloc::format!("session was dropped ({reason})"),
            )),
        }
    }

    /// spec §5.2: a failed open moves no window; only the decrypt drop gate counts it.
    fn on_auth_failure(&mut self, now: Instant) -> JsValue {
        let result = Obj::new()
            .set("deliver", false)
            .set("sender", self.peer_node);
        match self.receive.on_auth_failure(now) {
            GateVerdict::Keep => result.set("verdict", "auth_failed").build(),
            GateVerdict::Drop(reason) => {
                self.dropped = Some(reason);
                result
                    .set("verdict", "drop_session")
                    .set("reason", drop_reason(reason))
                    .build()
            }
        }
    }
}

/// The JS words for a receive verdict: `verdict`, `deliver` and, where one exists, `reason`.
fn verdict_object(verdict: RecvVerdict) -> Obj {
    let (name, reason, older) = match verdict {
        RecvVerdict::Accept(accept) => ("deliver", Some(accept_reason(accept)), false),
        RecvVerdict::NewEpoch => ("new_epoch", None, false),
        RecvVerdict::AcceptOlderEpoch(accept) => ("deliver", Some(accept_reason(accept)), true),
        RecvVerdict::Reject(reject) => (reject_name(reject), None, false),
        RecvVerdict::RejectStaleEpoch(reject) => ("stale_epoch", Some(reject_name(reject)), true),
        RecvVerdict::RejectRetiredEpoch => ("retired_epoch", None, true),
        RecvVerdict::DropSession(reason) => ("drop_session", Some(drop_reason(reason)), false),
    };
    let mut out = Obj::new()
        .set("verdict", name)
        .set("deliver", verdict.is_deliver());
    if let Some(reason) = reason {
        out = out.set("reason", reason);
    }
    if older {
        out = out.set("olderEpoch", true);
    }
    out
}

fn accept_reason(accept: Accept) -> &'static str {
    match accept {
        Accept::First => "first",
        Accept::NewMax => "new_max",
        Accept::InWindow => "in_window",
    }
}

fn reject_name(reject: Reject) -> &'static str {
    match reject {
        Reject::OutsideWindow => "outside_window",
        Reject::Replay => "replay",
        Reject::ZeroCounter => "zero_counter",
    }
}

fn drop_reason(reason: DropReason) -> &'static str {
    match reason {
        DropReason::DecryptFailures => "decrypt_failures",
        DropReason::OutsideWindow => "outside_window",
        DropReason::Replay => "replay",
        DropReason::EpochsExhausted => "epochs_exhausted",
    }
}
