//! Property tests for the service codecs (spec §10.3, §10.4): no panics on arbitrary bytes,
//! round trips, and the incremental decoders giving the same frames and the same final
//! verdict as repeated one-shot decoding, however the stream is split.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use pilot_core::services::dataexchange::{
    DataExchangeError, Frame, FrameDecoder, FrameType, Reply,
};
use pilot_core::services::eventstream::{Event, EventDecoder, EventStreamError};
use proptest::collection::vec;
use proptest::prelude::*;

/// A frame detached from its buffer.
type OwnedFrame = (FrameType, Option<String>, Vec<u8>);

/// An event detached from its buffer: topic and payload.
type OwnedEvent = (Vec<u8>, Vec<u8>);

/// Everything a stream decoded into: the items in order, then the final verdict.
type Outcome<T, E> = (Vec<T>, Result<(), E>);

fn owned_frame(frame: &Frame<'_>) -> OwnedFrame {
    let name = match frame {
        Frame::File { name, .. } => Some((*name).to_owned()),
        _ => None,
    };
    (frame.frame_type(), name, frame.body().to_vec())
}

fn frame_of(owned: &OwnedFrame) -> Frame<'_> {
    let (frame_type, name, body) = owned;
    match frame_type {
        FrameType::Text => Frame::Text(body),
        FrameType::Binary => Frame::Binary(body),
        FrameType::Json => Frame::Json(body),
        FrameType::File => Frame::File {
            name: name.as_deref().unwrap_or(""),
            data: body,
        },
        FrameType::Other(frame_type) => Frame::Other {
            frame_type: *frame_type,
            payload: body,
        },
    }
}

/// Frames the encoder accepts: any type, file names obeying the rules.
fn any_frame() -> impl Strategy<Value = OwnedFrame> {
    (
        any::<u32>(),
        "[a-zA-Z0-9 _.é-]{0,40}",
        vec(any::<u8>(), 0..300),
    )
        .prop_filter_map("file name rules", |(raw_type, name, body)| {
            let frame_type = FrameType::from(raw_type % 6);
            let name = (frame_type == FrameType::File).then_some(name);
            if let Some(name) = &name {
                if name == "." || name.contains("..") {
                    return None;
                }
            }
            Some((frame_type, name, body))
        })
}

fn any_event() -> impl Strategy<Value = OwnedEvent> {
    (vec(any::<u8>(), 0..64), vec(any::<u8>(), 0..300))
}

/// Cuts `bytes` into consecutive chunks whose sizes cycle through `sizes`.
fn split<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(size);
        chunks.push(chunk);
        rest = tail;
        i += 1;
    }
    chunks
}

/// Data exchange by repeated one-shot decoding: the frames, then the final verdict.
fn frames_one_shot(mut bytes: &[u8]) -> Outcome<OwnedFrame, DataExchangeError> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        match Frame::decode(bytes) {
            Ok((frame, used)) => {
                frames.push(owned_frame(&frame));
                bytes = &bytes[used..];
            }
            Err(error) => return (frames, Err(error)),
        }
    }
    (frames, Ok(()))
}

/// Data exchange through the incremental decoder, fed in the given chunks.
fn frames_incremental(chunks: &[&[u8]]) -> Outcome<OwnedFrame, DataExchangeError> {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(owned_frame(&frame)),
                Ok(None) => break,
                Err(error) => return (frames, Err(error)),
            }
        }
    }
    (frames, decoder.finish())
}

fn events_one_shot(mut bytes: &[u8]) -> Outcome<OwnedEvent, EventStreamError> {
    let mut events = Vec::new();
    while !bytes.is_empty() {
        match Event::decode(bytes) {
            Ok((event, used)) => {
                events.push((event.topic.to_vec(), event.payload.to_vec()));
                bytes = &bytes[used..];
            }
            Err(error) => return (events, Err(error)),
        }
    }
    (events, Ok(()))
}

fn events_incremental(chunks: &[&[u8]]) -> Outcome<OwnedEvent, EventStreamError> {
    let mut decoder = EventDecoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk);
        loop {
            match decoder.next_event() {
                Ok(Some(event)) => events.push((event.topic.to_vec(), event.payload.to_vec())),
                Ok(None) => break,
                Err(error) => return (events, Err(error)),
            }
        }
    }
    (events, decoder.finish())
}

proptest! {
    #[test]
    fn data_exchange_decode_never_panics(bytes in vec(any::<u8>(), 0..300)) {
        if let Ok((frame, used)) = Frame::decode(&bytes) {
            prop_assert!(used <= bytes.len());
            // Whatever was accepted re-encodes to something that decodes to the same frame.
            let mut again = Vec::new();
            frame.encode(&mut again).unwrap();
            let (reparsed, _) = Frame::decode(&again).unwrap();
            prop_assert_eq!(owned_frame(&reparsed), owned_frame(&frame));
        }
    }

    #[test]
    fn data_exchange_round_trips(frame in any_frame()) {
        let mut wire = Vec::new();
        frame_of(&frame).encode(&mut wire).unwrap();
        prop_assert_eq!(wire.len(), frame_of(&frame).encoded_len());
        let (decoded, used) = Frame::decode(&wire).unwrap();
        prop_assert_eq!(used, wire.len());
        // An empty file name decodes as such; the encoder wrote a zero-length prefix.
        prop_assert_eq!(owned_frame(&decoded), frame);
    }

    #[test]
    fn data_exchange_split_does_not_change_the_result(
        frames in vec(any_frame(), 0..5),
        garbage in vec(any::<u8>(), 0..20),
        sizes in vec(1usize..40, 1..8),
    ) {
        let mut wire = Vec::new();
        for frame in &frames {
            frame_of(frame).encode(&mut wire).unwrap();
        }
        wire.extend_from_slice(&garbage);
        let chunks = split(&wire, &sizes);
        prop_assert_eq!(frames_incremental(&chunks), frames_one_shot(&wire));
    }

    #[test]
    fn data_exchange_split_of_arbitrary_bytes_does_not_change_the_result(
        bytes in vec(any::<u8>(), 0..200),
        sizes in vec(1usize..40, 1..8),
    ) {
        prop_assert_eq!(frames_incremental(&split(&bytes, &sizes)), frames_one_shot(&bytes));
    }

    #[test]
    fn reply_text_round_trips(frame in any_frame()) {
        let reply = Reply::ack(&frame_of(&frame));
        let text = reply.to_string();
        prop_assert_eq!(Reply::parse(text.as_bytes()), Ok(reply));
    }

    #[test]
    fn reply_parse_never_panics(bytes in vec(any::<u8>(), 0..40)) {
        let _ = Reply::parse(&bytes);
    }

    #[test]
    fn event_decode_never_panics(bytes in vec(any::<u8>(), 0..300)) {
        if let Ok((event, used)) = Event::decode(&bytes) {
            prop_assert_eq!(used, event.encoded_len());
            let mut again = Vec::new();
            event.encode(&mut again).unwrap();
            prop_assert_eq!(&again[..], &bytes[..used]);
        }
    }

    #[test]
    fn event_round_trips((topic, payload) in any_event()) {
        let mut wire = Vec::new();
        Event::new(&topic, &payload).encode(&mut wire).unwrap();
        prop_assert_eq!(Event::decode(&wire), Ok((Event::new(&topic, &payload), wire.len())));
    }

    #[test]
    fn event_split_does_not_change_the_result(
        events in vec(any_event(), 0..5),
        garbage in vec(any::<u8>(), 0..20),
        sizes in vec(1usize..40, 1..8),
    ) {
        let mut wire = Vec::new();
        for (topic, payload) in &events {
            Event::new(topic, payload).encode(&mut wire).unwrap();
        }
        wire.extend_from_slice(&garbage);
        let (decoded, _) = events_one_shot(&wire);
        prop_assert_eq!(&decoded[..events.len()], &events[..]);
        prop_assert_eq!(events_incremental(&split(&wire, &sizes)), events_one_shot(&wire));
    }
}
