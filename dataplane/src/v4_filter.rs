//! The IPv4 probe filter (`X0_V4_FILTER`): a bit per (prefix length, prefix) that tells
//! the fast path whether the exact map may hold a route there, so that it makes only the
//! hash lookups that may hit (see `x0_common::v4_filter_bit`). The map is memory-mapped:
//! a bit is set or cleared with one atomic store, not a syscall.
//!
//! The one rule: a route's bit is set before the route is written and cleared after it is
//! deleted, so that no packet ever skips a route that is there. A bit set in excess only
//! costs a probe that misses.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use aya::maps::MapData;
use x0_common::{V4_FILTER_WORDS, v4_filter_bit};

use crate::mapped_array::MappedArray;

pub struct V4Filter {
    words: MappedArray<AtomicU64>,
    /// Routes longer than /24 share hashed bits: how many routes hold each such bit.
    shared: HashMap<u32, u32>,
}

impl V4Filter {
    /// Maps `map` (an array of V4_FILTER_WORDS u64 created with BPF_F_MMAPABLE).
    pub fn new(map: MapData) -> std::io::Result<Self> {
        Ok(Self {
            words: MappedArray::new(map, V4_FILTER_WORDS as usize)?,
            shared: HashMap::new(),
        })
    }

    /// Runs `f` on the word that holds `bit`.
    fn with_word<T>(&self, bit: u32, f: impl FnOnce(&AtomicU64) -> T) -> std::io::Result<T> {
        self.words.with((bit / 64) as usize, f)
    }

    /// Unmaps the filter's windows (the daemon calls it between operations).
    pub fn release(&self) {
        self.words.release();
    }

    pub fn mapped(&self) -> usize {
        self.words.mapped()
    }

    /// Whether the fast path would probe `prefix_len` for `addr`.
    pub fn may_hold(&self, prefix_len: u8, addr: [u8; 4]) -> std::io::Result<bool> {
        let bit = v4_filter_bit(prefix_len.into(), addr);
        self.with_word(bit, |w| w.load(Relaxed) & (1 << (bit % 64)) != 0)
    }

    /// A new route: call before it is written into the exact map.
    pub fn add(&mut self, prefix_len: u8, addr: [u8; 4]) -> std::io::Result<()> {
        let bit = self.hold(prefix_len, addr);
        self.with_word(bit, |w| {
            w.fetch_or(1 << (bit % 64), Relaxed);
        })
    }

    /// The route's bit, counted as held by one more route where routes share bits.
    fn hold(&mut self, prefix_len: u8, addr: [u8; 4]) -> u32 {
        let bit = v4_filter_bit(prefix_len.into(), addr);
        if prefix_len > 24 {
            *self.shared.entry(bit).or_default() += 1;
        }
        bit
    }

    /// A route gone: call after it left the exact map.
    pub fn remove(&mut self, prefix_len: u8, addr: [u8; 4]) -> std::io::Result<()> {
        let bit = v4_filter_bit(prefix_len.into(), addr);
        if prefix_len > 24 {
            match self.shared.get_mut(&bit) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    return Ok(()); // another route holds the bit
                }
                _ => {
                    self.shared.remove(&bit);
                }
            }
        }
        self.with_word(bit, |w| {
            w.fetch_and(!(1 << (bit % 64)), Relaxed);
        })
    }

    /// Makes the filter hold exactly the bits of `routes` (start-up: the pinned filter
    /// may be empty, or hold bits of routes gone while no daemon ran). Each word is
    /// stored once with its final value: bits of present routes are never cleared.
    pub fn rebuild(
        &mut self,
        routes: impl IntoIterator<Item = (u8, [u8; 4])>,
    ) -> std::io::Result<()> {
        // The wanted words by index (memory as the routes, not the filter's 6 MiB).
        let mut wanted: std::collections::BTreeMap<usize, u64> = Default::default();
        self.shared.clear();
        for (len, addr) in routes {
            let bit = self.hold(len, addr);
            *wanted.entry((bit / 64) as usize).or_default() |= 1 << (bit % 64);
        }
        let mut next = wanted.into_iter().peekable();
        self.words.for_range(0..self.words.len(), |part, first| {
            for (k, word) in part.iter().enumerate() {
                let w = match next.peek() {
                    Some((i, w)) if *i == first + k => {
                        let w = *w;
                        next.next();
                        w
                    }
                    _ => 0,
                };
                if word.load(Relaxed) != w {
                    word.store(w, Relaxed);
                }
            }
        })
    }
}
