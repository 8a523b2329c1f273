//! `pilot-tunnel-frames.json`: keys, key derivation, PILK, PILA and PILS (spec §3–§4).
//!
//! Every field a case carries is checked against pilot-core: keys are recomputed from the
//! seeds and private keys, frames are rebuilt byte for byte (PILS with the case's nonce
//! prefix and counter via [`SendState::with_fixed_prefix_and_counter_for_replay`]), then
//! decoded, verified or opened again. `tcp_frame` cases go to [`super::tcp_frame::check`].
//!
//! Version variants: our target is the V-FORK/V-NEW scheme (`variant: "may"`), HKDF-SHA256
//! session keys and the sender node as AAD. V-FEB crypto (`variant: "feb"`: SHA-256 key, no
//! AAD) is out of scope (spec §4.5). In a `feb` case we still check everything that is the
//! same in our target (PILA bytes and signatures, PILS header, nonce and counter layout), and
//! for the Feb-only crypto we assert that pilot-core does NOT accept it: our derived key
//! differs from the Feb key, and a Feb PILS opens neither under our derived key nor under
//! the Feb key with our AAD.
//!
//! The `plaintext_packet` of a PILS case is compared with the decrypted bytes at the fixed
//! header offsets of spec §2.1, since the packet codec is another layer's concern.

use hkdf::Hkdf;
use pilot_core::crypto::{
    derive_session_key, Identity, SendState, SessionKey, TunnelKey, HKDF_INFO, NONCE_PREFIX_LEN,
    TAG_LEN,
};
use pilot_core::frame::pila::{Pila, PilaError, Trailer, PILA_LEN};
use pilot_core::frame::pilk::Pilk;
use pilot_core::frame::pils::{self, PilsError, PILS_HEADER_LEN};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{case_name, expect_bytes, hex_field, typed, CaseOutcome, VectorFile};

/// Runs every case of the file.
pub fn run(file: &VectorFile) -> Vec<CaseOutcome> {
    let peers: Vec<Peer> = file
        .cases
        .iter()
        .filter(|c| c.get("kind").and_then(|k| k.as_str()) == Some("peer_keys"))
        .filter_map(|c| typed::<PeerKeysCase>(c).ok())
        .map(|c| c.peer)
        .collect();
    file.cases
        .iter()
        .map(|case| CaseOutcome::new(case_name(case), check(case, &peers)))
        .collect()
}

fn check(case: &serde_json::Value, peers: &[Peer]) -> Result<(), String> {
    let kind = case
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or("case has no kind")?;
    match kind {
        "peer_keys" => check_peer_keys(&typed(case)?),
        "kdf" => check_kdf(&typed(case)?),
        "pilk" => check_pilk(&typed(case)?),
        "pila" => check_pila(&typed(case)?),
        "pila_invalid" => check_pila_invalid(&typed(case)?),
        "pils" => check_pils(&typed(case)?, peers),
        "pils_invalid" => check_pils_invalid(&typed(case)?),
        "tcp_frame" => super::tcp_frame::check(case),
        other => Err(format!("unknown kind {other:?}")),
    }
}

#[derive(Debug, Deserialize)]
struct PeerKeysCase {
    peer: Peer,
}

#[derive(Debug, Clone, Deserialize)]
struct Peer {
    name: String,
    address: String,
    node_id: u32,
    node_id_hex: String,
    ed25519_seed: String,
    ed25519_public: String,
    x25519_private: String,
    x25519_public: String,
    nonce_prefix: String,
}

#[derive(Debug, Deserialize)]
struct KdfCase {
    a_x25519_private: String,
    a_x25519_public: String,
    b_x25519_private: String,
    b_x25519_public: String,
    shared_secret: String,
    may: KdfMay,
    feb: KdfFeb,
}

#[derive(Debug, Deserialize)]
struct KdfMay {
    aes256_key: String,
    hkdf_info_ascii: String,
    hkdf_prk: String,
    hkdf_salt: String,
}

#[derive(Debug, Deserialize)]
struct KdfFeb {
    aes256_key: String,
    sha256_input_prefix_ascii: String,
}

#[derive(Debug, Deserialize)]
struct PilkCase {
    frame_hex: String,
    node_id: u32,
    x25519_public: String,
}

#[derive(Debug, Deserialize)]
struct PilaCase {
    variant: String,
    expect: String,
    node_id: u32,
    x25519_public: String,
    ed25519_seed: String,
    ed25519_public: String,
    challenge_hex: String,
    signature_hex: String,
    caps: u64,
    flags: u64,
    trailer_hex: String,
    frame_hex: String,
    frame_len: usize,
}

#[derive(Debug, Deserialize)]
struct PilaInvalidCase {
    expect: String,
    frame_hex: String,
    registry_ed25519_public: String,
}

#[derive(Debug, Deserialize)]
struct PilsCase {
    variant: String,
    expect: String,
    sender: String,
    sender_node_id: u32,
    aes256_key: String,
    aad_hex: String,
    nonce_prefix: String,
    nonce_hex: String,
    counter: String,
    plaintext_hex: String,
    plaintext_packet: PlainPacket,
    ciphertext_and_tag_hex: String,
    tag_hex: String,
    frame_hex: String,
}

#[derive(Debug, Deserialize)]
struct PlainPacket {
    version: u8,
    flags: u8,
    flag_names: Vec<String>,
    protocol: u8,
    src: String,
    dst: String,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    window: u16,
    payload_hex: String,
}

#[derive(Debug, Deserialize)]
struct PilsInvalidCase {
    expect: String,
    frame_hex: String,
    receiver_aes256_key: String,
}

fn check_peer_keys(case: &PeerKeysCase) -> Result<(), String> {
    let peer = &case.peer;
    let identity = Identity::from_seed(&array("ed25519_seed", &peer.ed25519_seed)?);
    expect_bytes(
        "ed25519 public",
        &identity.public_key(),
        &hex_field("ed25519_public", &peer.ed25519_public)?,
    )?;
    let tunnel = TunnelKey::from_bytes(&array("x25519_private", &peer.x25519_private)?);
    expect_bytes(
        "x25519 public",
        &tunnel.public_key(),
        &hex_field("x25519_public", &peer.x25519_public)?,
    )?;
    expect_bytes(
        "node id",
        &peer.node_id.to_be_bytes(),
        &hex_field("node_id_hex", &peer.node_id_hex)?,
    )?;
    let node_text = format!(".{:04X}.{:04X}", peer.node_id >> 16, peer.node_id & 0xffff);
    ensure(
        peer.address.ends_with(&node_text),
        format!("address {} does not carry node {node_text}", peer.address),
    )?;
    let prefix: [u8; NONCE_PREFIX_LEN] = array("nonce_prefix", &peer.nonce_prefix)?;
    let first = SendState::with_fixed_prefix_for_replay(prefix)
        .next_nonce()
        .map_err(|e| e.to_string())?;
    ensure(
        first.prefix == prefix && first.counter == 1,
        format!("peer {}: first nonce {first:?}", peer.name),
    )
}

fn check_kdf(case: &KdfCase) -> Result<(), String> {
    let a = TunnelKey::from_bytes(&array("a_x25519_private", &case.a_x25519_private)?);
    let b = TunnelKey::from_bytes(&array("b_x25519_private", &case.b_x25519_private)?);
    let a_public: [u8; 32] = array("a_x25519_public", &case.a_x25519_public)?;
    let b_public: [u8; 32] = array("b_x25519_public", &case.b_x25519_public)?;
    expect_bytes("a public", &a.public_key(), &a_public)?;
    expect_bytes("b public", &b.public_key(), &b_public)?;

    let shared = hex_field("shared_secret", &case.shared_secret)?;
    let ab = a.diffie_hellman(&b_public).map_err(|e| e.to_string())?;
    let ba = b.diffie_hellman(&a_public).map_err(|e| e.to_string())?;
    expect_bytes("shared secret a->b", ab.as_bytes(), &shared)?;
    expect_bytes("shared secret b->a", ba.as_bytes(), &shared)?;

    // The HKDF steps, to pin the empty salt and the label pilot-core uses.
    ensure(
        case.may.hkdf_salt.is_empty(),
        "vector uses a non-empty salt".into(),
    )?;
    expect_bytes("hkdf info", HKDF_INFO, case.may.hkdf_info_ascii.as_bytes())?;
    let (prk, _) = Hkdf::<Sha256>::extract(None, ab.as_bytes());
    expect_bytes(
        "hkdf prk",
        &prk,
        &hex_field("hkdf_prk", &case.may.hkdf_prk)?,
    )?;
    let may_key = SessionKey::from_bytes(&array("may.aes256_key", &case.may.aes256_key)?);
    let derived_ab = derive_session_key(&a, &b_public).map_err(|e| e.to_string())?;
    let derived_ba = derive_session_key(&b, &a_public).map_err(|e| e.to_string())?;
    ensure(
        derived_ab == may_key,
        "a->b session key differs from the vector".into(),
    )?;
    ensure(
        derived_ba == may_key,
        "b->a session key differs from the vector".into(),
    )?;

    // Feb: the vector's key really is SHA-256(label ‖ ss), and ours is not that key.
    let feb_bytes: [u8; 32] = array("feb.aes256_key", &case.feb.aes256_key)?;
    let feb_recomputed = Sha256::new()
        .chain_update(case.feb.sha256_input_prefix_ascii.as_bytes())
        .chain_update(ab.as_bytes())
        .finalize();
    expect_bytes("feb key (vector sanity)", &feb_recomputed, &feb_bytes)?;
    ensure(
        case.feb.sha256_input_prefix_ascii.as_bytes() != HKDF_INFO,
        "feb label equals our HKDF info".into(),
    )?;
    ensure(
        derived_ab != SessionKey::from_bytes(&feb_bytes),
        "our derived key equals the out-of-scope feb key".into(),
    )
}

fn check_pilk(case: &PilkCase) -> Result<(), String> {
    let frame = hex_field("frame_hex", &case.frame_hex)?;
    let pilk = Pilk::decode(&frame).map_err(|e| e.to_string())?;
    ensure(
        pilk.node == case.node_id,
        format!("node {} want {}", pilk.node, case.node_id),
    )?;
    expect_bytes(
        "x25519 public",
        &pilk.x25519_public,
        &hex_field("x25519_public", &case.x25519_public)?,
    )?;
    let rebuilt = Pilk {
        node: case.node_id,
        x25519_public: array("x25519_public", &case.x25519_public)?,
    };
    expect_bytes("encoded frame", &rebuilt.to_bytes(), &frame)
}

fn check_pila(case: &PilaCase) -> Result<(), String> {
    ensure(
        case.expect == "accept",
        format!("unexpected verdict {:?}", case.expect),
    )?;
    // A Feb PILA is a Go V-FEB frame without trailer: byte-identical to what we send.
    ensure(
        case.variant != "feb" || (case.caps == 0 && case.flags == 0),
        "feb PILA with a trailer".into(),
    )?;
    let identity = Identity::from_seed(&array("ed25519_seed", &case.ed25519_seed)?);
    let registry_key: [u8; 32] = array("ed25519_public", &case.ed25519_public)?;
    expect_bytes("ed25519 public", &identity.public_key(), &registry_key)?;

    let trailer = Trailer {
        caps: case.caps,
        flags: case.flags,
    };
    let built = Pila::sign(
        &identity,
        case.node_id,
        &array("x25519_public", &case.x25519_public)?,
        trailer,
    );
    expect_bytes(
        "signed message",
        &built.signed_message(),
        &hex_field("challenge_hex", &case.challenge_hex)?,
    )?;
    expect_bytes(
        "signature",
        &built.signature,
        &hex_field("signature_hex", &case.signature_hex)?,
    )?;
    let mut encoded = Vec::new();
    built.encode(&mut encoded);
    let frame = hex_field("frame_hex", &case.frame_hex)?;
    expect_bytes("encoded frame", &encoded, &frame)?;
    ensure(
        frame.len() == case.frame_len,
        format!("frame_len {} but frame has {}", case.frame_len, frame.len()),
    )?;
    expect_bytes(
        "trailer",
        frame.get(PILA_LEN..).unwrap_or_default(),
        &hex_field("trailer_hex", &case.trailer_hex)?,
    )?;

    let decoded = Pila::decode(&frame).map_err(|e| e.to_string())?;
    ensure(
        decoded == built,
        format!("decoded {decoded:?} want {built:?}"),
    )?;
    decoded
        .verify(&registry_key)
        .map_err(|e| format!("verify: {e}"))
}

fn check_pila_invalid(case: &PilaInvalidCase) -> Result<(), String> {
    let frame = hex_field("frame_hex", &case.frame_hex)?;
    let registry_key: [u8; 32] = array("registry_ed25519_public", &case.registry_ed25519_public)?;
    let decoded = Pila::decode(&frame);
    match case.expect.as_str() {
        "ignore" => ensure(
            decoded == Err(PilaError::TooShort),
            format!("want TooShort, got {decoded:?}"),
        ),
        "reject" => {
            let pila = decoded.map_err(|e| format!("decode: {e}"))?;
            // The verdict follows from the bytes: a foreign identity key is caught before
            // the signature is even checked.
            let want = if pila.ed25519_public == registry_key {
                PilaError::BadSignature
            } else {
                PilaError::IdentityMismatch
            };
            let got = pila.verify(&registry_key);
            ensure(got == Err(want), format!("want {want:?}, got {got:?}"))
        }
        "accept" => {
            let pila = decoded.map_err(|e| format!("decode: {e}"))?;
            // Only used for the unparseable trailer: V-FORK falls back to caps 0, flags 0.
            ensure(
                pila.trailer == Trailer::NONE,
                format!("trailer {:?}, want none", pila.trailer),
            )?;
            pila.verify(&registry_key)
                .map_err(|e| format!("verify: {e}"))
        }
        other => Err(format!("unknown verdict {other:?}")),
    }
}

fn check_pils(case: &PilsCase, peers: &[Peer]) -> Result<(), String> {
    ensure(
        case.expect == "accept",
        format!("unexpected verdict {:?}", case.expect),
    )?;
    let frame = hex_field("frame_hex", &case.frame_hex)?;
    let prefix: [u8; NONCE_PREFIX_LEN] = array("nonce_prefix", &case.nonce_prefix)?;
    let counter: u64 = case
        .counter
        .parse()
        .map_err(|e| format!("counter {:?}: {e}", case.counter))?;
    let plaintext = hex_field("plaintext_hex", &case.plaintext_hex)?;

    // The header layout is the same in every version.
    let header = pils::peek(&frame).map_err(|e| e.to_string())?;
    ensure(
        header.sender_node == case.sender_node_id,
        format!(
            "sender node {} want {}",
            header.sender_node, case.sender_node_id
        ),
    )?;
    ensure(
        header.nonce.prefix == prefix && header.nonce.counter == counter,
        format!("nonce {:?} want {prefix:02x?}/{counter}", header.nonce),
    )?;
    expect_bytes(
        "nonce",
        &header.nonce.to_bytes(),
        &hex_field("nonce_hex", &case.nonce_hex)?,
    )?;
    let body = frame.get(PILS_HEADER_LEN..).unwrap_or_default();
    expect_bytes(
        "ciphertext and tag",
        body,
        &hex_field("ciphertext_and_tag_hex", &case.ciphertext_and_tag_hex)?,
    )?;
    expect_bytes(
        "tag",
        body.get(body.len().saturating_sub(TAG_LEN)..)
            .unwrap_or_default(),
        &hex_field("tag_hex", &case.tag_hex)?,
    )?;
    ensure(
        body.len() == plaintext.len() + TAG_LEN,
        "ciphertext length differs from the plaintext's".into(),
    )?;
    check_plain_packet(&case.plaintext_packet, &plaintext, case.sender_node_id)?;

    let sender = peers
        .iter()
        .find(|p| p.name == case.sender)
        .ok_or_else(|| format!("no peer_keys case for sender {}", case.sender))?;
    ensure(
        sender.node_id == case.sender_node_id,
        "sender node differs from its peer_keys case".into(),
    )?;
    let receiver = peers
        .iter()
        .find(|p| p.name != case.sender)
        .ok_or("no peer_keys case for the receiver")?;
    let ours = derive_session_key(
        &TunnelKey::from_bytes(&array("x25519_private", &sender.x25519_private)?),
        &array("x25519_public", &receiver.x25519_public)?,
    )
    .map_err(|e| e.to_string())?;
    let case_key: [u8; 32] = array("aes256_key", &case.aes256_key)?;
    let aad = hex_field("aad_hex", &case.aad_hex)?;

    match case.variant.as_str() {
        "may" => {
            expect_bytes("aad", &aad, &case.sender_node_id.to_be_bytes())?;
            ensure(
                ours == SessionKey::from_bytes(&case_key),
                "derived key differs from the case's aes256_key".into(),
            )?;
            let last = counter.checked_sub(1).ok_or("counter 0 is never sent")?;
            let mut send = SendState::with_fixed_prefix_and_counter_for_replay(prefix, last);
            let mut sealed = Vec::new();
            pils::seal(
                &ours,
                &mut send,
                case.sender_node_id,
                &plaintext,
                &mut sealed,
            )
            .map_err(|e| format!("seal: {e}"))?;
            expect_bytes("sealed frame", &sealed, &frame)?;

            let mut buffer = frame.clone();
            let opened = pils::open(&ours, &mut buffer).map_err(|e| format!("open: {e}"))?;
            expect_bytes("opened packet", opened.packet, &plaintext)?;
            ensure(
                opened.sender_node == case.sender_node_id
                    && opened.nonce.prefix() == prefix
                    && opened.nonce.counter() == counter,
                format!("opened header {opened:?}"),
            )
        }
        "feb" => {
            ensure(aad.is_empty(), "feb case with an AAD".into())?;
            ensure(
                ours != SessionKey::from_bytes(&case_key),
                "our key equals the feb key".into(),
            )?;
            for (what, key) in [
                ("our derived key", ours),
                ("the feb key", SessionKey::from_bytes(&case_key)),
            ] {
                let mut buffer = frame.clone();
                let got = pils::open(&key, &mut buffer).map(|o| o.nonce);
                ensure(
                    got == Err(PilsError::Authentication),
                    format!("feb frame under {what}: want Authentication, got {got:?}"),
                )?;
            }
            Ok(())
        }
        other => Err(format!("unknown variant {other:?}")),
    }
}

fn check_pils_invalid(case: &PilsInvalidCase) -> Result<(), String> {
    let mut frame = hex_field("frame_hex", &case.frame_hex)?;
    let key = SessionKey::from_bytes(&array("receiver_aes256_key", &case.receiver_aes256_key)?);
    let want = match case.expect.as_str() {
        "ignore" => PilsError::TooShort,
        "reject_auth" => PilsError::Authentication,
        other => return Err(format!("unknown verdict {other:?}")),
    };
    let before = frame.clone();
    let got = pils::open(&key, &mut frame).map(|o| o.nonce);
    ensure(got == Err(want), format!("want {want:?}, got {got:?}"))?;
    ensure(frame == before, "a rejected frame was modified".into())
}

/// Compares the decoded-packet description with the plaintext at the offsets of spec §2.1.
fn check_plain_packet(p: &PlainPacket, bytes: &[u8], sender_node: u32) -> Result<(), String> {
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let addr_at = |at: usize| -> Option<String> {
        let net = u16_at(at)?;
        let node = u32_at(at + 2)?;
        Some(format!(
            "{net}:{net:04X}.{:04X}.{:04X}",
            node >> 16,
            node & 0xffff
        ))
    };
    let first = *bytes.first().ok_or("empty plaintext")?;
    let flag_bits = ["SYN", "ACK", "FIN", "RST"]
        .iter()
        .enumerate()
        .filter(|(_, n)| p.flag_names.iter().any(|f| f == *n))
        .fold(0u8, |acc, (i, _)| acc | (1 << i));
    let payload = hex_field("payload_hex", &p.payload_hex)?;
    let checks = [
        ("version", first >> 4 == p.version),
        ("flags", first & 0x0f == p.flags),
        ("flag names", flag_bits == p.flags),
        ("protocol", bytes.get(1) == Some(&p.protocol)),
        (
            "payload length",
            u16_at(2).map(usize::from) == Some(payload.len()),
        ),
        ("src", addr_at(4).as_deref() == Some(p.src.as_str())),
        ("src node is the sender", u32_at(6) == Some(sender_node)),
        ("dst", addr_at(10).as_deref() == Some(p.dst.as_str())),
        ("src port", u16_at(16) == Some(p.src_port)),
        ("dst port", u16_at(18) == Some(p.dst_port)),
        ("seq", u32_at(20) == Some(p.seq)),
        ("ack", u32_at(24) == Some(p.ack)),
        ("window", u16_at(28) == Some(p.window)),
        ("payload", bytes.get(34..) == Some(payload.as_slice())),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((field, _)) => Err(format!(
            "plaintext_packet.{field} differs from the plaintext"
        )),
        None => Ok(()),
    }
}

fn array<const N: usize>(field: &str, value: &str) -> Result<[u8; N], String> {
    hex_field(field, value)?
        .try_into()
        .map_err(|v: Vec<u8>| format!("field {field}: {} bytes, want {N}", v.len()))
}

fn ensure(condition: bool, why: String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(why)
    }
}
