//! The bytes a request's policies make (a rewritten target, a filled-in header value), cut from
//! one buffer per thread: making them allocates nothing, and a copy (the target a retry keeps)
//! shares them rather than allocating to share. A buffer is left for a fresh one when full;
//! the pieces cut from it keep it alive until the last request holding one ends, and a
//! request holds its pieces only until its head is sent.

use bytes::{Bytes, BytesMut};
use std::cell::RefCell;

/// A fresh buffer's size: room for a few dozen targets.
const BUFFER: usize = 4096;

thread_local! {
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The bytes `write` writes, `room` of them expected (more is still right, only dearer).
pub fn cut(room: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    SCRATCH.with_borrow_mut(|buffer| {
        if buffer.capacity() < room {
            *buffer = BytesMut::with_capacity(BUFFER.max(room));
        }
        write(buffer);
        buffer.split().freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_their_own_bytes_and_share_one_buffer_until_it_is_full() {
        let a = cut(3, |b| b.extend_from_slice(b"abc"));
        let b = cut(2, |b| b.extend_from_slice(b"de"));
        assert_eq!((&a[..], &b[..]), (&b"abc"[..], &b"de"[..]));
        assert_eq!(
            a.as_ptr().wrapping_add(3),
            b.as_ptr(),
            "one buffer, one after the other"
        );
        let big = cut(BUFFER * 2, |b| b.extend_from_slice(&[b'x'; BUFFER * 2]));
        assert_eq!(big.len(), BUFFER * 2);
        let more = cut(1, |b| b.extend_from_slice(b"f"));
        assert_eq!(&more[..], b"f");
        assert_eq!(&a[..], b"abc", "a piece outlives its buffer's replacement");
    }

    #[test]
    fn writing_past_the_room_asked_for_is_still_right() {
        let long = cut(1, |b| b.extend_from_slice(&[b'y'; BUFFER + 10]));
        assert_eq!(long.len(), BUFFER + 10);
        assert!(long.iter().all(|&c| c == b'y'));
    }
}
