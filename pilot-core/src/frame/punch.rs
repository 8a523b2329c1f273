//! PILP: the NAT punch frame (spec §3.7).
//!
//! It exists only to open NAT state: after a beacon punch command (spec §7.4) each side sends
//! it three times toward the other, and receivers ignore its content. The reference daemons send
//! exactly the 4 magic bytes; the draft specification adds the sender's node ID. We send the
//! short form and accept both.

use super::{strip_magic, FrameError, MAGIC_PILP};

/// Times a punch frame is sent toward the address of a punch command (spec §7.4).
pub const PUNCH_REPEAT: usize = 3;

/// Length of the long form, `"PILP" ‖ sender node ID`.
const PILP_WITH_SENDER_LEN: usize = MAGIC_PILP.len() + 4;

/// The punch frame as we send it: exactly the magic.
pub const PUNCH_FRAME: [u8; 4] = MAGIC_PILP;

/// A received punch frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Punch {
    /// The sender node ID of the long form; `None` for the 4-byte form. Unauthenticated.
    pub sender: Option<u32>,
}

/// Decodes a punch frame: the bare magic, or the magic followed by a sender node ID.
///
/// One to three bytes after the magic cannot be a node ID and are refused as too short;
/// bytes after a node ID are ignored, like trailing bytes of other fixed frames (spec §3.1).
pub fn decode(frame: &[u8]) -> Result<Punch, FrameError> {
    let rest = strip_magic(frame, MAGIC_PILP, MAGIC_PILP.len())?;
    if rest.is_empty() {
        return Ok(Punch { sender: None });
    }
    let (sender, _trailing) = rest.split_first_chunk::<4>().ok_or(FrameError::TooShort {
        min: PILP_WITH_SENDER_LEN,
        len: frame.len(),
    })?;
    Ok(Punch {
        sender: Some(u32::from_be_bytes(*sender)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    #[test]
    fn we_send_only_the_magic() {
        assert_eq!(&PUNCH_FRAME, b"PILP");
    }

    #[test]
    fn both_the_short_and_the_long_form_are_accepted() {
        assert_eq!(decode(b"PILP"), Ok(Punch { sender: None }));
        assert_eq!(
            decode(b"PILP\x00\x01\x02\x03"),
            Ok(Punch {
                sender: Some(0x0001_0203)
            })
        );
    }

    #[test]
    fn a_partial_node_id_is_too_short() {
        assert_eq!(
            decode(b"PILP\x00\x01"),
            Err(FrameError::TooShort { min: 8, len: 6 })
        );
    }

    #[test]
    fn wrong_magic_and_short_input_are_refused() {
        assert_eq!(decode(b"PILT"), Err(FrameError::BadMagic));
        assert_eq!(decode(b"PIL"), Err(FrameError::TooShort { min: 4, len: 3 }));
    }
}
