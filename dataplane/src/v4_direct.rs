//! The IPv4 direct table (`X0_V4_DIRECT`): per /24, the answer of the routes up to /24,
//! and whether routes longer than /24 lie inside (see `x0_common::V4Direct`). The map is
//! memory-mapped: a word is rewritten with one atomic store, not a syscall.
//!
//! A route up to /24 owns the words of its /24s that no longer route covers; a word is
//! only written once the route maps agree with it (after a route is written, after it is
//! deleted), so that a packet sees the table before or after a change, never a mix that
//! neither had.
//!
//! The table can be turned off (`ipv4_direct_table = false`: a map of one element, 64 MiB
//! less kernel memory for a small router): then this type writes nothing and the fast path
//! probes every prefix length through the probe filter and the exact map.

use std::{
    collections::HashMap,
    ops::Range,
    sync::atomic::{AtomicU32, Ordering::Relaxed},
};

use aya::maps::MapData;
use x0_common::{Route, V4_DIRECT_ELEMENTS, V4_DIRECT_ENTRIES, V4Direct};

use crate::mapped_array::MappedArray;

pub struct V4DirectTable {
    /// None when the table is turned off.
    words: Option<MappedArray<AtomicU32>>,
    /// Per /24 index: how many routes longer than /24 lie inside (its LONGER bit).
    longer: HashMap<u32, u32>,
}

/// The words of the /24s that a route of `prefix_len` (<= 24) at `addr` covers.
fn slots(prefix_len: u8, addr: [u8; 4]) -> Range<u32> {
    debug_assert!(prefix_len <= 24);
    let n = 1u32 << (24 - prefix_len);
    let first = V4Direct::index(addr) & !(n - 1);
    first..first + n
}

impl V4DirectTable {
    /// Maps `map` (an array of V4_DIRECT_ELEMENTS u64 created with BPF_F_MMAPABLE), or
    /// takes the table as turned off if the map was created smaller.
    pub fn new(map: MapData) -> std::io::Result<Self> {
        let elements = map.info().map_err(std::io::Error::other)?.max_entries();
        let words = if elements == V4_DIRECT_ELEMENTS {
            Some(MappedArray::new(map, V4_DIRECT_ENTRIES as usize)?)
        } else {
            None
        };
        Ok(Self {
            words,
            longer: HashMap::new(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.words.is_some()
    }

    /// The word the fast path reads for a destination `addr` (an empty word when the
    /// table is off).
    pub fn word(&self, addr: [u8; 4]) -> std::io::Result<V4Direct> {
        match &self.words {
            Some(w) => w.with(V4Direct::index(addr) as usize, |a| {
                V4Direct(a.load(Relaxed))
            }),
            None => Ok(V4Direct(0)),
        }
    }

    /// Runs `f` on each word of `range` (nothing when the table is off).
    fn each_word(&self, range: Range<u32>, mut f: impl FnMut(&AtomicU32)) -> std::io::Result<()> {
        match &self.words {
            Some(w) => w.for_range(range.start as usize..range.end as usize, |part, _| {
                part.iter().for_each(&mut f)
            }),
            None => Ok(()),
        }
    }

    /// Unmaps the table's windows (the daemon calls it between operations).
    pub fn release(&self) {
        if let Some(w) = &self.words {
            w.release();
        }
    }

    pub fn mapped(&self) -> usize {
        self.words.as_ref().map_or(0, |w| w.mapped())
    }

    /// A route up to /24 written (new or changed): it takes the words of its /24s that no
    /// longer route holds.
    pub fn set_route(
        &mut self,
        prefix_len: u8,
        addr: [u8; 4],
        route: &Route,
    ) -> std::io::Result<()> {
        self.each_word(slots(prefix_len, addr), |a| {
            let w = V4Direct(a.load(Relaxed));
            if w.prefix_len().is_none_or(|l| l <= prefix_len) {
                a.store(w.with_route(prefix_len, route).0, Relaxed);
            }
        })
    }

    /// A route up to /24 deleted: its words go to `cover`, the longest remaining route
    /// shorter than it that covers it (prefix length and value), or to no route.
    pub fn clear_route(
        &mut self,
        prefix_len: u8,
        addr: [u8; 4],
        cover: Option<(u8, Route)>,
    ) -> std::io::Result<()> {
        self.each_word(slots(prefix_len, addr), |a| {
            let w = V4Direct(a.load(Relaxed));
            if w.prefix_len() == Some(prefix_len) {
                let next = match &cover {
                    Some((len, route)) => w.with_route(*len, route),
                    None => w.without_route(),
                };
                a.store(next.0, Relaxed);
            }
        })
    }

    /// A route longer than /24 written in the exact map: its /24 now says to probe.
    pub fn add_longer(&mut self, addr: [u8; 4]) -> std::io::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let i = V4Direct::index(addr);
        *self.longer.entry(i).or_default() += 1;
        self.each_word(i..i + 1, |a| {
            a.fetch_or(V4Direct::LONGER, Relaxed);
        })
    }

    /// A route longer than /24 deleted from the exact map: the last one of its /24 clears
    /// the bit.
    pub fn remove_longer(&mut self, addr: [u8; 4]) -> std::io::Result<()> {
        let i = V4Direct::index(addr);
        match self.longer.get_mut(&i) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.longer.remove(&i);
                self.each_word(i..i + 1, |a| {
                    a.fetch_and(!V4Direct::LONGER, Relaxed);
                })?;
            }
            None => {}
        }
        Ok(())
    }

    /// Makes the table say exactly what `routes` say (start-up: the pinned table may be
    /// new, or hold words of routes gone while no daemon ran). Computed per /8 in a
    /// buffer and stored where it differs, so that a correct word is never rewritten.
    pub fn rebuild(
        &mut self,
        routes: impl IntoIterator<Item = (u8, [u8; 4], Route)>,
    ) -> std::io::Result<()> {
        self.longer.clear();
        if !self.enabled() {
            return Ok(());
        }
        // Routes up to /24 by the /8 they fall in; those shorter than /8 span several.
        let mut wide = Vec::new();
        let mut by_octet: Vec<Vec<(u8, [u8; 4], Route)>> = vec![Vec::new(); 256];
        for (len, addr, route) in routes {
            if len > 24 {
                *self.longer.entry(V4Direct::index(addr)).or_default() += 1;
            } else if len < 8 {
                wide.push((len, addr, route));
            } else {
                by_octet[usize::from(addr[0])].push((len, addr, route));
            }
        }
        wide.sort_by_key(|r| r.0);
        let mut longer_by_octet: Vec<Vec<u32>> = vec![Vec::new(); 256];
        for i in self.longer.keys() {
            longer_by_octet[(*i >> 16) as usize].push(*i);
        }
        const PER_OCTET: u32 = 1 << 16;
        let mut buf = vec![V4Direct(0); PER_OCTET as usize];
        for (octet, mut routes) in by_octet.into_iter().enumerate() {
            let base = octet as u32 * PER_OCTET;
            buf.fill(V4Direct(0));
            routes.sort_by_key(|r| r.0);
            // Shorter routes first, so that a longer one overwrites them where it is.
            let covering = wide
                .iter()
                .filter(|(len, addr, _)| slots(*len, *addr).contains(&base));
            for (len, addr, route) in covering.chain(routes.iter()) {
                let s = slots(*len, *addr);
                let (from, to) = (s.start.max(base) - base, s.end.min(base + PER_OCTET) - base);
                for w in &mut buf[from as usize..to as usize] {
                    *w = w.with_route(*len, route);
                }
            }
            for i in &longer_by_octet[octet] {
                buf[(i - base) as usize].0 |= V4Direct::LONGER;
            }
            let mut want = buf.iter();
            self.each_word(base..base + PER_OCTET, |a| {
                let w = want.next().expect("a word per slot").0;
                if a.load(Relaxed) != w {
                    a.store(w, Relaxed);
                }
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::slots;

    #[test]
    fn a_route_covers_the_slots_of_its_24s() {
        assert_eq!(slots(24, [198, 51, 100, 0]), 0xc63364..0xc63365);
        assert_eq!(slots(16, [198, 51, 0, 0]), 0xc63300..0xc63400);
        assert_eq!(slots(0, [0, 0, 0, 0]), 0..1 << 24);
        assert_eq!(slots(9, [198, 128, 0, 0]).len(), 1 << 15);
    }
}
