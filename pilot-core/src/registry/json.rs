//! JSON plumbing shared by requests and responses: the `"type"` envelope and error mapping.

use alloc::borrow::Cow;
use alloc::string::{String, ToString};

use serde::{Deserialize, Deserializer};
use serde_json::error::Category;

use super::RegistryError;

/// The fields read before the body is parsed as a specific message.
#[derive(Deserialize)]
pub(super) struct Envelope<'a> {
    /// `"type"`, borrowed unless it contains escapes.
    #[serde(rename = "type", default, borrow)]
    pub(super) ty: Option<Cow<'a, str>>,
    /// `"error"`: COMMON clients treat any response carrying it as an error (spec §9.1).
    #[serde(default)]
    pub(super) error: Option<String>,
}

/// Reads the envelope of one JSON body, which must be a single JSON object.
pub(super) fn message_type(json: &[u8]) -> Result<Envelope<'_>, RegistryError> {
    // serde would also read a struct from a JSON array; spec §9.1 says object.
    let first = json
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(RegistryError::MalformedJson(
            "message is not a JSON object".into(),
        ));
    }
    serde_json::from_slice(json).map_err(|err| map_error(&err, ""))
}

/// Parses the whole body as the message type `ty` already read from its envelope.
pub(super) fn decode_body<'a, T: Deserialize<'a>>(
    json: &'a [u8],
    ty: &str,
) -> Result<T, RegistryError> {
    serde_json::from_slice(json).map_err(|err| map_error(&err, ty))
}

fn map_error(err: &serde_json::Error, ty: &str) -> RegistryError {
    match err.classify() {
        Category::Data => RegistryError::InvalidMessage {
            message_type: ty.into(),
            detail: err.to_string(),
        },
        Category::Io | Category::Syntax | Category::Eof => {
            RegistryError::MalformedJson(err.to_string())
        }
    }
}

/// Reads `null` as the empty value: Go marshals a nil slice as `null`.
pub(super) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
