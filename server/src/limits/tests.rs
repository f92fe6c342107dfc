//! The limits on scripted streams: which stream each limit ends, and what it counts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::bodies::Gathered;
use super::executor::AbortSwitch;
use super::ledger::{Ledger, Offender, Waiting};
use super::{Limits, RESPONSE_CHUNK, STREAM_BYTES};
use crate::lifecycle::Lifecycle;

fn ledger(limits: Limits) -> Arc<Ledger> {
    Ledger::new(limits, 4 << 20, Lifecycle::default())
}

fn switch() -> Arc<AbortSwitch> {
    Arc::new(AbortSwitch::default())
}

async fn pulled(switch: &AbortSwitch) -> bool {
    tokio::time::timeout(Duration::from_millis(1), switch.0.notified()).await.is_ok()
}

#[tokio::test(start_paused = true)]
async fn the_oldest_incomplete_request_makes_room() {
    let ledger = ledger(Limits { max_incomplete_requests: Some(2), ..Limits::default() });
    let switches: Vec<_> = (0..3).map(|_| switch()).collect();
    let connection = Arc::new(Offender::default());
    for switch in &switches {
        ledger.hold_request(&connection, Arc::clone(switch));
    }
    assert!(connection.is_offended(), "its connection is to be closed");
    assert!(pulled(&switches[0]).await, "the oldest is ended");
    assert!(!pulled(&switches[1]).await && !pulled(&switches[2]).await);
    assert_eq!(ledger.waiting().0, 2);
    assert_eq!(ledger.lifecycle.counts().streams_reset_incomplete, 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_client_s_one_request_outlasts_an_attacker_s_many() {
    let ledger = ledger(Limits { max_incomplete_requests: Some(3), ..Limits::default() });
    let slow_client = Arc::new(Offender::new(1));
    let attacker = Arc::new(Offender::new(2));
    let slow = switch();
    ledger.hold_request(&slow_client, Arc::clone(&slow));
    let attacks: Vec<_> = (0..10).map(|_| switch()).collect();
    for switch in &attacks {
        ledger.hold_request(&attacker, Arc::clone(switch));
    }
    assert!(!pulled(&slow).await, "the oldest request, but its connection holds only it");
    assert!(!slow_client.is_offended());
    assert!(attacker.is_offended());
    let mut ended = 0;
    for switch in &attacks {
        ended += usize::from(pulled(switch).await);
    }
    assert_eq!(ended, 8, "the attacker keeps its 2 newest beside the slow client's one");
    assert_eq!(ledger.waiting().0, 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_not_arrived_in_time_is_ended_and_one_that_arrived_is_not() {
    let ledger = ledger(Limits { request_timeout: Some(Duration::from_secs(5)), ..Limits::default() });
    let (slow, quick) = (switch(), switch());
    let connection = Arc::new(Offender::default());
    ledger.hold_request(&connection, Arc::clone(&slow));
    let id = ledger.hold_request(&connection, Arc::clone(&quick));
    ledger.release(Waiting::Request, id);
    tokio::time::advance(Duration::from_millis(4_999)).await;
    ledger.sweep(Instant::now());
    assert!(!pulled(&slow).await, "not yet");
    tokio::time::advance(Duration::from_millis(1)).await;
    ledger.sweep(Instant::now());
    assert!(pulled(&slow).await);
    assert!(!pulled(&quick).await, "it arrived");
    assert_eq!(ledger.lifecycle.counts().streams_reset_incomplete, 1);
}

#[tokio::test(start_paused = true)]
async fn waiting_responses_are_bounded_per_connection_and_in_total() {
    let ledger = ledger(Limits {
        max_unread_response_bytes: Some(3 * (STREAM_BYTES + 1_000)),
        max_unread_response_bytes_total: Some(4 * (STREAM_BYTES + 1_000)),
        ..Limits::default()
    });
    let (one, two) = (Arc::new(Offender::new(1)), Arc::new(Offender::new(2)));
    let first: Vec<_> = (0..4).map(|_| switch()).collect();
    for switch in &first {
        ledger.hold_response(&one, Arc::clone(switch), 1_000, None, std::sync::Weak::new());
    }
    assert!(pulled(&first[0]).await, "the connection's fourth ends its oldest");
    let other = switch();
    ledger.hold_response(&two, Arc::clone(&other), 1_000, None, std::sync::Weak::new());
    ledger.hold_response(&two, switch(), 1_000, None, std::sync::Weak::new());
    assert!(pulled(&first[1]).await, "the server's fifth ends the oldest anywhere");
    assert!(!pulled(&other).await);
    assert_eq!(ledger.waiting(), (0, 4, 4 * (STREAM_BYTES + 1_000)));
    assert_eq!(ledger.lifecycle.counts().responses_reset_unread, 2);
}

#[tokio::test(start_paused = true)]
async fn a_response_larger_than_the_bound_alone_still_goes() {
    let ledger = ledger(Limits { max_unread_response_bytes_total: Some(1_000), ..Limits::default() });
    let alone = switch();
    ledger.hold_response(&Arc::new(Offender::default()), Arc::clone(&alone), 4 << 20, None, std::sync::Weak::new());
    assert!(!pulled(&alone).await);
}

#[test]
fn beyond_the_stream_bound_a_connection_gets_its_fair_share() {
    let ledger = ledger(Limits { max_concurrent_streams_total: Some(10), ..Limits::default() });
    let greedy = Arc::new(Offender::new(1));
    let slots: Vec<_> = (0..10).map(|_| ledger.admit(&greedy).expect("under the bound")).collect();
    assert!(ledger.admit(&greedy).is_none(), "at the bound, and all ten are its own");
    let modest = Arc::new(Offender::new(2));
    let modest_slots: Vec<_> = (0..5).map(|_| ledger.admit(&modest).expect("under its fair share of 10 / 2")).collect();
    assert!(ledger.admit(&modest).is_none(), "its share is spent too");
    assert_eq!(ledger.lifecycle.counts().streams_refused, 2);
    drop(modest_slots);
    drop(slots);
    assert_eq!(ledger.streams.load(Ordering::Relaxed), 0, "ended streams free their slots");
    assert_eq!(ledger.busy_connections.load(Ordering::Relaxed), 0);
    assert!(ledger.admit(&greedy).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_response_reserves_room_before_it_is_built() {
    let chunk = RESPONSE_CHUNK as u64;
    let ledger = ledger(Limits { max_unread_response_bytes_total: Some(10 * chunk), ..Limits::default() });
    assert!(ledger.reserve_response(chunk).unwrap().is_none(), "one chunk needs no room");
    let waiting = switch();
    ledger.hold_response(&Arc::new(Offender::default()), Arc::clone(&waiting), 4 * chunk, None, std::sync::Weak::new());
    let building = ledger.reserve_response(6 * chunk).unwrap().expect("room");
    assert!(pulled(&waiting).await, "the waiting response made room for the one being built");
    assert!(ledger.reserve_response(6 * chunk).is_err(), "responses being built fill the bound");
    assert_eq!(ledger.lifecycle.counts().responses_reset_unread, 2, "the one ended and the one refused");
    drop(building);
    assert_eq!(ledger.held().building, 0, "a dropped reservation returns its room");
    let alone = ledger.reserve_response(20 * chunk).unwrap().expect("alone, even over the bound");
    let handed_on = switch();
    ledger.hold_response(
        &Arc::new(Offender::default()),
        handed_on,
        20 * chunk,
        Some(Arc::new(alone)),
        std::sync::Weak::new(),
    );
    assert_eq!(ledger.held().building, 0, "handed on, its bytes count as waiting instead");
}

#[test]
fn whole_messages_are_handed_on_and_a_declared_length_reserves_nothing() {
    let mut gathered = Gathered { bytes: BytesMut::new(), max_message_bytes: 1 << 20, trailers: None, ended: false };
    let message = |len: u32| {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7u8, len as usize));
        bytes
    };
    let two = [message(3), message(10)].concat();
    gathered.bytes.extend_from_slice(&two[..12]);
    assert_eq!(gathered.ready().unwrap(), Bytes::copy_from_slice(&two[..8]), "the first, whole");
    assert!(gathered.ready().is_none(), "the second is not whole yet");
    assert!(gathered.bytes.capacity() < 1 << 10, "nothing reserved for what was only declared");
    gathered.bytes.extend_from_slice(&two[12..]);
    assert_eq!(gathered.ready().unwrap(), Bytes::copy_from_slice(&two[8..]));

    gathered.bytes.extend_from_slice(&message(2 << 20)[..9]);
    assert_eq!(gathered.ready().unwrap().len(), 9, "over the maximum: on at once, for the decoder to refuse");
    gathered.bytes.extend_from_slice(&message(100)[..30]);
    assert!(gathered.ready().is_none());
    gathered.ended = true;
    assert_eq!(gathered.ready().unwrap().len(), 30, "at the end, what there is");
}
