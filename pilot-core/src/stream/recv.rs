//! Receive side: the bounded queue the application reads from and the out-of-order buffer.
//!
//! The queue counts **segments**, not bytes (spec §8.6): one slot holds one received segment
//! of whatever size the peer chose, and the advertised window is the number of free slots.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use super::config::MAX_RECEIVE_SEGMENT_BYTES;
use super::sack::{SackBlock, SackBlocks, MAX_SACK_BLOCKS};
use super::seq::to_wire;

/// What happened to an arriving data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Delivered to the queue; `filled_gap` when out-of-order data was waiting behind it.
    InOrder { filled_gap: bool },
    /// Buffered ahead of a gap.
    OutOfOrder,
    /// Already received (behind the next expected byte, or the same out-of-order segment).
    Duplicate,
    /// Not accepted: queue full, out-of-order buffer full, or oversized. The peer retransmits.
    Dropped,
}

#[derive(Debug, Clone)]
pub(crate) struct ReceiveBuffer {
    capacity_segments: usize,
    max_out_of_order: usize,
    /// Absolute sequence number of the next in-order byte (RCV.NXT).
    next: u64,
    /// In-order segments not yet (fully) read, one slot each.
    readable: VecDeque<Vec<u8>>,
    /// Bytes of the front segment already read.
    read_offset: usize,
    readable_bytes: usize,
    /// Segments ahead of `next`, by exact sequence number (no overlap trimming, spec §8.4).
    out_of_order: BTreeMap<u64, Vec<u8>>,
}

impl ReceiveBuffer {
    pub(crate) fn new(capacity_segments: u16, max_out_of_order: usize, next: u64) -> Self {
        ReceiveBuffer {
            capacity_segments: usize::from(capacity_segments),
            max_out_of_order,
            next,
            readable: VecDeque::new(),
            read_offset: 0,
            readable_bytes: 0,
            out_of_order: BTreeMap::new(),
        }
    }

    /// The next expected absolute sequence number.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// The peer's in-order FIN consumed one sequence number (spec §8.3).
    pub(crate) fn consume_fin(&mut self) {
        self.next = self.next.saturating_add(1);
        self.out_of_order.clear();
    }

    /// Free slots: the window to advertise (spec §8.6). Zero only when truly full.
    pub(crate) fn free_slots(&self) -> u16 {
        let free = self.capacity_segments.saturating_sub(self.readable.len());
        u16::try_from(free).unwrap_or(u16::MAX)
    }

    pub(crate) fn readable_bytes(&self) -> usize {
        self.readable_bytes
    }

    pub(crate) fn has_out_of_order(&self) -> bool {
        !self.out_of_order.is_empty()
    }

    /// Accepts a data segment starting at absolute sequence number `seq`.
    pub(crate) fn insert(&mut self, seq: u64, payload: &[u8]) -> Arrival {
        if payload.is_empty() {
            return Arrival::Duplicate;
        }
        if payload.len() > MAX_RECEIVE_SEGMENT_BYTES {
            return Arrival::Dropped;
        }
        let end = seq.saturating_add(payload.len() as u64);
        if end <= self.next {
            return Arrival::Duplicate;
        }
        if seq <= self.next {
            if self.readable.len() >= self.capacity_segments {
                return Arrival::Dropped;
            }
            let filled_gap = self.has_out_of_order();
            self.push_in_order(seq, payload.to_vec());
            self.drain_out_of_order();
            return Arrival::InOrder { filled_gap };
        }
        if self.out_of_order.contains_key(&seq) {
            return Arrival::Duplicate;
        }
        if self.out_of_order.len() >= self.max_out_of_order {
            return Arrival::Dropped;
        }
        self.out_of_order.insert(seq, payload.to_vec());
        Arrival::OutOfOrder
    }

    /// Appends the part of `[seq, seq + len)` at or after `next` to the queue.
    fn push_in_order(&mut self, seq: u64, mut payload: Vec<u8>) {
        let skip = usize::try_from(self.next.saturating_sub(seq)).unwrap_or(usize::MAX);
        if skip > 0 {
            payload.drain(..skip.min(payload.len()));
        }
        if payload.is_empty() {
            return;
        }
        self.next = self.next.saturating_add(payload.len() as u64);
        self.readable_bytes += payload.len();
        self.readable.push_back(payload);
    }

    /// Moves buffered segments that became contiguous into the queue while slots are free.
    fn drain_out_of_order(&mut self) {
        while self.readable.len() < self.capacity_segments {
            let Some(entry) = self.out_of_order.first_entry() else {
                return;
            };
            if *entry.key() > self.next {
                return;
            }
            let (seq, payload) = entry.remove_entry();
            self.push_in_order(seq, payload);
        }
    }

    /// Copies queued bytes into `buf`; returns how many.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut copied = 0;
        while copied < buf.len() {
            let Some(front) = self.readable.front() else {
                break;
            };
            let available = front.get(self.read_offset..).unwrap_or(&[]);
            let room = buf.get_mut(copied..).unwrap_or(&mut []);
            let n = available.len().min(room.len());
            if let (Some(dst), Some(src)) = (room.get_mut(..n), available.get(..n)) {
                dst.copy_from_slice(src);
            }
            copied += n;
            self.read_offset += n;
            if self.read_offset >= front.len() {
                self.readable.pop_front();
                self.read_offset = 0;
            }
        }
        self.readable_bytes -= copied;
        self.drain_out_of_order();
        copied
    }

    /// Takes up to `max` bytes of the front segment without copying when it fits whole.
    pub(crate) fn read_chunk(&mut self, max: usize) -> Option<Vec<u8>> {
        let front = self.readable.front_mut()?;
        let remaining = front.len().saturating_sub(self.read_offset);
        let chunk = if self.read_offset == 0 && remaining <= max {
            let whole = self.readable.pop_front().unwrap_or_default();
            self.read_offset = 0;
            whole
        } else {
            let take = remaining.min(max);
            let start = self.read_offset;
            let chunk = front.get(start..start + take).unwrap_or(&[]).to_vec();
            self.read_offset += take;
            if self.read_offset >= front.len() {
                self.readable.pop_front();
                self.read_offset = 0;
            }
            chunk
        };
        self.readable_bytes -= chunk.len();
        self.drain_out_of_order();
        Some(chunk)
    }

    /// The out-of-order data as at most four merged blocks, the highest ones (spec §8.5, V-NEW).
    pub(crate) fn sack_blocks(&self) -> SackBlocks {
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (&seq, payload) in &self.out_of_order {
            let end = seq.saturating_add(payload.len() as u64);
            match merged.last_mut() {
                Some(last) if seq <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((seq, end)),
            }
        }
        let skip = merged.len().saturating_sub(MAX_SACK_BLOCKS);
        let mut blocks = SackBlocks::new();
        for &(left, right) in merged.iter().skip(skip) {
            blocks.push(SackBlock {
                left: to_wire(left),
                right: to_wire(right),
            });
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn buffer(capacity: u16) -> ReceiveBuffer {
        ReceiveBuffer::new(capacity, 8, 1)
    }

    #[test]
    fn fresh_buffer_advertises_its_full_capacity() {
        assert_eq!(buffer(512).free_slots(), 512);
    }

    #[test]
    fn each_queued_segment_takes_one_slot_whatever_its_size() {
        let mut rx = buffer(4);
        assert_eq!(rx.insert(1, b"a"), Arrival::InOrder { filled_gap: false });
        assert_eq!(
            rx.insert(2, &[7; 1000]),
            Arrival::InOrder { filled_gap: false }
        );
        assert_eq!(rx.free_slots(), 2);
        assert_eq!(rx.readable_bytes(), 1001);
    }

    #[test]
    fn window_is_zero_only_when_truly_full_and_reopens_on_read() {
        let mut rx = buffer(2);
        rx.insert(1, b"ab");
        assert_ne!(rx.free_slots(), 0);
        rx.insert(3, b"cd");
        assert_eq!(rx.free_slots(), 0);
        assert_eq!(
            rx.insert(5, b"ef"),
            Arrival::Dropped,
            "full queue refuses in-order data"
        );
        let mut out = [0u8; 1];
        assert_eq!(rx.read(&mut out), 1);
        assert_eq!(
            rx.free_slots(),
            0,
            "a partly read segment still holds its slot"
        );
        let mut out = [0u8; 8];
        assert_eq!(rx.read(&mut out), 3);
        assert_eq!(&out[..3], b"bcd");
        assert_eq!(rx.free_slots(), 2);
    }

    #[test]
    fn out_of_order_segments_are_delivered_once_the_gap_fills() {
        let mut rx = buffer(8);
        assert_eq!(rx.insert(4, b"def"), Arrival::OutOfOrder);
        assert_eq!(rx.insert(4, b"def"), Arrival::Duplicate);
        assert_eq!(rx.insert(1, b"abc"), Arrival::InOrder { filled_gap: true });
        assert_eq!(rx.next(), 7);
        let mut out = [0u8; 6];
        assert_eq!(rx.read(&mut out), 6);
        assert_eq!(&out, b"abcdef");
        assert_eq!(rx.insert(2, b"bc"), Arrival::Duplicate);
    }

    #[test]
    fn overlapping_retransmission_delivers_only_new_bytes() {
        let mut rx = buffer(8);
        rx.insert(1, b"abc");
        assert_eq!(
            rx.insert(2, b"bcde"),
            Arrival::InOrder { filled_gap: false }
        );
        let mut out = [0u8; 8];
        assert_eq!(rx.read(&mut out), 5);
        assert_eq!(&out[..5], b"abcde");
    }

    #[test]
    fn out_of_order_buffer_is_bounded() {
        let mut rx = ReceiveBuffer::new(8, 2, 1);
        assert_eq!(rx.insert(10, b"x"), Arrival::OutOfOrder);
        assert_eq!(rx.insert(20, b"x"), Arrival::OutOfOrder);
        assert_eq!(rx.insert(30, b"x"), Arrival::Dropped);
    }

    #[test]
    fn oversized_segments_are_dropped() {
        let mut rx = buffer(8);
        assert_eq!(
            rx.insert(1, &[0; MAX_RECEIVE_SEGMENT_BYTES + 1]),
            Arrival::Dropped
        );
    }

    #[test]
    fn sack_merges_contiguous_segments_and_keeps_the_four_highest() {
        let mut rx = ReceiveBuffer::new(8, 16, 1);
        for seq in [10u64, 12, 20, 30, 40, 50] {
            rx.insert(seq, b"xx");
        }
        let blocks = rx.sack_blocks();
        let got: Vec<(u32, u32)> = blocks
            .as_slice()
            .iter()
            .map(|b| (b.left, b.right))
            .collect();
        // 10..12 and 12..14 merge; the lowest merged block (10..14) is left out.
        assert_eq!(got, [(20, 22), (30, 32), (40, 42), (50, 52)]);
    }

    #[test]
    fn read_chunk_hands_out_whole_segments_or_pieces() {
        let mut rx = buffer(8);
        rx.insert(1, b"hello");
        rx.insert(6, b"world");
        assert_eq!(rx.read_chunk(3).unwrap(), b"hel");
        assert_eq!(rx.read_chunk(100).unwrap(), b"lo");
        assert_eq!(rx.read_chunk(100).unwrap(), b"world");
        assert_eq!(rx.read_chunk(100), None);
        assert_eq!(rx.readable_bytes(), 0);
    }
}
