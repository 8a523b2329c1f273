//! The `tcp_frame` cases of `pilot-tunnel-frames.json` (TCP transport framing, spec §7.5).
//! Called by the tunnel-frames runner for every case of that kind.

use pilot_core::frame::tcp::{self, TcpDeframer, TcpFrameError, MAX_TCP_FRAME};
use serde::Deserialize;

use crate::{expect_bytes, hex_field, typed};

/// A `tcp_frame` case: a UDP frame and its bytes on a V-FORK TCP stream.
#[derive(Debug, Deserialize)]
struct TcpFrameCase {
    /// The frame as a UDP datagram would carry it.
    frame_hex: String,
    /// `u32 BE length ‖ frame`.
    tcp_bytes_hex: String,
}

/// Checks one `tcp_frame` case.
///
/// Encoding the frame must give the stream bytes, and the deframer must give the frame back
/// both when the bytes arrive at once and when they arrive one by one. The cases also state
/// that the reader rejects lengths above 1 MiB; that is checked with the case's own prefix
/// raised to the limit plus one.
pub fn check(case: &serde_json::Value) -> Result<(), String> {
    let case: TcpFrameCase = typed(case)?;
    let frame = hex_field("frame_hex", &case.frame_hex)?;
    let stream = hex_field("tcp_bytes_hex", &case.tcp_bytes_hex)?;

    let mut encoded = Vec::new();
    tcp::encode(&frame, &mut encoded).map_err(|e| format!("encode: {e}"))?;
    expect_bytes("encoded stream", &encoded, &stream)?;

    let whole = deframe(&mut TcpDeframer::new(), std::iter::once(&stream[..]))?;
    expect_frames("fed whole", &whole, &frame)?;

    let by_byte = deframe(&mut TcpDeframer::new(), stream.chunks(1))?;
    expect_frames("fed byte by byte", &by_byte, &frame)?;

    check_oversized_length_is_terminal(&stream)
}

/// Feeds `pieces` to `deframer` and collects every frame; the stream must end on a boundary.
fn deframe<'a>(
    deframer: &mut TcpDeframer,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<Vec<u8>>, String> {
    let mut frames = Vec::new();
    for mut piece in pieces {
        while let Some(frame) = deframer.next_frame(&mut piece).map_err(|e| e.to_string())? {
            frames.push(frame);
        }
    }
    if !deframer.is_at_frame_boundary() {
        return Err(format!(
            "stream ended inside a frame ({} bytes held)",
            deframer.buffered()
        ));
    }
    Ok(frames)
}

fn expect_frames(how: &str, frames: &[Vec<u8>], want: &[u8]) -> Result<(), String> {
    match frames {
        [frame] => expect_bytes(&format!("deframed ({how})"), frame, want),
        _ => Err(format!("deframed ({how}): {} frames, want 1", frames.len())),
    }
}

/// The case's stream with its length prefix replaced by 1 MiB + 1 must fail and stay failed.
fn check_oversized_length_is_terminal(stream: &[u8]) -> Result<(), String> {
    let declared = u32::try_from(MAX_TCP_FRAME + 1).map_err(|e| e.to_string())?;
    let body = stream
        .get(4..)
        .ok_or("tcp_bytes_hex shorter than a length prefix")?;
    let mut oversized = declared.to_be_bytes().to_vec();
    oversized.extend_from_slice(body);

    let mut deframer = TcpDeframer::new();
    let mut input = &oversized[..];
    for attempt in ["first", "second"] {
        match deframer.next_frame(&mut input) {
            Err(TcpFrameError::DeclaredTooLarge { declared: d }) if d == declared => {}
            other => {
                return Err(format!(
                    "length {declared} ({attempt} read): got {other:?}, want DeclaredTooLarge"
                ))
            }
        }
    }
    Ok(())
}
