//! SACK blocks carried in the payload of a pure ACK (spec §8.5).
//!
//! ```text
//! "SACK" ‖ count (u8, 1..=4) ‖ count × { left (u32 BE) ‖ right (u32 BE) }
//! ```
//!
//! `left` is the first sequence number of a block of out-of-order data the receiver holds and
//! `right` the first one after it. There is no flag that says "this payload is SACK": a
//! receiver tries every non-empty pure-ACK payload as SACK first, so SACK is never put into a
//! segment that also carries data.

use super::error::StreamError;

/// The four bytes that open a SACK payload.
pub const SACK_MAGIC: [u8; 4] = *b"SACK";
/// Most blocks one SACK payload carries (spec §8.5).
pub const MAX_SACK_BLOCKS: usize = 4;
/// Bytes of the magic plus the count byte.
const SACK_HEADER_BYTES: usize = 5;
/// Bytes of one encoded block (left and right, u32 each).
const SACK_BLOCK_BYTES: usize = 8;

/// One received out-of-order range `[left, right)` in wire sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SackBlock {
    /// First sequence number of the block.
    pub left: u32,
    /// First sequence number after the block.
    pub right: u32,
}

/// Up to [`MAX_SACK_BLOCKS`] blocks, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SackBlocks {
    blocks: [SackBlock; MAX_SACK_BLOCKS],
    len: usize,
}

impl SackBlocks {
    /// No blocks.
    pub const fn new() -> Self {
        SackBlocks {
            blocks: [SackBlock { left: 0, right: 0 }; MAX_SACK_BLOCKS],
            len: 0,
        }
    }

    /// Appends a block; returns `false` (and keeps the list unchanged) when already full.
    pub fn push(&mut self, block: SackBlock) -> bool {
        match self.blocks.get_mut(self.len) {
            Some(slot) => {
                *slot = block;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The blocks, in the order they were pushed or decoded.
    pub fn as_slice(&self) -> &[SackBlock] {
        self.blocks.get(..self.len).unwrap_or(&[])
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes [`encode`](Self::encode) produces.
    pub fn encoded_len(&self) -> usize {
        SACK_HEADER_BYTES + SACK_BLOCK_BYTES * self.len
    }

    /// Appends the SACK payload to `out`. Encodes nothing for an empty list, since a count of 0
    /// is not valid on the wire.
    pub fn encode(&self, out: &mut alloc::vec::Vec<u8>) {
        if self.is_empty() {
            return;
        }
        out.reserve(self.encoded_len());
        out.extend_from_slice(&SACK_MAGIC);
        // len ≤ MAX_SACK_BLOCKS = 4, so it fits a byte.
        out.push(self.len as u8);
        for block in self.as_slice() {
            out.extend_from_slice(&block.left.to_be_bytes());
            out.extend_from_slice(&block.right.to_be_bytes());
        }
    }

    /// Decodes a SACK payload. Bytes after the last block are ignored, as the Go receivers do
    /// (spec §8.5).
    pub fn decode(payload: &[u8]) -> Result<SackBlocks, StreamError> {
        let (header, mut rest) = payload
            .split_at_checked(SACK_HEADER_BYTES)
            .ok_or(StreamError::SackTruncated)?;
        let (magic, count) = header.split_at(SACK_MAGIC.len());
        if magic != SACK_MAGIC {
            return Err(StreamError::SackBadMagic);
        }
        let count = usize::from(*count.first().ok_or(StreamError::SackTruncated)?);
        if !(1..=MAX_SACK_BLOCKS).contains(&count) {
            return Err(StreamError::SackBadCount);
        }
        let mut blocks = SackBlocks::new();
        for _ in 0..count {
            let (block, tail) = rest
                .split_at_checked(SACK_BLOCK_BYTES)
                .ok_or(StreamError::SackTruncated)?;
            let (left, right) = block.split_at(4);
            let left = u32::from_be_bytes(left.try_into().map_err(|_| StreamError::SackTruncated)?);
            let right =
                u32::from_be_bytes(right.try_into().map_err(|_| StreamError::SackTruncated)?);
            blocks.push(SackBlock { left, right });
            rest = tail;
        }
        Ok(blocks)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use alloc::vec::Vec;

    fn blocks(list: &[(u32, u32)]) -> SackBlocks {
        let mut out = SackBlocks::new();
        for &(left, right) in list {
            assert!(out.push(SackBlock { left, right }));
        }
        out
    }

    #[test]
    fn encodes_the_spec_layout_byte_for_byte() {
        let mut out = Vec::new();
        blocks(&[(0x0000_0401, 0x0000_0801), (0xFFFF_FF00, 0x0000_0010)]).encode(&mut out);
        let expected: &[u8] = &[
            b'S', b'A', b'C', b'K', 2, //
            0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x08, 0x01, //
            0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x10,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn round_trips_one_to_four_blocks() {
        let all = [(1, 2), (10, 20), (30, 40), (u32::MAX - 1, 5)];
        for n in 1..=4 {
            let original = blocks(&all[..n]);
            let mut out = Vec::new();
            original.encode(&mut out);
            assert_eq!(out.len(), original.encoded_len());
            assert_eq!(SackBlocks::decode(&out).unwrap(), original);
        }
    }

    #[test]
    fn a_fifth_block_is_refused() {
        let mut list = blocks(&[(1, 2), (3, 4), (5, 6), (7, 8)]);
        assert!(!list.push(SackBlock { left: 9, right: 10 }));
        assert_eq!(list.as_slice().len(), 4);
    }

    #[test]
    fn empty_list_encodes_nothing() {
        let mut out = Vec::new();
        SackBlocks::new().encode(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn decode_rejects_each_malformation_with_its_own_verdict() {
        assert_eq!(SackBlocks::decode(b"SACK"), Err(StreamError::SackTruncated));
        assert_eq!(
            SackBlocks::decode(b"SACX\x01abcdefgh"),
            Err(StreamError::SackBadMagic)
        );
        assert_eq!(
            SackBlocks::decode(b"SACK\x00abcdefgh"),
            Err(StreamError::SackBadCount)
        );
        assert_eq!(
            SackBlocks::decode(b"SACK\x05abcdefgh"),
            Err(StreamError::SackBadCount)
        );
        assert_eq!(
            SackBlocks::decode(b"SACK\x02abcdefgh1234"),
            Err(StreamError::SackTruncated)
        );
    }

    #[test]
    fn trailing_bytes_after_the_blocks_are_ignored_like_go() {
        let decoded = SackBlocks::decode(b"SACK\x01\0\0\0\x01\0\0\0\x09trailing").unwrap();
        assert_eq!(decoded.as_slice(), &[SackBlock { left: 1, right: 9 }]);
    }
}
