//! Everything the XDP programs and user space must agree on: map names, sizes, key and
//! value layouts, flags and counter indices. Kernel and user space both compile this crate,
//! so a layout cannot drift between them.
//!
//! All structs are `#[repr(C)]` with explicit padding so that their bytes are the same on
//! both sides and never contain uninitialised padding.
#![no_std]

pub mod policy;
pub mod reason;

pub use reason::Reason;

/// Next hops one route may hold, in preference order.
pub const MAX_NEXTHOPS_PER_SET: usize = 8;
/// Capacity of the IPv4 route map (the benchmark loads 1M routes).
pub const MAX_ROUTES_V4: u32 = 2 * 1024 * 1024;
/// Capacity of the IPv6 route map.
pub const MAX_ROUTES_V6: u32 = 1024 * 1024;
/// Capacity of the next-hop and next-hop-set arrays (ids are indices into them).
pub const MAX_NEXTHOPS: u32 = 65_536;
pub const MAX_NEXTHOP_SETS: u32 = 65_536;
/// Interfaces a router can redirect to.
pub const MAX_PORTS: u32 = 1_024;
/// Interfaces with ifindex below this count in an array (one direct index per packet);
/// the rare larger ifindex (the kernel hands them out cyclically) in a hash map.
pub const IF_STATS_ARRAY_LEN: u32 = 4_096;

/// Map names, as the programs declare them and as they are pinned.
pub mod map_names {
    pub const ROUTES_V4: &str = "X0_ROUTES_V4";
    pub const ROUTES_V6: &str = "X0_ROUTES_V6";
    pub const ROUTES_V4_EXACT: &str = "X0_ROUTES_V4_EXACT";
    pub const V4_LENGTHS: &str = "X0_V4_LENGTHS";
    pub const V4_FILTER: &str = "X0_V4_FILTER";
    pub const V4_DIRECT: &str = "X0_V4_DIRECT";
    pub const NEXTHOP_SETS: &str = "X0_NH_SETS";
    pub const NEXTHOPS: &str = "X0_NEXTHOPS";
    pub const TX_PORTS: &str = "X0_TX_PORTS";
    pub const CONFIG: &str = "X0_CONFIG";
    pub const STATS: &str = "X0_STATS";
    pub const IF_STATS: &str = "X0_IF_STATS";
    pub const IF_STATS_HIGH: &str = "X0_IF_STATS_HI";
    pub const NEXTHOP_LIVE: &str = "X0_NH_LIVE";
    pub const NEXTHOP_STATS: &str = "X0_NH_STATS";
    pub const NEXTHOP_HEALTH: &str = "X0_NH_HEALTH";
    pub const PORTS: &str = "X0_PORTS";
    pub const XSKS: &str = "X0_XSKS";
    pub const XSK_SLOTS: &str = "X0_XSK_SLOTS";
    pub const POLICY: &str = "X0_POLICY";
    pub const IDENTITIES_V4: &str = "X0_IDENT_V4";
    pub const IDENTITIES_V6: &str = "X0_IDENT_V6";
    pub const RULES: &str = "X0_RULES";
    pub const RATE: &str = "X0_RATE";
    pub const RULE_STATS: &str = "X0_RULE_STATS";
    /// IPv6 flows (`CtKey`); IPv4 flows are in CONNTRACK_V4 (`CtKey4`).
    pub const CONNTRACK: &str = "X0_CT";
    pub const CONNTRACK_V4: &str = "X0_CT4";
    pub const TRACE: &str = "X0_TRACE";
    pub const DROPS: &str = "X0_DROPS";
    pub const DROP_BUDGET: &str = "X0_DROP_BUDGET";
    pub const JUMP: &str = "X0_JUMP";
    pub const PENDING: &str = "X0_PENDING";
    pub const CLOCK: &str = "X0_CLOCK";
    pub const FLOW_CACHE: &str = "X0_FLOW_CACHE";
    pub const FRAGS: &str = "X0_FRAGS";
    /// Every map, for pinning and cleanup.
    pub const ALL: [&str; 35] = [
        ROUTES_V4,
        ROUTES_V6,
        ROUTES_V4_EXACT,
        V4_LENGTHS,
        V4_FILTER,
        V4_DIRECT,
        NEXTHOP_SETS,
        NEXTHOPS,
        TX_PORTS,
        CONFIG,
        STATS,
        IF_STATS,
        IF_STATS_HIGH,
        NEXTHOP_LIVE,
        NEXTHOP_STATS,
        NEXTHOP_HEALTH,
        PORTS,
        XSKS,
        XSK_SLOTS,
        POLICY,
        IDENTITIES_V4,
        IDENTITIES_V6,
        RULES,
        RATE,
        RULE_STATS,
        CONNTRACK,
        CONNTRACK_V4,
        TRACE,
        DROPS,
        DROP_BUDGET,
        JUMP,
        PENDING,
        CLOCK,
        FLOW_CACHE,
        FRAGS,
    ];
}

/// Program names in the object file.
pub mod program_names {
    /// The forwarding fast path.
    pub const FORWARD: &str = "x0_forward";
    /// A trivial XDP_PASS program: the benchmarks' baseline, and what lab hosts attach so
    /// that frames redirected into their veth are accepted.
    pub const PASS: &str = "x0_pass";
    /// Drops everything: the XDP_DROP ceiling in benchmarks, and the lab's black-hole.
    pub const DROP: &str = "x0_drop";
    /// Policy, tail-called by `x0_forward` when policy is on; finishes the forwarding.
    pub const POLICY: &str = "x0_policy";
    /// The forwarding benchmark's traffic generator (BPF_PROG_TEST_RUN, live frames).
    pub const GEN: &str = "x0_gen";
    /// The lab's lossy or congested link: drops frames at random (the global
    /// `LOSS_PER_MILLION` says how many) and over a rate (`RATE_BYTES_PER_S`), and
    /// tail-calls the router's `FORWARD` with the rest.
    pub const LOSSY: &str = "x0_lossy";
    /// `LOSSY`'s program array: the router's `FORWARD` at 0.
    pub const LOSSY_NEXT: &str = "X0_LOSSY_NEXT";
    /// The global holding `LOSSY`'s drop rate, per million frames.
    pub const LOSS_PER_MILLION: &str = "X0_LOSS_PER_MILLION";
    /// The global holding `LOSSY`'s rate limit, bytes per second (0: none).
    pub const RATE_BYTES_PER_S: &str = "X0_RATE_BYTES_PER_S";
    /// The forwarding benchmark's redirect ceiling: every frame out of one port.
    pub const REDIRECT: &str = "x0_redirect";
    /// The global holding `REDIRECT`'s egress ifindex.
    pub const REDIRECT_TO: &str = "X0_REDIRECT_TO";
}

/// The forwarding benchmark generator's 60-byte IPv4/UDP template, as `x0-bench generate`
/// writes it and `x0_gen` reads it: the fields routers rewrite, the UDP source port the
/// program sets, and in the payload the flow count and a copy of the rewritten fields.
pub mod gen_frame {
    pub const LEN: usize = 60;
    /// Ethernet destination and source (12 bytes).
    pub const MACS: usize = 0;
    /// IPv4 TTL and header checksum (Ethernet 14 + 8, + 10).
    pub const TTL: usize = 22;
    pub const IP_CHECK: usize = 24;
    pub const SPORT: usize = 34;
    pub const UDP_CHECK: usize = 40;
    /// The template's TTL, which `x0_gen` puts back.
    pub const TEMPLATE_TTL: u8 = 64;
    /// Payload: flows (u16), MACs copy (12), gap (u16), checksum copy (u16).
    pub const FLOWS: usize = 42;
    pub const MACS_COPY: usize = 44;
    /// The wait before each frame, in ns (big-endian u16, at most `MAX_GAP`; 0: none, as
    /// fast as the core builds them).
    pub const GAP: usize = 56;
    pub const MAX_GAP: u16 = 20_000;
    pub const CHECK_COPY: usize = 58;
}

/// Value of the route maps (key: `prefix_len: u32` then the address bytes, network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Index into the next-hop-set array; unused for local routes.
    pub nexthop_set: u32,
    /// `ROUTE_F_*`.
    pub flags: u32,
}

/// The destination is the router itself: hand the packet to the kernel.
pub const ROUTE_F_LOCAL: u32 = 1;

/// The IPv4 routes again, in a hash keyed by (length, masked address): the fast path
/// looks a destination up once per length in use, longest first, instead of walking the
/// LPM trie (whose depth, and cache misses, grow with the table; the trie stays the
/// reference). A hash probe costs about what a 10-route trie does, so each probe is
/// first asked of the probe filter (`v4_filter_bit`), an array the verifier inlines:
/// only probes that may hit are made. Every length may be in use.
pub const MAX_V4_LENGTHS: usize = 33;

/// The IPv4 direct table (`X0_V4_DIRECT`): one word per /24 of the address space, holding
/// the answer of the routes up to /24 for every address in it (DPDK's DIR-24-8 without
/// the second level). An array lookup is inlined by the verifier, where a hash lookup is
/// kernel calls (costly where returns are mitigated); 64 MiB, preallocated. Routes longer
/// than /24 stay in the exact map: their /24's word says so (`V4Direct::LONGER`) and the
/// fast path probes those lengths first.
pub const V4_DIRECT_ENTRIES: u32 = 1 << 24;
/// The map's elements: two words per u64, since the kernel keeps array elements 8 bytes
/// apart (a map of u32 would take 128 MiB). User space, which maps the array, sees the
/// words in index order.
pub const V4_DIRECT_ELEMENTS: u32 = V4_DIRECT_ENTRIES / 2;

/// A word of the direct table: what the routes up to /24 say about one /24 (an address's
/// index is its top 24 bits). Bit 31: a route covers it; 30: routes longer than /24 lie
/// inside; 29: the route is local; 24..=28: the route's prefix length (user space needs it
/// to know which slots a route owns); 0..=23: the route's next-hop set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V4Direct(pub u32);

impl V4Direct {
    pub const ROUTE: u32 = 1 << 31;
    pub const LONGER: u32 = 1 << 30;
    const LOCAL: u32 = 1 << 29;
    const LEN_SHIFT: u32 = 24;
    const SET_MASK: u32 = (1 << Self::LEN_SHIFT) - 1;

    /// The index of the /24 holding `addr`.
    #[inline(always)]
    pub fn index(addr: [u8; 4]) -> u32 {
        u32::from_be_bytes(addr) >> 8
    }

    /// The word of /24 `index` from the map element holding it (element `index / 2`).
    #[inline(always)]
    pub fn in_element(element: u64, index: u32) -> Self {
        let half = if cfg!(target_endian = "little") {
            index & 1
        } else {
            !index & 1
        };
        Self((element >> (half * 32)) as u32)
    }

    /// The word for `route` (of `prefix_len` <= 24), keeping `self`'s LONGER bit.
    pub fn with_route(self, prefix_len: u8, route: &Route) -> Self {
        const _: () = assert!(MAX_NEXTHOP_SETS <= V4Direct::SET_MASK + 1);
        debug_assert!(prefix_len <= 24 && route.flags & !ROUTE_F_LOCAL == 0);
        let local = if route.flags & ROUTE_F_LOCAL != 0 {
            Self::LOCAL
        } else {
            0
        };
        Self(
            self.0 & Self::LONGER
                | Self::ROUTE
                | local
                | u32::from(prefix_len) << Self::LEN_SHIFT
                | route.nexthop_set & Self::SET_MASK,
        )
    }

    /// No route up to /24 here (the LONGER bit kept).
    pub fn without_route(self) -> Self {
        Self(self.0 & Self::LONGER)
    }

    /// The covering route's prefix length, if a route covers this /24.
    pub fn prefix_len(self) -> Option<u8> {
        (self.0 & Self::ROUTE != 0).then_some((self.0 >> Self::LEN_SHIFT & 0x1f) as u8)
    }

    #[inline(always)]
    pub fn longer(self) -> bool {
        self.0 & Self::LONGER != 0
    }

    #[inline(always)]
    pub fn route(self) -> Option<Route> {
        if self.0 & Self::ROUTE == 0 {
            return None;
        }
        Some(Route {
            nexthop_set: self.0 & Self::SET_MASK,
            flags: if self.0 & Self::LOCAL != 0 {
                ROUTE_F_LOCAL
            } else {
                0
            },
        })
    }
}

/// `X0_V4_FILTER`'s size in 64-bit words: 2^25 bits for the lengths /0../24, one bit per
/// possible prefix, and 2^24 bits that routes longer than /24 share by hash.
pub const V4_FILTER_WORDS: u32 = ((1 << 25) + (1 << 24)) / 64;

/// The filter bit of the route (`prefix_len`, `addr`), or of a destination `addr` probed at
/// `prefix_len` (host bits are ignored). Up to /24 the bit is the prefix's own (set iff the
/// route exists); longer prefixes hash into a shared region (a set bit may be another
/// route's: the probe is made and misses, never the other way round).
#[inline(always)]
pub fn v4_filter_bit(prefix_len: u32, addr: [u8; 4]) -> u32 {
    let a = u32::from_be_bytes(addr);
    if prefix_len == 0 {
        0
    } else if prefix_len <= 24 {
        // Lengths laid out one after another: /1 at 1..3, /2 at 3..7, ... /24 below 2^25.
        (1 << prefix_len) - 1 + (a >> (32 - prefix_len))
    } else {
        let masked = if prefix_len >= 32 {
            a
        } else {
            a & !(u32::MAX >> prefix_len)
        };
        let h = (masked ^ prefix_len.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
        (1 << 25) + (h >> 8)
    }
}

/// Key of `X0_ROUTES_V4_EXACT`: the prefix length and the address with the host bits
/// cleared (network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V4ExactKey {
    pub prefix_len: u32,
    pub addr: [u8; 4],
}

impl V4ExactKey {
    /// The key a destination `addr` has under `prefix_len` (0..=32).
    #[inline(always)]
    pub fn masked(prefix_len: u32, addr: [u8; 4]) -> Self {
        let mask = if prefix_len == 0 {
            0
        } else if prefix_len >= 32 {
            u32::MAX
        } else {
            !(u32::MAX >> prefix_len)
        };
        Self {
            prefix_len,
            addr: (u32::from_be_bytes(addr) & mask).to_be_bytes(),
        }
    }
}

/// The prefix lengths in use, longest first; `count` 0 (no IPv4 routes, or maps from
/// before the exact map) means "use the LPM trie".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V4Lengths {
    pub count: u32,
    pub lengths: [u32; MAX_V4_LENGTHS],
}

impl Default for V4Lengths {
    fn default() -> Self {
        Self {
            count: 0,
            lengths: [0; MAX_V4_LENGTHS],
        }
    }
}

/// Up to [`MAX_NEXTHOPS_PER_SET`] next-hop ids in preference order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHopSet {
    /// How many entries of `nexthops` are used (1..=8).
    pub len: u32,
    pub nexthops: [u32; MAX_NEXTHOPS_PER_SET],
}

/// One next hop: where to send and which MACs to write.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface.
    pub ifindex: u32,
    /// `NH_F_*`.
    pub flags: u32,
    /// Largest IP packet (layer 3 length) the egress link carries; larger ones go to the
    /// kernel, which fragments or answers "packet too big".
    pub mtu: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The neighbour's address (IPv4 in the first 4 bytes unless `NH_F_IPV6`), so that a
    /// restarted daemon can adopt the next hops it finds in the pinned maps.
    pub gateway: [u8; 16],
}

impl NextHop {
    /// The neighbour's address, of the family `NH_F_IPV6` says.
    pub fn gateway_ip(&self) -> core::net::IpAddr {
        if self.flags & NH_F_IPV6 != 0 {
            core::net::IpAddr::from(self.gateway)
        } else {
            let g = self.gateway;
            core::net::IpAddr::from([g[0], g[1], g[2], g[3]])
        }
    }
}

/// `dst_mac` holds the neighbour's resolved MAC address.
pub const NH_F_RESOLVED: u32 = 1;
/// `gateway` is an IPv6 address.
pub const NH_F_IPV6: u32 = 2;

/// `X0_NH_LIVE[id]`: the next hop may carry traffic. Its own 4-byte word, so that one
/// aligned write flips it atomically for every route that uses the next hop.
pub const NH_LIVE: u32 = 1;

/// What the daemon knows of a next hop's health (written by user space only; pinned, so a
/// restarted daemon and `x0-dataplane stats` read it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHopHealth {
    /// `HEALTH_*`.
    pub state: u32,
    /// Flap penalty x 1000 (decays; sets the hold-down).
    pub penalty_milli: u32,
    /// Times traffic moved onto this next hop from another.
    pub switches_to: u64,
    /// Times traffic moved away from it.
    pub switches_from: u64,
    /// Unix time of the last switch to or from it, ns (0: never).
    pub last_switch_unix_ns: u64,
    /// Unix time at which a held-down next hop becomes live, ns.
    pub hold_until_unix_ns: u64,
}

pub const HEALTH_UP: u32 = 0;
pub const HEALTH_DOWN: u32 = 1;
pub const HEALTH_HOLD_DOWN: u32 = 2;

/// `X0_PORTS[ifindex]` (ifindex below `IF_STATS_ARRAY_LEN`): the port's own MAC (frames
/// addressed to another MAC are never forwarded), the neighbours tracked on it (the MACs of
/// its next hops) and the coarse monotonic time (ns) of their last frame. A direct array
/// index and a few compares per frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortState {
    /// `mac_key` of the port's MAC; 0: not an x0tta6bl4 port (no check).
    pub own_mac: u64,
    /// Policy default for traffic arriving here that no rule decides, per policy version
    /// (see policy.rs): `ACTION_ALLOW` (transit) or `ACTION_DENY` (zero-trust); 0: allow.
    pub default_action: [u32; 2],
    /// `mac_key(mac)` of each tracked neighbour; 0: free slot.
    pub macs: [u64; NEIGH_PER_PORT],
    pub seen_ns: [u64; NEIGH_PER_PORT],
}

/// Neighbours tracked per port (a point-to-point mesh link has one).
pub const NEIGH_PER_PORT: usize = 4;

/// A MAC as the integer both sides compare.
pub const fn mac_key(m: [u8; 6]) -> u64 {
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}

/// AF_XDP sockets for BFD (one per interface queue) and the key of their slot:
/// `xsk_slot_key(ifindex, queue)` -> index in `X0_XSKS`.
pub const MAX_XSKS: u32 = 64;
pub const fn xsk_slot_key(ifindex: u32, queue: u32) -> u64 {
    ((ifindex as u64) << 32) | queue as u64
}
/// UDP port of single-hop BFD control packets (RFC 5881).
pub const BFD_CONTROL_PORT: u16 = 3784;

/// Global switches, at index 0 of the config array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `CFG_F_*`.
    pub flags: u32,
    pub _pad: u32,
}

/// Fall back to the kernel FIB (`bpf_fib_lookup`) when no route of ours matches.
pub const CFG_F_FIB_FALLBACK: u32 = 1;

/// A packet and byte counter (per CPU in the maps; user space sums the CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Per-interface counters (per CPU), indexed by ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfCounters {
    /// Frames the program saw arrive on this interface.
    pub rx: Counter,
    /// Frames that arrived here and were redirected to another port.
    pub forwarded: Counter,
    /// Frames that arrived here and went to the kernel stack.
    pub passed: Counter,
    /// Frames that arrived here and were dropped.
    pub dropped: Counter,
    /// Frames redirected out of this interface.
    pub tx: Counter,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` data with explicit padding and no pointers.
    unsafe impl aya::Pod for super::Route {}
    unsafe impl aya::Pod for super::V4ExactKey {}
    unsafe impl aya::Pod for super::V4Lengths {}
    unsafe impl aya::Pod for super::NextHopSet {}
    unsafe impl aya::Pod for super::NextHop {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::IfCounters {}
    unsafe impl aya::Pod for super::NextHopHealth {}
    unsafe impl aya::Pod for super::PortState {}
    unsafe impl aya::Pod for super::policy::PolicyState {}
    unsafe impl aya::Pod for super::policy::RulePairKey {}
    unsafe impl aya::Pod for super::policy::RuleList {}
    unsafe impl aya::Pod for super::policy::RateLimit {}
    unsafe impl aya::Pod for super::policy::CtKey {}
    unsafe impl aya::Pod for super::policy::CtKey4 {}
    unsafe impl aya::Pod for super::policy::CtEntry {}
    unsafe impl aya::Pod for super::policy::Trace {}
    unsafe impl aya::Pod for super::policy::DropEvent {}
    unsafe impl aya::Pod for super::policy::Pending {}
    unsafe impl aya::Pod for super::policy::FragKey {}
    unsafe impl aya::Pod for super::policy::FragPorts {}
}

#[cfg(test)]
mod tests {
    use super::V4ExactKey;

    #[test]
    fn exact_keys_clear_the_host_bits_at_every_length() {
        let a = [198, 51, 100, 77];
        assert_eq!(V4ExactKey::masked(0, a).addr, [0, 0, 0, 0]);
        assert_eq!(V4ExactKey::masked(8, a).addr, [198, 0, 0, 0]);
        assert_eq!(V4ExactKey::masked(20, a).addr, [198, 51, 96, 0]);
        assert_eq!(V4ExactKey::masked(31, a).addr, [198, 51, 100, 76]);
        assert_eq!(V4ExactKey::masked(32, a).addr, a);
        assert_eq!(V4ExactKey::masked(24, a).prefix_len, 24);
    }

    #[test]
    fn direct_words_round_trip_a_route_and_keep_the_longer_bit() {
        use super::{ROUTE_F_LOCAL, Route, V4Direct};
        assert_eq!(V4Direct::index([198, 51, 100, 77]), 0xc63364);
        // Words 2k and 2k+1 side by side in memory are element k.
        let pair: [u32; 2] = [0x8000_0001, 0xc000_0002];
        let element =
            u64::from_ne_bytes(unsafe { core::mem::transmute::<[u32; 2], [u8; 8]>(pair) });
        assert_eq!(V4Direct::in_element(element, 6), V4Direct(pair[0]));
        assert_eq!(V4Direct::in_element(element, 7), V4Direct(pair[1]));
        let empty = V4Direct(V4Direct::LONGER);
        assert_eq!(empty.route(), None);
        assert_eq!(empty.prefix_len(), None);
        for (len, route) in [
            (
                24,
                Route {
                    nexthop_set: 65_535,
                    flags: 0,
                },
            ),
            (
                0,
                Route {
                    nexthop_set: 0,
                    flags: ROUTE_F_LOCAL,
                },
            ),
            (
                13,
                Route {
                    nexthop_set: 7,
                    flags: 0,
                },
            ),
        ] {
            let w = empty.with_route(len, &route);
            assert_eq!(
                (w.route(), w.prefix_len(), w.longer()),
                (Some(route), Some(len), true)
            );
            let plain = V4Direct(0).with_route(len, &route);
            assert!(!plain.longer());
            assert_eq!(w.without_route(), empty);
        }
    }

    #[test]
    fn filter_bits_are_distinct_up_to_24_and_inside_the_filter() {
        use super::{V4_FILTER_WORDS, v4_filter_bit};
        let bits = V4_FILTER_WORDS * 64;
        extern crate std;
        let mut seen = std::collections::HashSet::new();
        // The first and last prefix of every length up to /24: distinct bits.
        for len in 0..=24u32 {
            let last = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            for a in [0u32, last] {
                let bit = v4_filter_bit(len, a.to_be_bytes());
                assert!(bit < 1 << 25, "/{len}");
                assert!(seen.insert(bit) || a == last && len == 0, "/{len} {a:#x}");
            }
        }
        // Host bits do not matter; longer prefixes land in the shared region.
        let a = [198, 51, 100, 77];
        assert_eq!(v4_filter_bit(20, a), v4_filter_bit(20, [198, 51, 96, 0]));
        for len in 25..=32 {
            let bit = v4_filter_bit(len, a);
            assert!((1 << 25..bits).contains(&bit), "/{len}");
            assert_eq!(bit, v4_filter_bit(len, V4ExactKey::masked(len, a).addr));
        }
        assert_ne!(v4_filter_bit(32, a), v4_filter_bit(32, [198, 51, 100, 78]));
    }
}
