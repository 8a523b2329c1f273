//! The `tcp_frame` cases of `pilot-tunnel-frames.json` (TCP transport framing, spec §7.5).
//! Called by the tunnel-frames runner for every case of that kind.

/// Checks one `tcp_frame` case.
pub fn check(_case: &serde_json::Value) -> Result<(), String> {
    Err("tcp_frame check not written yet".into())
}
