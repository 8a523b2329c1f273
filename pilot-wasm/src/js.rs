//! Small conversions between Rust values and the plain JavaScript values of the API.
//!
//! Outputs are plain objects built with `Reflect.set`, byte strings are `Uint8Array` copies,
//! 64-bit counters are `bigint`, and times are milliseconds as `number`.

use alloc::vec::Vec;

use js_sys::{Object, Reflect, Uint8Array};
use pilot_core::time::Instant;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::PilotError;

/// Microseconds in a millisecond, the unit of every `now` argument.
const MICROS_PER_MILLI: f64 = 1_000.0;

/// Builds a plain object one property at a time.
pub(crate) struct Obj(Object);

impl Obj {
    /// An empty object.
    pub(crate) fn new() -> Self {
        Self(Object::new())
    }

    /// Sets `key` to `value`.
    pub(crate) fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        // Defining a property on a fresh ordinary object cannot fail.
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), &value.into());
        self
    }

    /// Sets `key` to a `Uint8Array` copy of `bytes`.
    pub(crate) fn bytes(self, key: &str, bytes: &[u8]) -> Self {
        self.set(key, Uint8Array::from(bytes))
    }

    /// The finished object.
    pub(crate) fn build(self) -> JsValue {
        self.0.into()
    }
}

/// `bytes` as a fixed-size array, or `ARG_LENGTH` naming `what`.
pub(crate) fn array<const N: usize>(what: &str, bytes: &[u8]) -> Result<[u8; N], PilotError> {
    bytes
        .try_into()
        .map_err(|_| PilotError::length(what, N, bytes.len()))
}

/// A driver time in milliseconds (any monotonic origin) as a pilot-core [`Instant`].
///
/// Fractions of a millisecond are kept down to the microsecond, so `performance.now()` works
/// as well as `Date.now()`.
pub(crate) fn instant(now_ms: f64) -> Result<Instant, PilotError> {
    if !now_ms.is_finite() || now_ms < 0.0 {
        return Err(PilotError::new(
            "ARG_INVALID_TIME",
            "now must be a finite, non-negative number of milliseconds",
        ));
    }
    // Rounded to the nearest microsecond, so a time read back from `millis` (a `timeout`
    // of `Node.pollOutput`) names the very instant it came from: truncating 1234.567 ms
    // (1234566.9999… µs) would tick one microsecond before the timer is due. `as`
    // saturates for floats above u64::MAX, which is the clock's end anyway.
    Ok(Instant::from_micros(
        (now_ms * MICROS_PER_MILLI + 0.5) as u64,
    ))
}

/// A pilot-core [`Instant`] back in milliseconds.
pub(crate) fn millis(instant: Instant) -> f64 {
    instant.as_micros() as f64 / MICROS_PER_MILLI
}

/// Reads property `key` of `object`; `undefined` when absent or when `object` is no object.
pub(crate) fn get(object: &JsValue, key: &str) -> JsValue {
    if !object.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// An integer property in `0..=max`; `default` when absent.
pub(crate) fn uint_field(
    object: &JsValue,
    key: &str,
    max: u64,
    default: Option<u64>,
) -> Result<u64, PilotError> {
    let value = get(object, key);
    if value.is_undefined() {
        return default.ok_or_else(|| PilotError::range(alloc::format!("{key} is required")));
    }
    let out_of_range = || PilotError::range(alloc::format!("{key} must be an integer 0..={max}"));
    let number = value.as_f64().ok_or_else(out_of_range)?;
    if number.fract() != 0.0 || number < 0.0 || number > max as f64 {
        return Err(out_of_range());
    }
    Ok(number as u64)
}

/// A byte property (`Uint8Array`); empty when absent.
pub(crate) fn bytes_field(object: &JsValue, key: &str) -> Result<Vec<u8>, PilotError> {
    let value = get(object, key);
    if value.is_undefined() {
        return Ok(Vec::new());
    }
    value
        .dyn_ref::<Uint8Array>()
        .map(Uint8Array::to_vec)
        .ok_or_else(|| PilotError::range(alloc::format!("{key} must be a Uint8Array")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn milliseconds_become_microsecond_instants_and_back() {
        assert_eq!(instant(0.0), Ok(Instant::ZERO));
        assert_eq!(instant(1.5), Ok(Instant::from_micros(1_500)));
        assert_eq!(instant(3_000.0).map(millis), Ok(3_000.0));
    }

    #[test]
    fn every_microsecond_instant_survives_the_trip_through_milliseconds() {
        for micros in [1_234_567, 999_999_999, 1, 7_000_001, (1 << 40) + 3] {
            let at = Instant::from_micros(micros);
            assert_eq!(instant(millis(at)), Ok(at), "{micros}");
        }
    }

    #[test]
    fn times_that_are_not_finite_or_are_negative_are_refused() {
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(
                instant(bad).map_err(|e| e.code()),
                Err("ARG_INVALID_TIME"),
                "{bad}"
            );
        }
    }

    #[test]
    fn fixed_size_arguments_report_their_expected_length() {
        assert_eq!(array::<4>("sendPrefix", &[1, 2, 3, 4]), Ok([1, 2, 3, 4]));
        let error = array::<4>("sendPrefix", &[1, 2, 3]).unwrap_err();
        assert_eq!(error.code(), "ARG_LENGTH");
        assert_eq!(error.message(), "sendPrefix must be 4 bytes, got 3");
    }
}
