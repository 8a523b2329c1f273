//! Fuzzes the service codecs (spec §10.3, §10.4). The first byte picks the codec and how the
//! rest is split into segments; the rest is the stream. Checks: one-shot and incremental
//! decoding agree, and every accepted frame or event re-encodes to something that decodes to
//! the same value. Reply text parsing is fuzzed on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_core::services::dataexchange::{Frame, FrameDecoder, FrameType, Reply};
use pilot_core::services::eventstream::{Event, EventDecoder};

type OwnedFrame = (FrameType, Option<String>, Vec<u8>);

fn owned(frame: &Frame<'_>) -> OwnedFrame {
    let name = match frame {
        Frame::File { name, .. } => Some((*name).to_owned()),
        _ => None,
    };
    (frame.frame_type(), name, frame.body().to_vec())
}

fn data_exchange(stream: &[u8], segment: usize) {
    // One-shot, frame after frame.
    let mut expected = Vec::new();
    let mut rest = stream;
    let verdict = loop {
        if rest.is_empty() {
            break Ok(());
        }
        match Frame::decode(rest) {
            Ok((frame, used)) => {
                let mut again = Vec::new();
                frame
                    .encode(&mut again)
                    .expect("an accepted frame re-encodes");
                let (reparsed, _) = Frame::decode(&again).expect("a re-encoded frame decodes");
                assert_eq!(owned(&reparsed), owned(&frame));
                expected.push(owned(&frame));
                rest = &rest[used..];
            }
            Err(error) => break Err(error),
        }
    };

    // Incremental, in segments of `segment` bytes.
    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    let mut incremental = None;
    'feed: for chunk in stream.chunks(segment) {
        decoder.feed(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => got.push(owned(&frame)),
                Ok(None) => break,
                Err(error) => {
                    incremental = Some(Err(error));
                    break 'feed;
                }
            }
        }
    }
    let incremental = incremental.unwrap_or_else(|| decoder.finish());
    assert_eq!(got, expected);
    assert_eq!(incremental, verdict);

    if let Ok(reply) = Reply::parse(stream) {
        assert_eq!(Reply::parse(reply.to_string().as_bytes()), Ok(reply));
    }
}

fn event_stream(stream: &[u8], segment: usize) {
    let mut expected = Vec::new();
    let mut rest = stream;
    let verdict = loop {
        if rest.is_empty() {
            break Ok(());
        }
        match Event::decode(rest) {
            Ok((event, used)) => {
                let mut again = Vec::new();
                event
                    .encode(&mut again)
                    .expect("an accepted event re-encodes");
                assert_eq!(&again[..], &rest[..used]);
                expected.push((event.topic.to_vec(), event.payload.to_vec()));
                rest = &rest[used..];
            }
            Err(error) => break Err(error),
        }
    };

    let mut decoder = EventDecoder::new();
    let mut got = Vec::new();
    let mut incremental = None;
    'feed: for chunk in stream.chunks(segment) {
        decoder.feed(chunk);
        loop {
            match decoder.next_event() {
                Ok(Some(event)) => got.push((event.topic.to_vec(), event.payload.to_vec())),
                Ok(None) => break,
                Err(error) => {
                    incremental = Some(Err(error));
                    break 'feed;
                }
            }
        }
    }
    let incremental = incremental.unwrap_or_else(|| decoder.finish());
    assert_eq!(got, expected);
    assert_eq!(incremental, verdict);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let segment = usize::from(selector >> 1) + 1;
    if selector & 1 == 0 {
        data_exchange(stream, segment);
    } else {
        event_stream(stream, segment);
    }
});
