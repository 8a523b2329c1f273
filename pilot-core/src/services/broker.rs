//! Event stream broker, virtual port 1002 (spec §10.4), and the client's byte builders.
//!
//! The first event on a connection is its subscription: its topic (`*` for every topic) is
//! the one topic of that connection, its payload is ignored. Every later event is a publish,
//! forwarded to every *other* connection subscribed to the same topic or to `*`; never back to
//! the publisher. Closing a connection removes its subscription.
//!
//! Bounds and the slow-subscriber policy:
//! * at most [`BrokerConfig::max_connections`] connections ([`BrokerError::TooManyConnections`]
//!   at [`Broker::open`]);
//! * a connection holds at most one partial event on input (the codec refuses lengths over its
//!   limits from the length fields alone);
//! * each forwarded event is handed out once as shared bytes ([`Arc`]) and counted against the
//!   subscriber until the host reports it taken by the transport ([`Broker::written`]). An event
//!   that would take a subscriber's unflushed bytes above
//!   [`BrokerConfig::max_unflushed_bytes`] is not queued: the subscriber is dropped with
//!   [`CloseReason::SlowSubscriber`] and the host closes its connection. A subscriber with
//!   nothing unflushed always takes the next event, so one event larger than the limit still
//!   reaches an idle subscriber; per connection at most the limit plus one event is pending.
//!   Dropping the slow subscriber (rather than blocking the publisher or discarding events
//!   silently) keeps every publisher independent of the slowest reader, and the subscriber
//!   learns of the loss from the closed connection.
//!
//! Finding the receivers of a publish walks all connections: with the connection cap that is
//! a bounded scan, and there is no second index to keep consistent.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use super::eventstream::{Event, EventDecoder, EventStreamError, WILDCARD_TOPIC};
use super::ConnId;

/// Default for [`BrokerConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Default for [`BrokerConfig::max_unflushed_bytes`] (1 MiB).
pub const DEFAULT_MAX_UNFLUSHED_BYTES: usize = 1024 * 1024;

/// Limits of a [`Broker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most bytes forwarded to one subscriber and not yet reported written before the
    /// subscriber is dropped as too slow (see the [module docs](self)).
    pub max_unflushed_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_unflushed_bytes: DEFAULT_MAX_UNFLUSHED_BYTES,
        }
    }
}

/// Why the broker refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerError {
    /// [`BrokerConfig::max_connections`] connections are already open.
    TooManyConnections,
    /// The connection is already open at the broker.
    AlreadyOpen,
    /// The connection is not open at the broker (never opened, closed, or dropped).
    UnknownConnection,
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::TooManyConnections => f.write_str("event broker connection limit reached"),
            BrokerError::AlreadyOpen => f.write_str("event broker connection already open"),
            BrokerError::UnknownConnection => f.write_str("event broker connection not open"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BrokerError {}

/// Why the broker dropped a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The connection's byte stream is not a valid event stream.
    Malformed(EventStreamError),
    /// The subscriber did not take its events fast enough.
    SlowSubscriber {
        /// Bytes forwarded to it and not yet written.
        unflushed: usize,
        /// Size of the event that did not fit.
        event_len: usize,
    },
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Malformed(error) => write!(f, "{error}"),
            CloseReason::SlowSubscriber {
                unflushed,
                event_len,
            } => write!(
                f,
                "slow subscriber: {unflushed} bytes unwritten, next event {event_len} bytes"
            ),
        }
    }
}

/// What the broker tells its host after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerOutput {
    /// `conn` sent its first event and is now subscribed to `topic`.
    Subscribed {
        /// The connection.
        conn: ConnId,
        /// The topic (`*` for all).
        topic: Vec<u8>,
    },
    /// Write these bytes (one encoded event) on `conn`.
    Write {
        /// The subscriber.
        conn: ConnId,
        /// The event, shared between all subscribers it goes to.
        bytes: Arc<[u8]>,
    },
    /// Close `conn`; the broker has already forgotten it and its subscription.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

#[derive(Debug)]
struct Connection {
    decoder: EventDecoder,
    /// `None` until the first event arrived.
    topic: Option<Vec<u8>>,
    unflushed: usize,
}

/// The event stream broker.
#[derive(Debug, Default)]
pub struct Broker {
    config: BrokerConfig,
    conns: BTreeMap<ConnId, Connection>,
}

impl Broker {
    /// A broker with the given limits.
    pub fn new(config: BrokerConfig) -> Self {
        Broker {
            config,
            conns: BTreeMap::new(),
        }
    }

    /// A connection to port 1002 was accepted.
    pub fn open(&mut self, conn: ConnId) -> Result<(), BrokerError> {
        if self.conns.contains_key(&conn) {
            return Err(BrokerError::AlreadyOpen);
        }
        if self.conns.len() >= self.config.max_connections {
            return Err(BrokerError::TooManyConnections);
        }
        let state = Connection {
            decoder: EventDecoder::new(),
            topic: None,
            unflushed: 0,
        };
        self.conns.insert(conn, state);
        Ok(())
    }

    /// Bytes arrived on `conn`, split anywhere. Returns, in order, the subscription, the
    /// forwarded events and any connections to close (the sender itself when its stream is
    /// malformed, subscribers that were too slow).
    pub fn receive(&mut self, conn: ConnId, data: &[u8]) -> Result<Vec<BrokerOutput>, BrokerError> {
        self.conns
            .get_mut(&conn)
            .ok_or(BrokerError::UnknownConnection)?
            .decoder
            .feed(data);

        let mut out = Vec::new();
        // The sender is never a receiver of its own events, so it stays open while it
        // publishes; the lookup only fails after a decode error removed it.
        while let Some(state) = self.conns.get_mut(&conn) {
            // spec §10.4: the first event subscribes and its payload is ignored, so only
            // later events are re-encoded for forwarding.
            let subscribed = state.topic.is_some();
            let next = state.decoder.next_event().map(|event| {
                event.map(|event| {
                    let bytes = subscribed.then(|| owned(&event));
                    (event.topic.to_vec(), bytes)
                })
            });
            match next {
                Ok(None) => break,
                Ok(Some((topic, None))) => {
                    state.topic = Some(topic.clone());
                    out.push(BrokerOutput::Subscribed { conn, topic });
                }
                Ok(Some((topic, Some(Ok(bytes))))) => self.publish(conn, &topic, bytes, &mut out),
                Ok(Some((_, Some(Err(error))))) | Err(error) => {
                    self.conns.remove(&conn);
                    out.push(BrokerOutput::Close {
                        conn,
                        reason: CloseReason::Malformed(error),
                    });
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Forwards one encoded event to every other subscriber of `topic` and of `*`.
    fn publish(
        &mut self,
        publisher: ConnId,
        topic: &[u8],
        bytes: Arc<[u8]>,
        out: &mut Vec<BrokerOutput>,
    ) {
        let limit = self.config.max_unflushed_bytes;
        let event_len = bytes.len();
        let mut slow = Vec::new();
        for (&id, state) in self.conns.iter_mut() {
            let subscribed = state
                .topic
                .as_deref()
                .is_some_and(|t| t == topic || t == WILDCARD_TOPIC);
            if id == publisher || !subscribed {
                continue;
            }
            let fits = state.unflushed == 0
                || state
                    .unflushed
                    .checked_add(event_len)
                    .is_some_and(|total| total <= limit);
            if fits {
                state.unflushed = state.unflushed.saturating_add(event_len);
                out.push(BrokerOutput::Write {
                    conn: id,
                    bytes: Arc::clone(&bytes),
                });
            } else {
                slow.push((id, state.unflushed));
            }
        }
        for (id, unflushed) in slow {
            self.conns.remove(&id);
            out.push(BrokerOutput::Close {
                conn: id,
                reason: CloseReason::SlowSubscriber {
                    unflushed,
                    event_len,
                },
            });
        }
    }

    /// The transport took `len` of the bytes forwarded to `conn`.
    pub fn written(&mut self, conn: ConnId, len: usize) -> Result<(), BrokerError> {
        let state = self
            .conns
            .get_mut(&conn)
            .ok_or(BrokerError::UnknownConnection)?;
        state.unflushed = state.unflushed.saturating_sub(len);
        Ok(())
    }

    /// `conn` closed: forgets it and its subscription.
    pub fn close(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// The topic `conn` subscribed to, once its first event arrived.
    pub fn subscription(&self, conn: ConnId) -> Option<&[u8]> {
        self.conns.get(&conn)?.topic.as_deref()
    }

    /// Bytes forwarded to `conn` and not yet reported written.
    pub fn unflushed_len(&self, conn: ConnId) -> Option<usize> {
        self.conns.get(&conn).map(|state| state.unflushed)
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }
}

/// Re-encodes a received event for forwarding. Cannot fail for a decoded event (same limits),
/// but the error is passed on rather than assumed away.
fn owned(event: &Event<'_>) -> Result<Arc<[u8]>, EventStreamError> {
    let mut bytes = Vec::new();
    event.encode(&mut bytes)?;
    Ok(Arc::from(bytes))
}

/// Client: the first bytes to write on a new port-1002 connection, subscribing to `topic`
/// ([`WILDCARD_TOPIC`] for all). Events the broker forwards decode with [`EventDecoder`].
pub fn subscribe(topic: &[u8]) -> Result<Vec<u8>, EventStreamError> {
    let mut bytes = Vec::new();
    Event::subscription(topic).encode(&mut bytes)?;
    Ok(bytes)
}

/// Client: the bytes publishing `payload` on `topic`, for a connection that already sent its
/// subscription.
pub fn publish(topic: &[u8], payload: &[u8]) -> Result<Vec<u8>, EventStreamError> {
    let mut bytes = Vec::new();
    Event::new(topic, payload).encode(&mut bytes)?;
    Ok(bytes)
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
    use alloc::vec;

    fn writes_to(out: &[BrokerOutput]) -> Vec<ConnId> {
        out.iter()
            .filter_map(|o| match o {
                BrokerOutput::Write { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect()
    }

    fn broker_with(subscriptions: &[(u64, &[u8])]) -> Broker {
        let mut broker = Broker::default();
        for &(id, topic) in subscriptions {
            broker.open(ConnId(id)).unwrap();
            let out = broker
                .receive(ConnId(id), &subscribe(topic).unwrap())
                .unwrap();
            assert_eq!(
                out,
                vec![BrokerOutput::Subscribed {
                    conn: ConnId(id),
                    topic: topic.to_vec()
                }]
            );
        }
        broker
    }

    #[test]
    fn publish_reaches_topic_and_wildcard_subscribers_but_never_the_publisher() {
        let mut broker = broker_with(&[(1, b"news"), (2, b"news"), (3, b"*"), (4, b"other")]);
        let out = broker
            .receive(ConnId(1), &publish(b"news", b"hello").unwrap())
            .unwrap();
        assert_eq!(writes_to(&out), vec![ConnId(2), ConnId(3)]);
        let BrokerOutput::Write { bytes, .. } = &out[0] else {
            panic!()
        };
        let (event, _) = Event::decode(bytes).unwrap();
        assert_eq!(event, Event::new(b"news", b"hello"));

        // A wildcard subscriber publishing is not echoed either.
        let out = broker
            .receive(ConnId(3), &publish(b"news", b"x").unwrap())
            .unwrap();
        assert_eq!(writes_to(&out), vec![ConnId(1), ConnId(2)]);
    }

    #[test]
    fn subscription_payload_is_ignored_and_unsubscribed_connections_get_nothing() {
        let mut broker = broker_with(&[(1, b"t")]);
        broker.open(ConnId(2)).unwrap();
        let out = broker
            .receive(ConnId(1), &publish(b"t", b"p").unwrap())
            .unwrap();
        assert!(writes_to(&out).is_empty());
        // ConnId(2)'s first event carries a payload: still only a subscription.
        let out = broker
            .receive(ConnId(2), &publish(b"t", b"ignored").unwrap())
            .unwrap();
        assert_eq!(
            out,
            vec![BrokerOutput::Subscribed {
                conn: ConnId(2),
                topic: b"t".to_vec()
            }]
        );
    }

    #[test]
    fn subscription_and_publishes_in_one_chunk_are_told_apart() {
        let mut broker = broker_with(&[(1, b"t")]);
        broker.open(ConnId(2)).unwrap();
        let mut bytes = subscribe(b"*").unwrap();
        bytes.extend(publish(b"t", b"1").unwrap());
        bytes.extend(publish(b"t", b"2").unwrap());
        let out = broker.receive(ConnId(2), &bytes).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(writes_to(&out), vec![ConnId(1), ConnId(1)]);
    }

    #[test]
    fn close_removes_the_subscription() {
        let mut broker = broker_with(&[(1, b"t"), (2, b"t")]);
        broker.close(ConnId(2));
        assert_eq!(broker.subscription(ConnId(2)), None);
        let out = broker
            .receive(ConnId(1), &publish(b"t", b"p").unwrap())
            .unwrap();
        assert!(out.is_empty());
        assert_eq!(
            broker.receive(ConnId(2), b""),
            Err(BrokerError::UnknownConnection)
        );
    }

    #[test]
    fn slow_subscriber_is_dropped_while_others_keep_receiving() {
        let mut broker = Broker::new(BrokerConfig {
            max_connections: 8,
            max_unflushed_bytes: 20,
        });
        for (id, topic) in [(1, b"t"), (2, b"t"), (3, b"t")] {
            broker.open(ConnId(id)).unwrap();
            broker
                .receive(ConnId(id), &subscribe(topic).unwrap())
                .unwrap();
        }
        let event = publish(b"t", b"0123456789").unwrap(); // 17 bytes
        let out = broker.receive(ConnId(1), &event).unwrap();
        assert_eq!(writes_to(&out), vec![ConnId(2), ConnId(3)]);
        broker.written(ConnId(3), event.len()).unwrap();

        // ConnId(2) has 17 unwritten bytes; 17 more would exceed 20.
        let out = broker.receive(ConnId(1), &event).unwrap();
        assert_eq!(writes_to(&out), vec![ConnId(3)]);
        assert_eq!(
            out.last(),
            Some(&BrokerOutput::Close {
                conn: ConnId(2),
                reason: CloseReason::SlowSubscriber {
                    unflushed: 17,
                    event_len: 17
                }
            })
        );
        assert_eq!(broker.subscription(ConnId(2)), None);
        assert_eq!(broker.connection_count(), 2);
    }

    #[test]
    fn idle_subscriber_takes_one_event_larger_than_the_limit() {
        let mut broker = Broker::new(BrokerConfig {
            max_connections: 8,
            max_unflushed_bytes: 4,
        });
        for id in [1, 2] {
            broker.open(ConnId(id)).unwrap();
            broker
                .receive(ConnId(id), &subscribe(b"t").unwrap())
                .unwrap();
        }
        let out = broker
            .receive(ConnId(1), &publish(b"t", b"large").unwrap())
            .unwrap();
        assert_eq!(writes_to(&out), vec![ConnId(2)]);
        assert_eq!(broker.unflushed_len(ConnId(2)), Some(12));
    }

    #[test]
    fn malformed_stream_closes_only_its_connection() {
        let mut broker = broker_with(&[(1, b"t"), (2, b"t")]);
        let out = broker.receive(ConnId(1), &[0x04, 0x01]).unwrap();
        assert_eq!(
            out,
            vec![BrokerOutput::Close {
                conn: ConnId(1),
                reason: CloseReason::Malformed(EventStreamError::TopicTooLong { len: 1025 })
            }]
        );
        assert_eq!(broker.connection_count(), 1);
    }

    #[test]
    fn connection_limit_is_enforced() {
        let mut broker = Broker::new(BrokerConfig {
            max_connections: 1,
            max_unflushed_bytes: 1,
        });
        broker.open(ConnId(1)).unwrap();
        assert_eq!(broker.open(ConnId(1)), Err(BrokerError::AlreadyOpen));
        assert_eq!(broker.open(ConnId(2)), Err(BrokerError::TooManyConnections));
    }
}
