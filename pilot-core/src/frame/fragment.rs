//! PILF: splitting large tunnel frames and putting them back together (spec §3.8).
//!
//! Layout of one fragment:
//!
//! ```text
//! [0..4)   "PILF"
//! [4..8)   sender node ID (u32 BE; unauthenticated)
//! [8..12)  group ID (u32 BE)
//! [12]     index, 0-based
//! [13]     count, 2..=64
//! [14..)   chunk: exactly 1209 bytes except in the last fragment (1..=1209)
//! ```
//!
//! A frame longer than [`FRAGMENT_THRESHOLD`] is split so that each fragment, even wrapped in a
//! 9-byte relay envelope, fits the 1232 bytes of UDP payload the IPv6 minimum MTU leaves.
//! Fragment headers are not authenticated: the reassembled PILS/PILA is, so a reassembler only
//! has to stay bounded and never mix groups, not to trust anyone.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use super::MAGIC_PILF;
use crate::time::Instant;

/// Frames strictly longer than this many bytes are fragmented (spec §3.8: 1232 − 9).
pub const FRAGMENT_THRESHOLD: usize = 1223;
/// Bytes before the chunk: magic, sender, group ID, index, count.
pub const FRAGMENT_HEADER_LEN: usize = 14;
/// Chunk bytes in every fragment but the last (spec §3.8: 1223 − 14).
pub const FRAGMENT_CHUNK: usize = FRAGMENT_THRESHOLD - FRAGMENT_HEADER_LEN;
/// Fewest fragments in a group (a one-fragment group would be pointless).
pub const MIN_FRAGMENT_COUNT: u8 = 2;
/// Most fragments in a group.
pub const MAX_FRAGMENT_COUNT: u8 = 64;
/// Longest frame that can be fragmented, in bytes.
pub const MAX_FRAGMENTED_FRAME: usize = MAX_FRAGMENT_COUNT as usize * FRAGMENT_CHUNK;
/// An incomplete group is dropped this long after its first fragment arrived.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(3);
/// Incomplete groups held at once, over all sources.
pub const MAX_GROUPS: usize = 256;
/// Incomplete groups held at once for one source.
pub const MAX_GROUPS_PER_SOURCE: usize = 32;

/// Smallest fragment: header plus a one-byte chunk (spec §3.1).
const MIN_FRAGMENT_LEN: usize = FRAGMENT_HEADER_LEN + 1;

/// Why a fragment was refused, or a frame could not be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentError {
    /// Shorter than a header plus a one-byte chunk.
    TooShort {
        /// Length received.
        len: usize,
    },
    /// The first four bytes are not `PILF`.
    BadMagic,
    /// The count is below 2 or above 64.
    CountOutOfRange {
        /// Count from the header.
        count: u8,
    },
    /// The index is not below the count.
    IndexOutOfRange {
        /// Index from the header.
        index: u8,
        /// Count from the header.
        count: u8,
    },
    /// The chunk is longer than [`FRAGMENT_CHUNK`].
    ChunkTooLong {
        /// Chunk length.
        len: usize,
    },
    /// A fragment other than the last carries fewer than [`FRAGMENT_CHUNK`] bytes.
    ShortChunk {
        /// Index from the header.
        index: u8,
        /// Chunk length.
        len: usize,
    },
    /// A relay-delivered fragment names a sender other than the one the beacon reported.
    RelaySenderMismatch {
        /// Sender from the relay envelope.
        relay: u32,
        /// Sender from the fragment header.
        header: u32,
    },
    /// This index of the group has already arrived.
    Duplicate {
        /// Index from the header.
        index: u8,
    },
    /// The count differs from the one the group's first fragment declared.
    CountMismatch {
        /// Count of the group.
        expected: u8,
        /// Count from this fragment.
        got: u8,
    },
    /// The fragment would open a group while [`MAX_GROUPS`] are already incomplete.
    TooManyGroups,
    /// The fragment would open a group while its source already has
    /// [`MAX_GROUPS_PER_SOURCE`] incomplete.
    TooManyGroupsForSource,
    /// The reassembled frame is itself a PILF (spec §3.8: no nesting).
    NestedFragment,
    /// The reassembled frame is shorter than a magic.
    ReassembledTooShort {
        /// Reassembled length.
        len: usize,
    },
    /// The frame to send needs more than [`MAX_FRAGMENT_COUNT`] fragments.
    FrameTooLarge {
        /// Frame length.
        len: usize,
    },
}

impl fmt::Display for FragmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(
                    f,
                    "fragment too short: {len} bytes, need at least {MIN_FRAGMENT_LEN}"
                )
            }
            Self::BadMagic => f.write_str("fragment does not start with PILF"),
            Self::CountOutOfRange { count } => write!(
                f,
                "fragment count {count} outside {MIN_FRAGMENT_COUNT}..={MAX_FRAGMENT_COUNT}"
            ),
            Self::IndexOutOfRange { index, count } => {
                write!(f, "fragment index {index} not below count {count}")
            }
            Self::ChunkTooLong { len } => {
                write!(f, "fragment chunk of {len} bytes exceeds {FRAGMENT_CHUNK}")
            }
            Self::ShortChunk { index, len } => write!(
                f,
                "non-final fragment {index} carries {len} bytes instead of {FRAGMENT_CHUNK}"
            ),
            Self::RelaySenderMismatch { relay, header } => write!(
                f,
                "relay-delivered fragment claims sender {header}, beacon reported {relay}"
            ),
            Self::Duplicate { index } => write!(f, "fragment {index} already received"),
            Self::CountMismatch { expected, got } => {
                write!(
                    f,
                    "fragment count {got} differs from the group's {expected}"
                )
            }
            Self::TooManyGroups => write!(f, "{MAX_GROUPS} fragment groups already pending"),
            Self::TooManyGroupsForSource => write!(
                f,
                "{MAX_GROUPS_PER_SOURCE} fragment groups already pending for this source"
            ),
            Self::NestedFragment => f.write_str("reassembled frame is itself a fragment"),
            Self::ReassembledTooShort { len } => {
                write!(
                    f,
                    "reassembled frame of {len} bytes is shorter than a magic"
                )
            }
            Self::FrameTooLarge { len } => write!(
                f,
                "frame of {len} bytes exceeds the fragmentable maximum {MAX_FRAGMENTED_FRAME}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FragmentError {}

/// One decoded fragment, borrowing its chunk from the datagram.
///
/// Decoding already enforces every rule that concerns a single fragment: count range, index
/// below count, chunk sizes. Rules that concern a group live in [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Sender node ID from the header (a claim, not authenticated).
    pub sender: u32,
    /// Group ID shared by the fragments of one frame.
    pub group: u32,
    /// Position of this chunk, 0-based.
    pub index: u8,
    /// Number of fragments in the group.
    pub count: u8,
    /// The chunk bytes.
    pub chunk: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Decodes and checks one PILF frame.
    pub fn decode(frame: &'a [u8]) -> Result<Self, FragmentError> {
        let (magic, rest) = frame
            .split_first_chunk::<4>()
            .ok_or(FragmentError::TooShort { len: frame.len() })?;
        if *magic != MAGIC_PILF {
            return Err(FragmentError::BadMagic);
        }
        if frame.len() < MIN_FRAGMENT_LEN {
            return Err(FragmentError::TooShort { len: frame.len() });
        }
        let (fixed, chunk) = rest
            .split_first_chunk::<10>()
            .ok_or(FragmentError::TooShort { len: frame.len() })?;
        let [s0, s1, s2, s3, g0, g1, g2, g3, index, count] = *fixed;

        let fragment = Fragment {
            sender: u32::from_be_bytes([s0, s1, s2, s3]),
            group: u32::from_be_bytes([g0, g1, g2, g3]),
            index,
            count,
            chunk,
        };
        fragment.check()?;
        Ok(fragment)
    }

    /// Appends the wire form of this fragment to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(FRAGMENT_HEADER_LEN + self.chunk.len());
        out.extend_from_slice(&MAGIC_PILF);
        out.extend_from_slice(&self.sender.to_be_bytes());
        out.extend_from_slice(&self.group.to_be_bytes());
        out.push(self.index);
        out.push(self.count);
        out.extend_from_slice(self.chunk);
    }

    /// Whether this is the last fragment of its group.
    pub fn is_last(&self) -> bool {
        u16::from(self.index) + 1 == u16::from(self.count)
    }

    /// The per-fragment rules of spec §3.8.
    fn check(&self) -> Result<(), FragmentError> {
        let (index, count) = (self.index, self.count);
        if !(MIN_FRAGMENT_COUNT..=MAX_FRAGMENT_COUNT).contains(&count) {
            return Err(FragmentError::CountOutOfRange { count });
        }
        if index >= count {
            return Err(FragmentError::IndexOutOfRange { index, count });
        }
        let len = self.chunk.len();
        if len > FRAGMENT_CHUNK {
            return Err(FragmentError::ChunkTooLong { len });
        }
        // Every chunk but the last is full, so the position of a chunk follows from its index
        // and a group never needs more than count × FRAGMENT_CHUNK bytes.
        if !self.is_last() && len != FRAGMENT_CHUNK {
            return Err(FragmentError::ShortChunk { index, len });
        }
        Ok(())
    }
}

/// What to send for one outgoing frame.
#[derive(Debug)]
pub enum Split<'a> {
    /// The frame fits in one datagram; send it as is.
    Whole(&'a [u8]),
    /// The frame was split; send every fragment the iterator yields.
    Fragments(Fragments<'a>),
}

/// The fragments of one frame, produced lazily in index order.
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    sender: u32,
    group: u32,
    count: u8,
    next_index: u8,
    chunks: core::slice::Chunks<'a, u8>,
}

impl Fragments<'_> {
    /// The group ID every fragment of this frame carries.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The number of fragments of this frame (named apart from `Iterator::count`, which would
    /// consume the iterator).
    pub fn fragment_count(&self) -> u8 {
        self.count
    }
}

impl Iterator for Fragments<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let chunk = self.chunks.next()?;
        let fragment = Fragment {
            sender: self.sender,
            group: self.group,
            index: self.next_index,
            count: self.count,
            chunk,
        };
        self.next_index = self.next_index.wrapping_add(1);
        let mut out = Vec::new();
        fragment.encode(&mut out);
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Fragments<'_> {}

/// Splits outgoing frames, numbering the groups from a caller-chosen seed.
#[derive(Debug, Clone)]
pub struct Fragmenter {
    next_group: u32,
}

impl Fragmenter {
    /// A fragmenter whose first group ID is `seed`.
    ///
    /// Spec §3.8: the counter is per process and seeded randomly, so that group IDs of a
    /// restarted node do not collide with fragments of its previous run still in flight.
    pub fn new(seed: u32) -> Self {
        Self { next_group: seed }
    }

    /// Splits `frame` if it is longer than [`FRAGMENT_THRESHOLD`]; `sender` is our node ID.
    ///
    /// A group ID is used up only when the frame is actually split.
    pub fn split<'a>(&mut self, sender: u32, frame: &'a [u8]) -> Result<Split<'a>, FragmentError> {
        if frame.len() <= FRAGMENT_THRESHOLD {
            return Ok(Split::Whole(frame));
        }
        let count = u8::try_from(frame.len().div_ceil(FRAGMENT_CHUNK))
            .ok()
            .filter(|count| *count <= MAX_FRAGMENT_COUNT)
            .ok_or(FragmentError::FrameTooLarge { len: frame.len() })?;

        let group = self.next_group;
        self.next_group = self.next_group.wrapping_add(1);
        Ok(Split::Fragments(Fragments {
            sender,
            group,
            count,
            next_index: 0,
            chunks: frame.chunks(FRAGMENT_CHUNK),
        }))
    }
}

/// Identifies one group: (actual source, claimed sender, group ID), spec §3.8.
type GroupKey<S> = (S, u32, u32);

/// An incomplete group.
#[derive(Debug)]
struct Group {
    /// When the first fragment arrived; the group expires [`REASSEMBLY_TIMEOUT`] later.
    started: Instant,
    count: u8,
    /// Bit `i` is set once fragment `i` has arrived.
    received: u64,
    /// Chunks by index; only received ones hold memory.
    chunks: Vec<Vec<u8>>,
    /// Sum of the received chunk lengths.
    bytes: usize,
}

impl Group {
    fn new(started: Instant, count: u8) -> Self {
        Self {
            started,
            count,
            received: 0,
            chunks: vec![Vec::new(); usize::from(count)],
            bytes: 0,
        }
    }

    fn deadline(&self) -> Instant {
        self.started + REASSEMBLY_TIMEOUT
    }

    fn is_complete(&self) -> bool {
        // count ≤ 64; for count == 64 the shift overflows and every bit is wanted.
        let all = 1u64
            .checked_shl(u32::from(self.count))
            .map_or(u64::MAX, |bit| bit - 1);
        self.received == all
    }

    /// Stores one checked fragment of this group.
    fn insert(&mut self, fragment: &Fragment<'_>) -> Result<(), FragmentError> {
        if fragment.count != self.count {
            return Err(FragmentError::CountMismatch {
                expected: self.count,
                got: fragment.count,
            });
        }
        // Decoding guaranteed index < count ≤ 64; the mask keeps the shift in range regardless.
        let bit = 1u64 << (fragment.index & 63);
        if self.received & bit != 0 {
            return Err(FragmentError::Duplicate {
                index: fragment.index,
            });
        }
        let slot = self.chunks.get_mut(usize::from(fragment.index)).ok_or(
            FragmentError::IndexOutOfRange {
                index: fragment.index,
                count: self.count,
            },
        )?;
        slot.extend_from_slice(fragment.chunk);
        self.bytes += fragment.chunk.len();
        self.received |= bit;
        Ok(())
    }

    fn assemble(self) -> Vec<u8> {
        self.chunks.concat()
    }
}

/// Reassembles PILF groups, bounded in groups, bytes and time.
///
/// `S` names the path a fragment arrived on: the UDP source address for direct traffic, and
/// for relay-delivered traffic a value standing for `relay:<beacon-reported sender>` (spec
/// §3.8), so that fragments of one sender over two paths never mix.
///
/// When the group table is full (256 overall or 32 for the source), a fragment that would open
/// a new group is refused and the pending groups are kept. Evicting the oldest instead would
/// let a flood of one-fragment groups destroy every honest reassembly in progress; refusing
/// only delays new groups until the pending ones complete or expire (at most 3 s). The
/// per-source limit keeps one UDP source from filling the table on its own; relay-delivered
/// fragments can name any sender, so over the relay the overall limit is the only bound.
///
/// Memory: a group holds only the chunks received, at most `count × 1209` bytes, so the whole
/// table never holds more than `256 × 64 × 1209` bytes (about 19.8 MB) of chunks.
#[derive(Debug)]
pub struct Reassembler<S> {
    groups: BTreeMap<GroupKey<S>, Group>,
}

impl<S: Ord + Clone> Default for Reassembler<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Ord + Clone> Reassembler<S> {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self {
            groups: BTreeMap::new(),
        }
    }

    /// Accepts one PILF frame that arrived from `source` at `now`.
    ///
    /// `relay_sender` is the sender of the relay envelope (beacon message 0x06) when the
    /// fragment was relay-delivered, `None` when it came directly. Returns the reassembled
    /// frame once the group is complete, `Ok(None)` while it is not. Groups expired by `now` are
    /// dropped first, whatever the verdict on this fragment, so a late fragment of an expired
    /// group starts a new one.
    pub fn push(
        &mut self,
        source: S,
        relay_sender: Option<u32>,
        frame: &[u8],
        now: Instant,
    ) -> Result<Option<Vec<u8>>, FragmentError> {
        self.expire(now);

        let fragment = Fragment::decode(frame)?;
        if let Some(relay) = relay_sender {
            if relay != fragment.sender {
                return Err(FragmentError::RelaySenderMismatch {
                    relay,
                    header: fragment.sender,
                });
            }
        }

        let key = (source, fragment.sender, fragment.group);
        if !self.groups.contains_key(&key) {
            self.check_room_for(&key.0)?;
        }
        let group = self
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group::new(now, fragment.count));
        group.insert(&fragment)?;
        if !group.is_complete() {
            return Ok(None);
        }

        let Some(group) = self.groups.remove(&key) else {
            return Ok(None);
        };
        let reassembled = group.assemble();
        // Full non-final chunks make a reassembled frame at least 1210 bytes long; the length
        // check stays so that the rule of spec §3.8 does not rest on that arithmetic.
        match reassembled.first_chunk::<4>() {
            None => Err(FragmentError::ReassembledTooShort {
                len: reassembled.len(),
            }),
            Some(magic) if *magic == MAGIC_PILF => Err(FragmentError::NestedFragment),
            Some(_) => Ok(Some(reassembled)),
        }
    }

    /// Drops every group whose [`REASSEMBLY_TIMEOUT`] has run out by `now`.
    pub fn expire(&mut self, now: Instant) {
        self.groups.retain(|_, group| group.deadline() > now);
    }

    /// When the next pending group expires; `None` when nothing is pending.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.groups.values().map(Group::deadline).min()
    }

    /// Number of incomplete groups held.
    pub fn pending_groups(&self) -> usize {
        self.groups.len()
    }

    /// Chunk bytes held by incomplete groups; never above `MAX_GROUPS × MAX_FRAGMENTED_FRAME`.
    pub fn buffered_bytes(&self) -> usize {
        self.groups.values().map(|group| group.bytes).sum()
    }

    /// Refuses a new group when either limit is reached.
    fn check_room_for(&self, source: &S) -> Result<(), FragmentError> {
        if self.groups.len() >= MAX_GROUPS {
            return Err(FragmentError::TooManyGroups);
        }
        let low = (source.clone(), 0, 0);
        let high = (source.clone(), u32::MAX, u32::MAX);
        if self.groups.range(low..=high).count() >= MAX_GROUPS_PER_SOURCE {
            return Err(FragmentError::TooManyGroupsForSource);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    const SENDER: u32 = 0x0001_0203;
    const T0: Instant = Instant::from_millis(1_000);

    fn frame_of(len: usize) -> Vec<u8> {
        let mut frame = b"PILS".to_vec();
        frame.extend((0..len - 4).map(|i| (i % 251) as u8));
        frame
    }

    fn split(frame: &[u8], seed: u32) -> Vec<Vec<u8>> {
        match Fragmenter::new(seed).split(SENDER, frame).unwrap() {
            Split::Fragments(fragments) => fragments.collect(),
            Split::Whole(_) => panic!("expected fragments"),
        }
    }

    fn raw(sender: u32, group: u32, index: u8, count: u8, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Fragment {
            sender,
            group,
            index,
            count,
            chunk,
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn frames_up_to_the_threshold_are_sent_whole() {
        let frame = frame_of(FRAGMENT_THRESHOLD);
        let mut fragmenter = Fragmenter::new(7);
        match fragmenter.split(SENDER, &frame).unwrap() {
            Split::Whole(whole) => assert_eq!(whole, &frame[..]),
            Split::Fragments(_) => panic!("must not fragment"),
        }
        // No group ID was used up: the next split still gets the seed.
        match fragmenter
            .split(SENDER, &frame_of(FRAGMENT_THRESHOLD + 1))
            .unwrap()
        {
            Split::Fragments(fragments) => assert_eq!(fragments.group(), 7),
            Split::Whole(_) => panic!("must fragment"),
        }
    }

    #[test]
    fn every_fragment_fits_the_ipv6_minimum_mtu_with_a_relay_envelope() {
        for fragment in split(&frame_of(4166), 0) {
            assert!(
                fragment.len() + 9 <= 1232,
                "fragment of {} bytes",
                fragment.len()
            );
        }
    }

    #[test]
    fn a_4166_byte_frame_makes_four_fragments_with_full_chunks_first() {
        let fragments = split(&frame_of(4166), 0xdead_beef);
        assert_eq!(fragments.len(), 4);
        for (i, bytes) in fragments.iter().enumerate() {
            let fragment = Fragment::decode(bytes).unwrap();
            assert_eq!((fragment.index, fragment.count), (i as u8, 4));
            assert_eq!(fragment.group, 0xdead_beef);
            assert_eq!(fragment.sender, SENDER);
        }
        assert_eq!(fragments[0].len(), FRAGMENT_THRESHOLD);
        assert_eq!(
            fragments[3].len(),
            FRAGMENT_HEADER_LEN + 4166 - 3 * FRAGMENT_CHUNK
        );
    }

    #[test]
    fn group_ids_count_up_and_wrap() {
        let frame = frame_of(2000);
        let mut fragmenter = Fragmenter::new(u32::MAX);
        let mut group = || match fragmenter.split(SENDER, &frame).unwrap() {
            Split::Fragments(fragments) => fragments.group(),
            Split::Whole(_) => panic!("must fragment"),
        };
        assert_eq!(group(), u32::MAX);
        assert_eq!(group(), 0);
        assert_eq!(group(), 1);
    }

    #[test]
    fn the_largest_fragmentable_frame_takes_64_fragments_and_one_more_byte_is_refused() {
        assert_eq!(split(&frame_of(MAX_FRAGMENTED_FRAME), 0).len(), 64);
        let too_big = frame_of(MAX_FRAGMENTED_FRAME + 1);
        assert_eq!(
            Fragmenter::new(0).split(SENDER, &too_big).err(),
            Some(FragmentError::FrameTooLarge {
                len: MAX_FRAGMENTED_FRAME + 1
            })
        );
    }

    #[test]
    fn decode_rejects_each_malformed_header_with_its_own_verdict() {
        let full = [0u8; FRAGMENT_CHUNK];
        assert_eq!(
            Fragment::decode(b"PILF"),
            Err(FragmentError::TooShort { len: 4 })
        );
        assert_eq!(
            Fragment::decode(&raw(1, 1, 0, 2, &[])),
            Err(FragmentError::TooShort { len: 14 })
        );
        let mut wrong = raw(1, 1, 0, 2, &full);
        wrong[3] = b'T';
        assert_eq!(Fragment::decode(&wrong), Err(FragmentError::BadMagic));
        assert_eq!(
            Fragment::decode(&raw(1, 1, 0, 1, &[1])),
            Err(FragmentError::CountOutOfRange { count: 1 })
        );
        assert_eq!(
            Fragment::decode(&raw(1, 1, 0, 65, &full)),
            Err(FragmentError::CountOutOfRange { count: 65 })
        );
        assert_eq!(
            Fragment::decode(&raw(1, 1, 2, 2, &[1])),
            Err(FragmentError::IndexOutOfRange { index: 2, count: 2 })
        );
        assert_eq!(
            Fragment::decode(&raw(1, 1, 1, 2, &[0; FRAGMENT_CHUNK + 1])),
            Err(FragmentError::ChunkTooLong {
                len: FRAGMENT_CHUNK + 1
            })
        );
        assert_eq!(
            Fragment::decode(&raw(1, 1, 0, 2, &[0; 100])),
            Err(FragmentError::ShortChunk { index: 0, len: 100 })
        );
    }

    #[test]
    fn fragments_in_reverse_order_reassemble_the_frame() {
        let frame = frame_of(5000);
        let mut reassembler = Reassembler::new();
        let fragments = split(&frame, 9);
        let (first, rest) = fragments.split_first().unwrap();
        for fragment in rest.iter().rev() {
            assert_eq!(reassembler.push(1u8, None, fragment, T0), Ok(None));
        }
        assert_eq!(reassembler.push(1u8, None, first, T0), Ok(Some(frame)));
        assert_eq!(reassembler.pending_groups(), 0);
        assert_eq!(reassembler.buffered_bytes(), 0);
        assert_eq!(reassembler.next_expiry(), None);
    }

    #[test]
    fn a_duplicate_fragment_is_refused_and_the_group_still_completes() {
        let frame = frame_of(3000);
        let fragments = split(&frame, 1);
        let mut reassembler = Reassembler::new();
        assert_eq!(reassembler.push(1u8, None, &fragments[0], T0), Ok(None));
        assert_eq!(
            reassembler.push(1u8, None, &fragments[0], T0),
            Err(FragmentError::Duplicate { index: 0 })
        );
        assert_eq!(reassembler.buffered_bytes(), FRAGMENT_CHUNK);
        assert_eq!(reassembler.push(1u8, None, &fragments[1], T0), Ok(None));
        assert_eq!(
            reassembler.push(1u8, None, &fragments[2], T0),
            Ok(Some(frame))
        );
    }

    #[test]
    fn a_fragment_with_another_count_is_refused() {
        let full = [0u8; FRAGMENT_CHUNK];
        let mut reassembler = Reassembler::new();
        assert_eq!(
            reassembler.push(1u8, None, &raw(5, 5, 0, 3, &full), T0),
            Ok(None)
        );
        assert_eq!(
            reassembler.push(1u8, None, &raw(5, 5, 1, 2, &[1]), T0),
            Err(FragmentError::CountMismatch {
                expected: 3,
                got: 2
            })
        );
    }

    #[test]
    fn fragments_from_different_sources_do_not_mix() {
        let frame = frame_of(2000);
        let fragments = split(&frame, 1);
        let mut reassembler = Reassembler::new();
        assert_eq!(reassembler.push(1u8, None, &fragments[0], T0), Ok(None));
        assert_eq!(reassembler.push(2u8, None, &fragments[1], T0), Ok(None));
        assert_eq!(reassembler.pending_groups(), 2);
        assert_eq!(
            reassembler.push(1u8, None, &fragments[1], T0),
            Ok(Some(frame))
        );
    }

    #[test]
    fn a_relay_fragment_must_name_the_beacon_reported_sender() {
        let fragments = split(&frame_of(2000), 1);
        let mut reassembler = Reassembler::new();
        assert_eq!(
            reassembler.push(0u8, Some(SENDER + 1), &fragments[0], T0),
            Err(FragmentError::RelaySenderMismatch {
                relay: SENDER + 1,
                header: SENDER
            })
        );
        assert_eq!(reassembler.pending_groups(), 0);
        assert_eq!(
            reassembler.push(0u8, Some(SENDER), &fragments[0], T0),
            Ok(None)
        );
    }

    #[test]
    fn an_incomplete_group_expires_three_seconds_after_its_first_fragment() {
        let frame = frame_of(2000);
        let fragments = split(&frame, 1);
        let mut reassembler = Reassembler::new();
        assert_eq!(reassembler.push(1u8, None, &fragments[0], T0), Ok(None));
        assert_eq!(reassembler.next_expiry(), Some(T0 + REASSEMBLY_TIMEOUT));

        reassembler.expire(T0 + (REASSEMBLY_TIMEOUT - Duration::from_micros(1)));
        assert_eq!(reassembler.pending_groups(), 1);
        reassembler.expire(T0 + REASSEMBLY_TIMEOUT);
        assert_eq!(reassembler.pending_groups(), 0);

        // The second half alone now opens a new group instead of completing the old one.
        let late = T0 + REASSEMBLY_TIMEOUT;
        assert_eq!(reassembler.push(1u8, None, &fragments[1], late), Ok(None));
    }

    #[test]
    fn push_drops_expired_groups_before_matching() {
        let fragments = split(&frame_of(2000), 1);
        let mut reassembler = Reassembler::new();
        assert_eq!(reassembler.push(1u8, None, &fragments[0], T0), Ok(None));
        let late = T0 + REASSEMBLY_TIMEOUT + Duration::from_millis(1);
        assert_eq!(reassembler.push(1u8, None, &fragments[1], late), Ok(None));
        assert_eq!(reassembler.next_expiry(), Some(late + REASSEMBLY_TIMEOUT));
    }

    #[test]
    fn a_source_may_hold_32_groups_and_the_33rd_is_refused() {
        let full = [0u8; FRAGMENT_CHUNK];
        let mut reassembler = Reassembler::new();
        for group in 0..MAX_GROUPS_PER_SOURCE as u32 {
            assert_eq!(
                reassembler.push(1u8, None, &raw(5, group, 0, 2, &full), T0),
                Ok(None)
            );
        }
        assert_eq!(
            reassembler.push(1u8, None, &raw(5, 999, 0, 2, &full), T0),
            Err(FragmentError::TooManyGroupsForSource)
        );
        // Another source is unaffected, and the pending groups still complete.
        assert_eq!(
            reassembler.push(2u8, None, &raw(5, 999, 0, 2, &full), T0),
            Ok(None)
        );
        let mut whole = full.to_vec();
        whole.push(7);
        assert_eq!(
            reassembler.push(1u8, None, &raw(5, 0, 1, 2, &[7]), T0),
            Ok(Some(whole))
        );
    }

    #[test]
    fn the_table_holds_256_groups_and_refuses_a_new_one() {
        let full = [0u8; FRAGMENT_CHUNK];
        let mut reassembler = Reassembler::new();
        for source in 0..(MAX_GROUPS / MAX_GROUPS_PER_SOURCE) as u32 {
            for group in 0..MAX_GROUPS_PER_SOURCE as u32 {
                let fragment = raw(5, group, 0, 2, &full);
                assert_eq!(reassembler.push(source, None, &fragment, T0), Ok(None));
            }
        }
        assert_eq!(reassembler.pending_groups(), MAX_GROUPS);
        assert_eq!(
            reassembler.push(1000, None, &raw(5, 0, 0, 2, &full), T0),
            Err(FragmentError::TooManyGroups)
        );
        // Once they expire there is room again.
        let later = T0 + REASSEMBLY_TIMEOUT;
        assert_eq!(
            reassembler.push(1000, None, &raw(5, 0, 0, 2, &full), later),
            Ok(None)
        );
        assert_eq!(reassembler.pending_groups(), 1);
    }

    #[test]
    fn a_reassembled_fragment_is_refused() {
        let mut nested = b"PILF".to_vec();
        nested.resize(2000, 0);
        let fragments = split(&nested, 1);
        let mut reassembler = Reassembler::new();
        assert_eq!(reassembler.push(1u8, None, &fragments[0], T0), Ok(None));
        assert_eq!(
            reassembler.push(1u8, None, &fragments[1], T0),
            Err(FragmentError::NestedFragment)
        );
        assert_eq!(reassembler.pending_groups(), 0);
    }
}
