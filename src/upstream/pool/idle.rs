//! A bounded, lock-free stack of idle connections, most recently returned first.
//!
//! Slots are atomic cells holding a boxed connection (one pointer, so every operation is a
//! single atomic swap). `top` is a hint to where the newest entry sits; races between a push and
//! a pop may misplace it, which costs only order or a scan, never a connection: each connection
//! is always in exactly one slot or owned by exactly one caller.

use crossbeam_utils::atomic::AtomicCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Idle entries, newest first.
pub struct IdleStack<T> {
    slots: Box<[AtomicCell<Option<Box<T>>>]>,
    /// One past the newest entry, as far as the last push or pop knew.
    top: AtomicUsize,
}

impl<T> std::fmt::Debug for IdleStack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleStack")
            .field("capacity", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl<T> IdleStack<T> {
    /// An empty stack of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity).map(|_| AtomicCell::new(None)).collect(),
            top: AtomicUsize::new(0),
        }
    }

    /// Puts `entry` on top, using at most `limit` slots; when they are all taken, one entry
    /// (`entry` or an older one it displaced) is given back for the caller to drop.
    pub fn push(&self, entry: Box<T>, limit: usize) -> Result<(), Box<T>> {
        let limit = limit.min(self.slots.len());
        // Relaxed: `top` is only a hint; the slots' swaps carry the entries.
        let start = self.top.load(Ordering::Relaxed).min(limit);
        let mut entry = entry;
        for i in (start..limit).chain(0..start) {
            match self.slots[i].swap(Some(entry)) {
                None => {
                    self.top.store(i + 1, Ordering::Relaxed);
                    return Ok(());
                }
                // Taken meanwhile: the displaced entry looks for another slot.
                Some(displaced) => entry = displaced,
            }
        }
        Err(entry)
    }

    /// Takes the newest entry, if any.
    pub fn pop(&self) -> Option<Box<T>> {
        let top = self.top.load(Ordering::Relaxed).min(self.slots.len());
        // Below the hint first (the common case), then above it in case a racing pop lowered
        // the hint under a fresh entry.
        for i in (0..top).rev().chain(top..self.slots.len()) {
            if let Some(entry) = self.slots[i].take() {
                self.top.store(i, Ordering::Relaxed);
                return Some(entry);
            }
        }
        None
    }

    /// Drops every entry `keep` refuses, keeping the others where they are.
    pub fn retain(&self, mut keep: impl FnMut(&T) -> bool) {
        for slot in self.slots.iter() {
            let Some(entry) = slot.take() else { continue };
            if keep(&entry) {
                if let Some(displaced) = slot.swap(Some(entry)) {
                    // A push filled the slot meanwhile; the older entry is the one let go.
                    drop(displaced);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_lock_free() {
        assert!(AtomicCell::<Option<Box<u64>>>::is_lock_free());
    }

    #[test]
    fn pops_the_most_recently_pushed_first() {
        let stack = IdleStack::new(4);
        for n in 1..=3 {
            stack.push(Box::new(n), 4).expect("room");
        }
        assert_eq!(stack.pop().map(|b| *b), Some(3));
        stack.push(Box::new(4), 4).expect("room");
        assert_eq!(stack.pop().map(|b| *b), Some(4));
        assert_eq!(stack.pop().map(|b| *b), Some(2));
        assert_eq!(stack.pop().map(|b| *b), Some(1));
        assert_eq!(stack.pop(), None);
    }

    #[test]
    fn refuses_entries_beyond_the_limit() {
        let stack = IdleStack::new(4);
        stack.push(Box::new(1), 2).expect("room");
        stack.push(Box::new(2), 2).expect("room");
        assert!(stack.push(Box::new(3), 2).is_err());
        let left = std::iter::from_fn(|| stack.pop()).count();
        assert_eq!(left, 2);
    }

    #[test]
    fn retain_drops_only_the_refused() {
        let stack = IdleStack::new(8);
        for n in 0..6 {
            stack.push(Box::new(n), 8).expect("room");
        }
        stack.retain(|n| n % 2 == 0);
        let mut left: Vec<i32> = std::iter::from_fn(|| stack.pop().map(|b| *b)).collect();
        left.sort_unstable();
        assert_eq!(left, vec![0, 2, 4]);
    }

    #[test]
    fn concurrent_pushes_and_pops_lose_nothing() {
        let stack = std::sync::Arc::new(IdleStack::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let stack = std::sync::Arc::clone(&stack);
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for n in 0..10_000u32 {
                        if n % 3 == 2 {
                            if let Some(entry) = stack.pop() {
                                held.push(entry);
                            }
                        } else if let Err(entry) = stack.push(Box::new(t * 100_000 + n), 64) {
                            held.push(entry);
                        }
                        if held.len() > 8 {
                            held.clear();
                        }
                    }
                    held.len()
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        // Every entry still in the stack can be taken exactly once.
        let mut seen = std::collections::HashSet::new();
        while let Some(entry) = stack.pop() {
            assert!(seen.insert(*entry), "an entry was in two slots");
        }
        assert!(seen.len() <= 64);
    }
}
