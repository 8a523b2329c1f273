//! PILF fragmentation (spec §3.8): a fragmenter for sending and a bounded reassembler.

use alloc::string::String;
use alloc::vec::Vec;

use js_sys::{Array, Uint8Array};
use pilot_core::frame::fragment::{self, Split};
use wasm_bindgen::prelude::*;

use crate::error::PilotError;
use crate::js::{instant, millis};
use crate::rng;

/// Splits outgoing frames longer than 1223 bytes into PILF fragments.
#[wasm_bindgen]
pub struct Fragmenter {
    inner: fragment::Fragmenter,
}

#[wasm_bindgen]
impl Fragmenter {
    /// A fragmenter whose first group ID is `seed`, or a random one (crypto.getRandomValues)
    /// when omitted, as spec §3.8 asks of a process.
    #[wasm_bindgen(constructor)]
    pub fn new(seed: Option<u32>) -> Result<Fragmenter, PilotError> {
        let seed = match seed {
            Some(seed) => seed,
            None => u32::from_be_bytes(rng::random_array()?),
        };
        Ok(Self {
            inner: fragment::Fragmenter::new(seed),
        })
    }

    /// The datagrams to send for `frame` from node `sender`: `[frame]` itself when it fits,
    /// else its fragments in index order. Throws `PILF_FRAME_TOO_LARGE` above 64 fragments.
    #[wasm_bindgen(unchecked_return_type = "Uint8Array[]")]
    pub fn split(&mut self, sender: u32, frame: &[u8]) -> Result<Array, PilotError> {
        let out = Array::new();
        match self.inner.split(sender, frame)? {
            Split::Whole(whole) => {
                out.push(&Uint8Array::from(whole));
            }
            Split::Fragments(fragments) => {
                for fragment in fragments {
                    out.push(&Uint8Array::from(fragment.as_slice()));
                }
            }
        }
        Ok(out)
    }
}

/// Reassembles PILF groups; bounded to 256 groups (32 per source) and 3 s per group.
#[wasm_bindgen]
pub struct Reassembler {
    inner: fragment::Reassembler<String>,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl Reassembler {
    /// An empty reassembler.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self {
            inner: fragment::Reassembler::new(),
        }
    }

    /// Accepts one PILF datagram; returns the reassembled frame once its group is complete,
    /// else `undefined`.
    ///
    /// `source` names the path it arrived on (e.g. `"udp:203.0.113.7:4000"`, or
    /// `"relay:<sender>"` for relay-delivered fragments); groups of different sources never
    /// mix. `relaySender` is the sender of the RelayDeliver envelope, when there was one: it
    /// must match the fragment header (spec §3.8). `now` is in milliseconds.
    pub fn push(
        &mut self,
        source: String,
        relay_sender: Option<u32>,
        frame: &[u8],
        now: f64,
    ) -> Result<Option<Vec<u8>>, PilotError> {
        Ok(self
            .inner
            .push(source, relay_sender, frame, instant(now)?)?)
    }

    /// Drops groups whose 3 s have run out by `now` (ms); returns when the next pending group
    /// expires (ms), or `undefined` when none is pending. Call it at that time.
    pub fn tick(&mut self, now: f64) -> Result<Option<f64>, PilotError> {
        self.inner.expire(instant(now)?);
        Ok(self.inner.next_expiry().map(millis))
    }

    /// Incomplete groups held.
    #[wasm_bindgen(getter, js_name = pendingGroups)]
    pub fn pending_groups(&self) -> usize {
        self.inner.pending_groups()
    }

    /// Chunk bytes held by incomplete groups.
    #[wasm_bindgen(getter, js_name = bufferedBytes)]
    pub fn buffered_bytes(&self) -> usize {
        self.inner.buffered_bytes()
    }
}
