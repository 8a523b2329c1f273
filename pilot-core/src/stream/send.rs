//! Send side: the bounded byte buffer the application writes into and the retransmission queue.
//!
//! Bytes stay in the [`SendBuffer`] until cumulatively acknowledged. Each transmitted segment
//! keeps a [`SentSegment`] record (its boundaries never change, so a retransmission carries
//! exactly the original bytes). The queue keeps the flight size up to date on every change of a
//! record, so asking "how much is in flight" costs nothing.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::time::Instant;

/// Written bytes from the oldest unacknowledged one onward.
#[derive(Debug, Clone)]
pub(crate) struct SendBuffer {
    data: VecDeque<u8>,
    /// Absolute sequence number of `data[0]`.
    start: u64,
    capacity: usize,
}

impl SendBuffer {
    pub(crate) fn new(capacity: usize, start: u64) -> Self {
        SendBuffer {
            data: VecDeque::new(),
            start,
            capacity,
        }
    }

    /// Bytes the application may still write.
    pub(crate) fn free(&self) -> usize {
        self.capacity.saturating_sub(self.data.len())
    }

    /// Absolute sequence number one past the last written byte.
    pub(crate) fn end(&self) -> u64 {
        self.start.saturating_add(self.data.len() as u64)
    }

    /// Appends as much of `bytes` as fits; returns how much.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        self.data.extend(bytes.iter().take(n));
        n
    }

    /// A copy of `len` bytes starting at absolute sequence number `seq`.
    pub(crate) fn copy_out(&self, seq: u64, len: usize) -> Vec<u8> {
        let offset = usize::try_from(seq.saturating_sub(self.start)).unwrap_or(usize::MAX);
        let (front, back) = self.data.as_slices();
        let mut out = Vec::with_capacity(len);
        let end = offset.saturating_add(len);
        if offset < front.len() {
            out.extend_from_slice(front.get(offset..end.min(front.len())).unwrap_or(&[]));
        }
        if end > front.len() {
            let back_start = offset.saturating_sub(front.len());
            let back_end = end - front.len();
            out.extend_from_slice(
                back.get(back_start..back_end.min(back.len()))
                    .unwrap_or(&[]),
            );
        }
        out
    }

    /// Whether the bytes starting at absolute sequence number `seq` begin with `prefix`.
    pub(crate) fn has_prefix_at(&self, seq: u64, prefix: &[u8]) -> bool {
        let Ok(offset) = usize::try_from(seq.saturating_sub(self.start)) else {
            return false;
        };
        prefix
            .iter()
            .enumerate()
            .all(|(i, byte)| self.data.get(offset.saturating_add(i)) == Some(byte))
    }

    /// Forgets bytes before absolute sequence number `seq` (they were acknowledged).
    pub(crate) fn release_to(&mut self, seq: u64) {
        let n = usize::try_from(seq.saturating_sub(self.start)).unwrap_or(usize::MAX);
        let n = n.min(self.data.len());
        self.data.drain(..n);
        self.start = self.start.saturating_add(n as u64);
    }
}

/// One transmitted segment awaiting acknowledgement.
#[derive(Debug, Clone)]
pub(crate) struct SentSegment {
    pub(crate) seq: u64,
    /// Payload bytes (0 for a bare FIN).
    pub(crate) len: u32,
    /// This segment is our FIN (it consumes one sequence number after the payload).
    pub(crate) fin: bool,
    /// Time of the first transmission, for RTT samples (Karn: only if `transmissions == 1`).
    pub(crate) first_sent: Instant,
    /// Time of the latest transmission, for time-based loss detection.
    last_sent: Instant,
    pub(crate) transmissions: u8,
    /// Recovery episode in which it was last retransmitted (one retransmission per episode).
    pub(crate) epoch: u32,
    sacked: bool,
    lost: bool,
}

impl SentSegment {
    pub(crate) fn new(seq: u64, len: u32, fin: bool, now: Instant) -> Self {
        SentSegment {
            seq,
            len,
            fin,
            first_sent: now,
            last_sent: now,
            transmissions: 1,
            epoch: 0,
            sacked: false,
            lost: false,
        }
    }

    /// Sequence space the segment occupies.
    pub(crate) fn seq_len(&self) -> u64 {
        u64::from(self.len) + u64::from(self.fin)
    }

    pub(crate) fn end(&self) -> u64 {
        self.seq.saturating_add(self.seq_len())
    }

    fn in_flight(&self) -> bool {
        !self.sacked && !self.lost
    }
}

/// What a cumulative ACK removed from the queue.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Acked {
    /// Send time of the newest removed segment, if no removed segment was ever retransmitted.
    ///
    /// Karn's rule, applied to the whole ACK: when a retransmission filled a hole, the
    /// segments behind it were held by the receiver and their ACK says nothing about the RTT.
    pub(crate) rtt_sample_from: Option<Instant>,
    /// Our FIN was among the removed segments.
    pub(crate) fin: bool,
    /// Send time of the newest removed segment that was never retransmitted (RACK).
    pub(crate) delivered_sent: Option<Instant>,
}

/// Segments in flight, oldest first, with cached flight counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetransmitQueue {
    segments: VecDeque<SentSegment>,
    flight_bytes: u64,
    flight_segments: usize,
    lost_segments: usize,
}

impl RetransmitQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Sequence space that is neither SACKed nor waiting for retransmission (RFC 6675 "pipe").
    pub(crate) fn flight_bytes(&self) -> u64 {
        self.flight_bytes
    }

    /// Segments counted in [`flight_bytes`](Self::flight_bytes).
    pub(crate) fn flight_segments(&self) -> usize {
        self.flight_segments
    }

    #[cfg(test)]
    pub(crate) fn has_lost(&self) -> bool {
        self.lost_segments > 0
    }

    #[cfg(test)]
    pub(crate) fn front(&self) -> Option<&SentSegment> {
        self.segments.front()
    }

    pub(crate) fn push(&mut self, segment: SentSegment) {
        self.add_flight(&segment);
        self.segments.push_back(segment);
    }

    fn add_flight(&mut self, segment: &SentSegment) {
        if segment.in_flight() {
            self.flight_bytes += segment.seq_len();
            self.flight_segments += 1;
        }
    }

    fn remove_flight(&mut self, segment: &SentSegment) {
        if segment.in_flight() {
            self.flight_bytes -= segment.seq_len();
            self.flight_segments -= 1;
        }
    }

    /// Drops every segment that ends at or before `ack`.
    pub(crate) fn ack_to(&mut self, ack: u64) -> Acked {
        let mut acked = Acked::default();
        let mut retransmitted = false;
        while let Some(front) = self.segments.front() {
            if front.end() > ack {
                break;
            }
            let Some(segment) = self.segments.pop_front() else {
                break;
            };
            self.remove_flight(&segment);
            if segment.lost {
                self.lost_segments -= 1;
            }
            retransmitted |= segment.transmissions > 1;
            if segment.transmissions == 1 {
                acked.delivered_sent = acked.delivered_sent.max(Some(segment.first_sent));
            }
            acked.rtt_sample_from = Some(segment.first_sent);
            acked.fin |= segment.fin;
        }
        if retransmitted {
            acked.rtt_sample_from = None;
        }
        acked
    }

    /// Marks segments lying wholly inside `[left, right)` as SACKed (spec §8.5). Returns the
    /// send time of the newest newly SACKed segment that was never retransmitted (RACK).
    pub(crate) fn mark_sacked(&mut self, left: u64, right: u64) -> Option<Instant> {
        let mut delivered_sent = None;
        let first = self.segments.partition_point(|s| s.seq < left);
        for index in first..self.segments.len() {
            let Some(segment) = self.segments.get(index) else {
                break;
            };
            if segment.end() > right {
                break;
            }
            if segment.sacked {
                continue;
            }
            let before = segment.clone();
            self.remove_flight(&before);
            if before.lost {
                self.lost_segments -= 1;
            }
            if before.transmissions == 1 {
                delivered_sent = delivered_sent.max(Some(before.first_sent));
            }
            if let Some(segment) = self.segments.get_mut(index) {
                segment.sacked = true;
                segment.lost = false;
            }
        }
        delivered_sent
    }

    /// Marks lost every outstanding segment last sent before `deadline` (RACK, RFC 8985: a
    /// segment sent later has been delivered, so this one is not merely reordered). Unlike
    /// the other rules this also catches a lost retransmission. Returns whether any was marked.
    pub(crate) fn mark_lost_sent_before(&mut self, deadline: Instant) -> bool {
        let mut marked = false;
        for index in 0..self.segments.len() {
            let Some(segment) = self.segments.get(index) else {
                break;
            };
            if segment.transmissions == 1 && segment.last_sent >= deadline {
                // Queue order is first-send order, so every later segment was (re)sent later
                // still: nothing further can be lost.
                break;
            }
            if segment.sacked || segment.lost || segment.last_sent >= deadline {
                continue;
            }
            let before = segment.clone();
            self.remove_flight(&before);
            self.lost_segments += 1;
            if let Some(segment) = self.segments.get_mut(index) {
                segment.lost = true;
            }
            marked = true;
        }
        marked
    }

    /// Marks the segment at `index` lost (waiting for retransmission) unless SACKed or
    /// already retransmitted in `epoch`.
    fn mark_lost_at(&mut self, index: usize, epoch: u32) -> bool {
        let Some(segment) = self.segments.get(index) else {
            return false;
        };
        if segment.sacked || segment.lost || (segment.epoch == epoch && segment.transmissions > 1) {
            return false;
        }
        let before = segment.clone();
        self.remove_flight(&before);
        self.lost_segments += 1;
        if let Some(segment) = self.segments.get_mut(index) {
            segment.lost = true;
        }
        true
    }

    /// Marks the oldest un-SACKed segment lost (fast retransmit, partial ACK).
    pub(crate) fn mark_first_unsacked_lost(&mut self, epoch: u32) {
        if let Some(index) = self.segments.iter().position(|s| !s.sacked) {
            self.mark_lost_at(index, epoch);
        }
    }

    /// Marks every un-SACKed segment lost (retransmission timeout).
    ///
    /// The oldest segment is marked even if SACKed: SACK is advisory (RFC 2018 §8) and a
    /// receiver whose queue is full holds SACKed data it cannot yet acknowledge, so after a
    /// timeout something must go out to draw a fresh ACK and window.
    pub(crate) fn mark_all_unsacked_lost(&mut self, epoch: u32) {
        if let Some(front) = self.segments.front_mut() {
            if front.sacked {
                front.sacked = false;
                let unsacked = front.clone();
                self.add_flight(&unsacked);
            }
        }
        for index in 0..self.segments.len() {
            self.mark_lost_at(index, epoch);
        }
    }

    /// Marks un-SACKed segments with at least `threshold` SACKed segments above them lost
    /// (RFC 6675 `IsLost`, counted in segments).
    pub(crate) fn mark_lost_below_sacked(&mut self, threshold: usize, epoch: u32) {
        let mut sacked_above = 0;
        for index in (0..self.segments.len()).rev() {
            let Some(segment) = self.segments.get(index) else {
                continue;
            };
            if segment.sacked {
                sacked_above += 1;
            } else if sacked_above >= threshold {
                self.mark_lost_at(index, epoch);
            }
        }
    }

    /// Takes the oldest lost segment for retransmission: it is in flight again.
    pub(crate) fn retransmit_first_lost(
        &mut self,
        epoch: u32,
        now: Instant,
    ) -> Option<SentSegment> {
        if self.lost_segments == 0 {
            return None;
        }
        let index = self.segments.iter().position(|s| s.lost)?;
        let segment = self.segments.get_mut(index)?;
        segment.lost = false;
        segment.last_sent = now;
        segment.transmissions = segment.transmissions.saturating_add(1);
        segment.epoch = epoch;
        let copy = segment.clone();
        self.lost_segments -= 1;
        self.add_flight(&copy);
        Some(copy)
    }

    /// Sequence length of the oldest lost segment, if any.
    pub(crate) fn first_lost_len(&self) -> Option<u64> {
        if self.lost_segments == 0 {
            return None;
        }
        self.segments
            .iter()
            .find(|s| s.lost)
            .map(SentSegment::seq_len)
    }

    /// The oldest un-SACKed segment (the one a timeout is about).
    #[cfg(test)]
    pub(crate) fn first_unsacked(&self) -> Option<&SentSegment> {
        self.segments.iter().find(|s| !s.sacked)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn queue_of(n: u64) -> RetransmitQueue {
        let mut q = RetransmitQueue::default();
        for i in 0..n {
            q.push(SentSegment::new(1 + i * 100, 100, false, Instant::ZERO));
        }
        q
    }

    #[test]
    fn send_buffer_is_bounded_and_copies_across_the_ring_seam() {
        let mut buf = SendBuffer::new(8, 1);
        assert_eq!(buf.push(b"abcdef"), 6);
        buf.release_to(5);
        assert_eq!(buf.push(b"ghijklmn"), 6, "only the free part is taken");
        assert_eq!(buf.free(), 0);
        assert_eq!(buf.copy_out(5, 8), b"efghijkl");
        assert_eq!(buf.copy_out(9, 2), b"ij");
        assert_eq!(buf.end(), 13);
        assert!(buf.has_prefix_at(7, b"ghi"));
        assert!(!buf.has_prefix_at(7, b"ghx"));
        assert!(!buf.has_prefix_at(12, b"mn"), "runs past the end");
    }

    #[test]
    fn flight_excludes_sacked_and_lost_segments() {
        let mut q = queue_of(5);
        assert_eq!((q.flight_bytes(), q.flight_segments()), (500, 5));
        q.mark_sacked(201, 401);
        assert_eq!((q.flight_bytes(), q.flight_segments()), (300, 3));
        q.mark_first_unsacked_lost(1);
        assert_eq!(q.flight_bytes(), 200);
        let again = q.retransmit_first_lost(1, Instant::ZERO).unwrap();
        assert_eq!((again.seq, again.transmissions), (1, 2));
        assert_eq!(q.flight_bytes(), 300);
    }

    #[test]
    fn a_segment_is_retransmitted_once_per_recovery_epoch() {
        let mut q = queue_of(2);
        q.mark_first_unsacked_lost(1);
        q.retransmit_first_lost(1, Instant::ZERO).unwrap();
        q.mark_first_unsacked_lost(1);
        assert!(!q.has_lost());
        q.mark_first_unsacked_lost(2);
        assert!(q.has_lost());
    }

    #[test]
    fn sack_marks_only_segments_wholly_inside_a_block() {
        let mut q = queue_of(3);
        q.mark_sacked(150, 301);
        // [101, 201) starts before 150 and [201, 301) fits: only the second is SACKed.
        assert_eq!(q.flight_segments(), 2);
        q.mark_lost_below_sacked(1, 1);
        assert_eq!(q.first_lost_len(), Some(100));
        assert_eq!(q.first_unsacked().unwrap().seq, 1);
    }

    #[test]
    fn cumulative_ack_removes_whole_segments_and_reports_rtt_and_fin() {
        let mut q = queue_of(3);
        q.push(SentSegment::new(301, 0, true, Instant::from_millis(7)));
        let acked = q.ack_to(250);
        assert_eq!(q.front().unwrap().seq, 201);
        assert!(!acked.fin);
        let acked = q.ack_to(302);
        assert!(acked.fin);
        assert_eq!(acked.rtt_sample_from, Some(Instant::from_millis(7)));
        assert!(q.is_empty());
        assert_eq!(q.flight_bytes(), 0);
    }

    #[test]
    fn time_based_loss_marks_segments_sent_before_a_delivered_one_even_if_retransmitted() {
        let mut q = RetransmitQueue::default();
        for i in 0..3u64 {
            q.push(SentSegment::new(
                1 + i * 100,
                100,
                false,
                Instant::from_millis(i * 10),
            ));
        }
        // The retransmission of the first segment at 25 ms is later lost too.
        q.mark_first_unsacked_lost(1);
        q.retransmit_first_lost(1, Instant::from_millis(25))
            .unwrap();
        assert_eq!(q.mark_sacked(201, 301), Some(Instant::from_millis(20)));
        assert!(q.mark_lost_sent_before(Instant::from_millis(20)));
        assert_eq!(q.first_lost_len(), Some(100));
        let lost = q
            .retransmit_first_lost(1, Instant::from_millis(30))
            .unwrap();
        assert_eq!(
            lost.seq, 101,
            "only the segment sent before the delivered one"
        );
        // A segment delivered later (sent at 40 ms) exposes the lost retransmission.
        q.push(SentSegment::new(301, 100, false, Instant::from_millis(40)));
        q.mark_sacked(301, 401);
        assert!(q.mark_lost_sent_before(Instant::from_millis(40)));
        assert_eq!(
            q.retransmit_first_lost(1, Instant::from_millis(45))
                .unwrap()
                .seq,
            1
        );
    }

    #[test]
    fn a_timeout_retransmits_the_oldest_segment_even_when_everything_is_sacked() {
        let mut q = queue_of(2);
        q.mark_sacked(1, 201);
        assert_eq!(q.flight_bytes(), 0);
        q.mark_all_unsacked_lost(1);
        assert_eq!(q.first_lost_len(), Some(100));
        assert_eq!(q.retransmit_first_lost(1, Instant::ZERO).unwrap().seq, 1);
        assert_eq!(q.flight_bytes(), 100);
    }

    #[test]
    fn an_ack_covering_a_retransmission_gives_no_rtt_sample() {
        let mut q = queue_of(3);
        q.mark_first_unsacked_lost(1);
        q.retransmit_first_lost(1, Instant::ZERO).unwrap();
        assert_eq!(q.ack_to(301).rtt_sample_from, None);
    }
}
