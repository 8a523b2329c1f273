//! The 256-counter sliding replay window of one send epoch (spec §5.1).

use core::fmt;

/// Width of the window: a counter more than this far below the highest accepted one is
/// rejected as outside the window (spec §5.1, `ReplayWindowSize` in every version).
pub const REPLAY_WINDOW_COUNTERS: u64 = 256;

/// Number of 64-bit words in the bitmap (256 bits).
const BITMAP_WORDS: usize = 4;

/// Bits per bitmap word.
const WORD_BITS: u64 = 64;

/// What the window says about one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The frame is fresh: deliver it.
    Accept(Accept),
    /// The frame must be discarded.
    Reject(Reject),
}

impl Verdict {
    /// Whether the frame is delivered.
    pub fn is_accept(self) -> bool {
        matches!(self, Verdict::Accept(_))
    }
}

/// Why a counter was accepted (vector reasons `accept_first`, `accept_new_max`,
/// `accept_in_window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accept {
    /// The first counter this window sees; it becomes the highest accepted counter.
    First,
    /// Above the highest accepted counter: the window slides forward to it.
    NewMax,
    /// At most 255 below the highest accepted counter and not seen before (reordering).
    InWindow,
}

/// Why a counter was rejected: the error enum of the replay layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// 256 or more below the highest accepted counter (vector reason `reject_too_old`).
    OutsideWindow,
    /// Inside the window and already accepted (vector reason `reject_duplicate`).
    Replay,
    /// Counter 0, which no Pilot sender produces.
    ///
    /// Spec §4.3: the send counter is pre-incremented, so the first frame carries 1. The
    /// reference treats a 0 as "first" without recording it, forever (vector case
    /// "counter 0 first", a `reference_quirk`); accepting it would let the same frame be
    /// delivered any number of times, so it is rejected outright.
    ZeroCounter,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reject::OutsideWindow => "counter is outside the replay window",
            Reject::Replay => "counter was already accepted (replay)",
            Reject::ZeroCounter => "counter 0 is never sent",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Reject {}

/// Replay window of one send epoch: the highest accepted counter and a 256-bit bitmap of the
/// counters accepted below it, indexed by `counter mod 256` (spec §5.1).
///
/// The raw building block: it takes plain counters and trusts its caller to feed only those
/// of frames that authenticated (spec §5.2), and being `Clone` it can be copied and restored.
/// An engine uses [`ReceiveState`] instead, which takes only authenticated nonces and cannot
/// be copied. Asking ([`check`]) and recording ([`check_and_record`]) are separate so a
/// caller can ask without moving the window.
///
/// [`ReceiveState`]: super::ReceiveState
/// [`check`]: ReplayWindow::check
/// [`check_and_record`]: ReplayWindow::check_and_record
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayWindow {
    /// Highest accepted counter; 0 while nothing was accepted (0 itself is never accepted).
    max: u64,
    /// Bit `c mod 256` is set when counter `c` (within 255 of `max`) was accepted.
    bitmap: [u64; BITMAP_WORDS],
}

impl ReplayWindow {
    /// An empty window: the next valid counter is accepted as [`Accept::First`].
    pub const fn new() -> Self {
        Self {
            max: 0,
            bitmap: [0; BITMAP_WORDS],
        }
    }

    /// The highest accepted counter, or 0 when nothing was accepted yet.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Whether no counter was accepted yet.
    pub fn is_empty(&self) -> bool {
        self.max == 0
    }

    /// Judges `counter` without changing the window.
    pub fn check(&self, counter: u64) -> Verdict {
        if counter == 0 {
            return Verdict::Reject(Reject::ZeroCounter);
        }
        if self.is_empty() {
            return Verdict::Accept(Accept::First);
        }
        if counter > self.max {
            // spec §5.1 step 2: large forward jumps are always accepted.
            return Verdict::Accept(Accept::NewMax);
        }
        if self.max - counter >= REPLAY_WINDOW_COUNTERS {
            return Verdict::Reject(Reject::OutsideWindow);
        }
        if self.is_marked(counter) {
            return Verdict::Reject(Reject::Replay);
        }
        Verdict::Accept(Accept::InWindow)
    }

    /// Judges `counter` and, when it is accepted, records it (spec §5.1 check-and-record).
    pub fn check_and_record(&mut self, counter: u64) -> Verdict {
        let verdict = self.check(counter);
        if let Verdict::Accept(accept) = verdict {
            self.record(counter, accept);
        }
        verdict
    }

    /// Records an accepted counter; `accept` must be what [`check`](Self::check) just said.
    fn record(&mut self, counter: u64, accept: Accept) {
        match accept {
            Accept::First => {
                self.bitmap = [0; BITMAP_WORDS];
                self.max = counter;
            }
            Accept::NewMax => {
                self.slide_to(counter);
            }
            Accept::InWindow => {}
        }
        self.mark(counter);
    }

    /// Moves `max` up to `counter`, forgetting the bit positions the new counters reuse.
    fn slide_to(&mut self, counter: u64) {
        let shift = counter.saturating_sub(self.max);
        if shift >= REPLAY_WINDOW_COUNTERS {
            self.bitmap = [0; BITMAP_WORDS];
        } else {
            // Positions max+1 ..= counter now stand for the new counters, not the ones
            // 256 below them.
            self.clear_positions(self.max.wrapping_add(1), shift);
        }
        self.max = counter;
    }

    /// Clears `len` (< 256) consecutive bit positions starting at counter `from`, wrapping
    /// around the bitmap, one word-sized run at a time.
    fn clear_positions(&mut self, from: u64, len: u64) {
        let mut position = from % REPLAY_WINDOW_COUNTERS;
        let mut left = len;
        while left > 0 {
            let bit = position % WORD_BITS;
            let run = left.min(WORD_BITS - bit);
            let ones = if run == WORD_BITS {
                u64::MAX
            } else {
                (1u64 << run) - 1
            };
            *self.word_mut(position) &= !(ones << bit);
            position = (position + run) % REPLAY_WINDOW_COUNTERS;
            left -= run;
        }
    }

    fn is_marked(&self, counter: u64) -> bool {
        self.word(counter) & Self::bit(counter) != 0
    }

    fn mark(&mut self, counter: u64) {
        *self.word_mut(counter) |= Self::bit(counter);
    }

    fn bit(counter: u64) -> u64 {
        1u64 << (counter % WORD_BITS)
    }

    /// The bitmap word holding position `counter mod 256`.
    fn word(&self, counter: u64) -> u64 {
        let [w0, w1, w2, w3] = self.bitmap;
        match (counter / WORD_BITS) % 4 {
            0 => w0,
            1 => w1,
            2 => w2,
            _ => w3,
        }
    }

    fn word_mut(&mut self, counter: u64) -> &mut u64 {
        let [w0, w1, w2, w3] = &mut self.bitmap;
        match (counter / WORD_BITS) % 4 {
            0 => w0,
            1 => w1,
            2 => w2,
            _ => w3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(window: &mut ReplayWindow, counters: &[u64]) {
        for &c in counters {
            assert!(window.check_and_record(c).is_accept(), "counter {c}");
        }
    }

    #[test]
    fn first_counter_fixes_max() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check_and_record(77), Verdict::Accept(Accept::First));
        assert_eq!(w.max(), 77);
        assert_eq!(w.check_and_record(78), Verdict::Accept(Accept::NewMax));
        assert_eq!(w.max(), 78);
    }

    #[test]
    fn counter_zero_is_rejected_and_records_nothing() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check_and_record(0), Verdict::Reject(Reject::ZeroCounter));
        assert_eq!(w, ReplayWindow::new());
        accepted(&mut w, &[1]);
        assert_eq!(w.check_and_record(0), Verdict::Reject(Reject::ZeroCounter));
        assert_eq!(w.max(), 1);
    }

    #[test]
    fn check_does_not_record() {
        let mut w = ReplayWindow::new();
        accepted(&mut w, &[10]);
        let before = w.clone();
        assert_eq!(w.check(5), Verdict::Accept(Accept::InWindow));
        assert_eq!(w.check(11), Verdict::Accept(Accept::NewMax));
        assert_eq!(w, before);
        assert_eq!(w.check_and_record(5), Verdict::Accept(Accept::InWindow));
        assert_eq!(w.check(5), Verdict::Reject(Reject::Replay));
    }

    #[test]
    fn window_edge_is_255_below_max() {
        let mut w = ReplayWindow::new();
        accepted(&mut w, &[300]);
        assert_eq!(w.check(44), Verdict::Reject(Reject::OutsideWindow));
        assert_eq!(w.check(45), Verdict::Accept(Accept::InWindow));
    }

    #[test]
    fn slide_forgets_reused_positions_but_keeps_the_rest() {
        let mut w = ReplayWindow::new();
        accepted(&mut w, &[1, 2, 3, 257]);
        // 257 reuses the position of 1, which is now outside; 2 and 3 stay marked.
        assert_eq!(w.check(1), Verdict::Reject(Reject::OutsideWindow));
        assert_eq!(w.check(2), Verdict::Reject(Reject::Replay));
        assert_eq!(w.check(3), Verdict::Reject(Reject::Replay));
        assert_eq!(w.check(4), Verdict::Accept(Accept::InWindow));
        // A slide across a word boundary clears exactly the reused positions.
        // Sliding from 257 to 400 reuses positions 2..=144 (counters 258..=400), across a
        // word boundary; position 1 (257) and 200 keep their marks.
        accepted(&mut w, &[130, 200, 400]);
        assert_eq!(w.check(257), Verdict::Reject(Reject::Replay));
        assert_eq!(w.check(200), Verdict::Reject(Reject::Replay));
        assert_eq!(w.check(259), Verdict::Accept(Accept::InWindow));
        assert_eq!(w.check(386), Verdict::Accept(Accept::InWindow));
        assert_eq!(w.check(130), Verdict::Reject(Reject::OutsideWindow));
    }

    #[test]
    fn jump_of_a_full_window_clears_everything() {
        let mut w = ReplayWindow::new();
        // 12 -> 268 is a shift of exactly 256: the marks of 10, 11, 12 must all go.
        accepted(&mut w, &[10, 11, 12, 268]);
        assert_eq!(w.check(266), Verdict::Accept(Accept::InWindow));
        assert_eq!(w.check(267), Verdict::Accept(Accept::InWindow));
        assert_eq!(w.check(13), Verdict::Accept(Accept::InWindow));
        assert_eq!(w.check(12), Verdict::Reject(Reject::OutsideWindow));
    }

    #[test]
    fn top_of_the_counter_space_works() {
        let mut w = ReplayWindow::new();
        accepted(&mut w, &[5, u64::MAX, u64::MAX - 255]);
        assert_eq!(w.check(u64::MAX), Verdict::Reject(Reject::Replay));
        assert_eq!(
            w.check(u64::MAX - 256),
            Verdict::Reject(Reject::OutsideWindow)
        );
        assert_eq!(w.check(u64::MAX - 1), Verdict::Accept(Accept::InWindow));
    }

    #[test]
    fn reject_messages_are_distinct() {
        let all = [Reject::OutsideWindow, Reject::Replay, Reject::ZeroCounter];
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                assert_ne!(alloc::format!("{a}"), alloc::format!("{b}"));
            }
        }
    }
}
