//! The one error type JavaScript sees: a `PilotError` with a stable `code`.
//!
//! Every pilot-core error enum maps onto codes prefixed by its layer (`ADDR_`, `PACKET_`,
//! `PILA_`, …), one code per variant, so a caller can branch on the verdict without parsing
//! text. The message is pilot-core's `Display` text. Binding-level problems (a key of the
//! wrong length, a time that is not a number) use the `ARG_`, `RNG_` and `SESSION_` codes.
//!
//! In JavaScript the value thrown is a plain `Error` whose `name` is `"PilotError"` and which
//! carries an extra `code` property (see the package README for the full list).

use alloc::string::{String, ToString};
use core::fmt;

use pilot_core::addr::AddrError;
use pilot_core::crypto::CryptoError;
use pilot_core::frame::beacon::BeaconError;
use pilot_core::frame::fragment::FragmentError;
use pilot_core::frame::pila::PilaError;
use pilot_core::frame::pilk::PilkError;
use pilot_core::frame::pils::PilsError;
use pilot_core::frame::tcp::TcpFrameError;
use pilot_core::packet::PacketError;
use pilot_core::services::dataexchange::DataExchangeError;
use pilot_core::services::eventstream::EventStreamError;
use wasm_bindgen::JsValue;

/// The `name` every thrown error carries.
pub const ERROR_NAME: &str = "PilotError";

/// An error on its way to JavaScript: a stable code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PilotError {
    code: &'static str,
    message: String,
}

impl PilotError {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The stable code, e.g. `PILS_AUTHENTICATION`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message shown to people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A byte argument of the wrong length.
    pub(crate) fn length(what: &str, want: usize, got: usize) -> Self {
        Self::new(
            "ARG_LENGTH",
            alloc::format!("{what} must be {want} bytes, got {got}"),
        )
    }

    /// A numeric or structured argument outside its domain.
    pub(crate) fn range(message: impl Into<String>) -> Self {
        Self::new("ARG_RANGE", message)
    }
}

impl fmt::Display for PilotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<PilotError> for JsValue {
    fn from(error: PilotError) -> JsValue {
        let js = js_sys::Error::new(&error.message);
        js.set_name(ERROR_NAME);
        // Reflect::set on a fresh, extensible Error object cannot fail; if it ever did, the
        // caller still gets the name and message.
        let _ = js_sys::Reflect::set(&js, &JsValue::from_str("code"), &error.code.into());
        js.into()
    }
}

/// Maps each variant of a pilot-core error enum to its code; the message is its `Display`.
macro_rules! codes {
    ($error:ty { $($pattern:pat => $code:literal,)+ }) => {
        impl From<$error> for PilotError {
            fn from(error: $error) -> Self {
                let code = match error {
                    $($pattern => $code,)+
                };
                PilotError::new(code, error.to_string())
            }
        }
    };
}

codes!(AddrError {
    AddrError::TooShort { .. } => "ADDR_TOO_SHORT",
    AddrError::MissingColon => "ADDR_MISSING_COLON",
    AddrError::InvalidNetwork => "ADDR_INVALID_NETWORK",
    AddrError::WrongGroupCount => "ADDR_WRONG_GROUP_COUNT",
    AddrError::WrongGroupLength => "ADDR_WRONG_GROUP_LENGTH",
    AddrError::InvalidHexDigit => "ADDR_INVALID_HEX_DIGIT",
    AddrError::NetworkMismatch { .. } => "ADDR_NETWORK_MISMATCH",
    AddrError::MissingPort => "ADDR_MISSING_PORT",
    AddrError::InvalidPort => "ADDR_INVALID_PORT",
});

codes!(PacketError {
    PacketError::TooShort { .. } => "PACKET_TOO_SHORT",
    PacketError::Truncated { .. } => "PACKET_TRUNCATED",
    PacketError::ChecksumMismatch { .. } => "PACKET_CHECKSUM_MISMATCH",
    PacketError::UnsupportedVersion { .. } => "PACKET_UNSUPPORTED_VERSION",
    PacketError::PayloadTooLarge { .. } => "PACKET_PAYLOAD_TOO_LARGE",
});

codes!(CryptoError {
    CryptoError::NonContributory => "CRYPTO_NON_CONTRIBUTORY",
    CryptoError::KeyDerivation => "CRYPTO_KEY_DERIVATION",
    CryptoError::InvalidPublicKey => "CRYPTO_INVALID_PUBLIC_KEY",
    CryptoError::KeypairMismatch => "CRYPTO_KEYPAIR_MISMATCH",
    CryptoError::BadSignature => "CRYPTO_BAD_SIGNATURE",
    CryptoError::NonceExhausted => "CRYPTO_NONCE_EXHAUSTED",
    CryptoError::SealFailed => "CRYPTO_SEAL_FAILED",
    CryptoError::OpenFailed => "CRYPTO_OPEN_FAILED",
});

codes!(PilkError {
    PilkError::TooShort => "PILK_TOO_SHORT",
    PilkError::BadMagic => "PILK_BAD_MAGIC",
});

codes!(PilaError {
    PilaError::TooShort => "PILA_TOO_SHORT",
    PilaError::BadMagic => "PILA_BAD_MAGIC",
    PilaError::IdentityMismatch => "PILA_IDENTITY_MISMATCH",
    PilaError::InvalidIdentityKey => "PILA_INVALID_IDENTITY_KEY",
    PilaError::BadSignature => "PILA_BAD_SIGNATURE",
});

codes!(PilsError {
    PilsError::TooShort => "PILS_TOO_SHORT",
    PilsError::BadMagic => "PILS_BAD_MAGIC",
    PilsError::Authentication => "PILS_AUTHENTICATION",
    PilsError::PacketTooLarge => "PILS_PACKET_TOO_LARGE",
    PilsError::NonceExhausted => "PILS_NONCE_EXHAUSTED",
});

codes!(BeaconError {
    BeaconError::Empty => "BEACON_EMPTY",
    BeaconError::UnknownCode(_) => "BEACON_UNKNOWN_CODE",
    BeaconError::UnexpectedCode { .. } => "BEACON_UNEXPECTED_CODE",
    BeaconError::TooShort { .. } => "BEACON_TOO_SHORT",
    BeaconError::BadIpLength(_) => "BEACON_BAD_IP_LENGTH",
    BeaconError::SyncCountMismatch { .. } => "BEACON_SYNC_COUNT_MISMATCH",
    BeaconError::RelayFrameTooLarge { .. } => "BEACON_RELAY_FRAME_TOO_LARGE",
});

codes!(TcpFrameError {
    TcpFrameError::FrameTooLarge { .. } => "TCP_FRAME_TOO_LARGE",
    TcpFrameError::DeclaredTooLarge { .. } => "TCP_DECLARED_TOO_LARGE",
});

codes!(FragmentError {
    FragmentError::TooShort { .. } => "PILF_TOO_SHORT",
    FragmentError::BadMagic => "PILF_BAD_MAGIC",
    FragmentError::CountOutOfRange { .. } => "PILF_COUNT_OUT_OF_RANGE",
    FragmentError::IndexOutOfRange { .. } => "PILF_INDEX_OUT_OF_RANGE",
    FragmentError::ChunkTooLong { .. } => "PILF_CHUNK_TOO_LONG",
    FragmentError::ShortChunk { .. } => "PILF_SHORT_CHUNK",
    FragmentError::RelaySenderMismatch { .. } => "PILF_RELAY_SENDER_MISMATCH",
    FragmentError::Duplicate { .. } => "PILF_DUPLICATE",
    FragmentError::CountMismatch { .. } => "PILF_COUNT_MISMATCH",
    FragmentError::TooManyGroups => "PILF_TOO_MANY_GROUPS",
    FragmentError::TooManyGroupsForSource => "PILF_TOO_MANY_GROUPS_FOR_SOURCE",
    FragmentError::NestedFragment => "PILF_NESTED_FRAGMENT",
    FragmentError::ReassembledTooShort { .. } => "PILF_REASSEMBLED_TOO_SHORT",
    FragmentError::FrameTooLarge { .. } => "PILF_FRAME_TOO_LARGE",
});

codes!(DataExchangeError {
    DataExchangeError::Truncated { .. } => "DX_TRUNCATED",
    DataExchangeError::FrameTooLarge { .. } => "DX_FRAME_TOO_LARGE",
    DataExchangeError::FileNameTooLong { .. } => "DX_FILE_NAME_TOO_LONG",
    DataExchangeError::FileNameNotUtf8 => "DX_FILE_NAME_NOT_UTF8",
    DataExchangeError::FileNameNotBaseName => "DX_FILE_NAME_NOT_BASE_NAME",
    DataExchangeError::MalformedReply => "DX_MALFORMED_REPLY",
});

codes!(EventStreamError {
    EventStreamError::Truncated { .. } => "EVENT_TRUNCATED",
    EventStreamError::TopicTooLong { .. } => "EVENT_TOPIC_TOO_LONG",
    EventStreamError::PayloadTooLarge { .. } => "EVENT_PAYLOAD_TOO_LARGE",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pilot_core_errors_keep_their_display_text_and_get_a_layer_code() {
        let error = PilotError::from(PilsError::Authentication);
        assert_eq!(error.code(), "PILS_AUTHENTICATION");
        assert_eq!(error.message(), PilsError::Authentication.to_string());

        let error = PilotError::from(AddrError::NetworkMismatch { decimal: 1, hex: 2 });
        assert_eq!(error.code(), "ADDR_NETWORK_MISMATCH");
    }

    #[test]
    fn argument_errors_name_what_was_wrong() {
        let error = PilotError::length("registry key", 32, 31);
        assert_eq!(error.code(), "ARG_LENGTH");
        assert_eq!(error.message(), "registry key must be 32 bytes, got 31");
    }
}
