//! Zero-trust policy: the compiled form both sides share. See docs/DESIGN.md, "Policy".
//!
//! Two copies of everything (version 0 and 1) live in the same maps, told apart by a
//! version field in each key; `X0_POLICY[0].generation & 1` names the copy in force. User
//! space writes the other copy, then flips the generation with one 4-byte write, so a
//! packet (which reads the generation once) sees the old or the new policy, never a mix.

/// Addresses that match no identity prefix.
pub const IDENTITY_WORLD: u32 = 0;
/// "Any identity" in a rule.
pub const IDENTITY_ANY: u32 = u32::MAX;
/// "Any protocol" in a rule entry.
pub const PROTO_ANY: u8 = 0;

/// Rules per (source, destination) identity pair, wildcards included.
pub const RULES_PER_PAIR: usize = 32;
/// Rule ids are 1..=MAX_RULES.
pub const MAX_RULES: u32 = 16_383;
/// Identity prefixes per address family and version.
pub const MAX_IDENTITY_PREFIXES: u32 = 65_536;
/// (source, destination) pairs with rules, per version.
pub const MAX_RULE_PAIRS: u32 = 65_536;
/// Default connection-tracking capacity (the config can change it).
pub const CT_DEFAULT_ENTRIES: u32 = 262_144;

pub const ACTION_ALLOW: u8 = 1;
pub const ACTION_DENY: u8 = 2;

/// `X0_POLICY[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// Bumped by every policy change; its low bit is the version in force.
    pub generation: u32,
    /// `POLICY_F_*`.
    pub flags: u32,
}

/// Policy is enforced (off: no lookups, no connection tracking).
pub const POLICY_F_ENABLED: u32 = 1;

/// Key of `X0_RULES`: the rules between two identities (either may be `IDENTITY_ANY`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RulePairKey {
    pub version: u32,
    pub src: u32,
    pub dst: u32,
}

/// One compiled rule within a pair.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleEntry {
    /// Destination port range, inclusive (0..=65535 for any).
    pub port_lo: u16,
    pub port_hi: u16,
    /// IP protocol number, or `PROTO_ANY`.
    pub proto: u8,
    /// `ACTION_*`.
    pub action: u8,
    /// Larger is more specific: the most specific allow is the one counted.
    pub specificity: u16,
    pub rule_id: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleList {
    pub len: u32,
    pub entries: [RuleEntry; RULES_PER_PAIR],
}

impl Default for RuleList {
    fn default() -> Self {
        Self {
            len: 0,
            entries: [RuleEntry::default(); RULES_PER_PAIR],
        }
    }
}

/// Upper bounds of a rule's rate limit (packets/s and burst), so that the fast path's
/// token arithmetic cannot overflow.
pub const MAX_RATE_PPS: u64 = 10_000_000;
pub const MAX_BURST: u64 = 10_000_000;

/// `X0_RATE[version * (MAX_RULES + 1) + rule_id]`: a token bucket (rate 0: no limit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub rate_pps: u64,
    pub burst: u64,
    /// Tokens x 1e9 (so that refills of less than one packet add up).
    pub tokens_nano: u64,
    pub last_ns: u64,
}

/// Index of a rule's rate limiter and counter.
pub const fn rule_slot(version: u32, rule_id: u32) -> u32 {
    (version & 1) * (MAX_RULES + 1) + rule_id
}

/// A flow, with its two ends in a canonical order (the lower address/port first), so that
/// both directions find the same entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub addr_a: [u8; 16],
    pub addr_b: [u8; 16],
    pub port_a: u16,
    pub port_b: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 2],
}

/// `CtKey` for an IPv4 flow, in a table of its own: the kernel hashes and compares whole
/// keys, and 16 bytes instead of 40 saved 13-19 ns per packet of an established flow
/// (`x0-bench test-run-loop --routes 10000 --slash24 --policy`, three A/B runs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey4 {
    pub addr_a: [u8; 4],
    pub addr_b: [u8; 4],
    pub port_a: u16,
    pub port_b: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Slots of the per-CPU flow cache (`FlowCacheEntry`), a power of two.
pub const FLOW_CACHE_SLOTS: u32 = 4096;
/// How long a cached flow is passed without its connection-table entry: its time is
/// refreshed at least this often (every idle timeout is far longer), and a cached flow
/// stops being passed at most this long after its entry would have (never: an entry of a
/// flow with packets does not time out).
pub const FLOW_CACHE_REVALIDATE_NS: u64 = 1_000_000_000;

/// A slot of the per-CPU flow cache in front of the IPv4 connection table: an IPv4 flow
/// the table allowed a moment ago, found with an array lookup (the verifier inlines it)
/// instead of a hash lookup (kernel calls). A hit passes the packet as the table would
/// (same generation, the rule's rate and counter); the table's entry is refreshed by the
/// misses, at least every `FLOW_CACHE_REVALIDATE_NS`. Packets that change a TCP flow's
/// state (SYN, FIN, RST) always go to the table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCacheEntry {
    pub key: CtKey4,
    /// When the table last allowed the flow (coarse ns).
    pub checked_ns: u64,
    pub generation: u32,
    pub rule_id: u32,
    /// `FLOW_CACHE_FROM_*`: the directions whose packets may hit (the initiator's, and the
    /// other once the table has seen it, so that its first reply still reaches the table).
    pub ways: u32,
    pub _pad: u32,
}

/// The flow cache slot of an IPv4 flow: a multiplicative hash of its canonical key's
/// fields (ends in canonical order, so both directions share the slot). `a` and `b` are
/// the addresses' bytes as native-endian words (`u32::from_ne_bytes`).
#[inline(always)]
pub const fn flow_cache_slot(a: u32, b: u32, port_a: u16, port_b: u16, proto: u8) -> u32 {
    let ports = (port_a as u32) << 16 | port_b as u32;
    let h = (a.wrapping_mul(0x9e37_79b1) ^ b).wrapping_mul(0x85eb_ca6b) ^ ports ^ proto as u32;
    h.wrapping_mul(0xc2b2_ae35) >> (32 - FLOW_CACHE_SLOTS.trailing_zeros())
}

impl CtKey4 {
    /// The key's slot in the flow cache (`flow_cache_slot`).
    #[inline(always)]
    pub const fn cache_slot(&self) -> u32 {
        flow_cache_slot(
            u32::from_ne_bytes(self.addr_a),
            u32::from_ne_bytes(self.addr_b),
            self.port_a,
            self.port_b,
            self.proto,
        )
    }
}

pub const FLOW_CACHE_FROM_A: u32 = 1;
pub const FLOW_CACHE_FROM_B: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// Coarse monotonic ns (bpf_ktime_get_coarse_ns) of the last packet.
    pub last_ns: u64,
    /// Policy generation the flow was allowed under: a later policy re-checks it.
    pub generation: u32,
    /// The allow rule (0: default allow).
    pub rule_id: u32,
    /// `CT_F_*`.
    pub flags: u32,
    pub _pad: u32,
}

/// The flow was opened by end A (else by end B).
pub const CT_F_INITIATOR_A: u32 = 1;
/// TCP: the reply direction has been seen (established).
pub const CT_F_REPLIED: u32 = 2;
pub const CT_F_FIN_A: u32 = 4;
pub const CT_F_FIN_B: u32 = 8;
pub const CT_F_RST: u32 = 16;

/// Idle timeouts, ns: how long an entry stays valid without packets.
pub const CT_TIMEOUT_TCP_OPENING: u64 = 30_000_000_000;
pub const CT_TIMEOUT_TCP_ESTABLISHED: u64 = 3_600_000_000_000;
pub const CT_TIMEOUT_TCP_CLOSING: u64 = 10_000_000_000;
pub const CT_TIMEOUT_UDP: u64 = 60_000_000_000;
pub const CT_TIMEOUT_OTHER: u64 = 30_000_000_000;

/// The idle timeout of an entry in its current state.
pub const fn ct_timeout(proto: u8, flags: u32) -> u64 {
    match proto {
        6 => {
            if flags & CT_F_RST != 0 || (flags & CT_F_FIN_A != 0 && flags & CT_F_FIN_B != 0) {
                CT_TIMEOUT_TCP_CLOSING
            } else if flags & CT_F_REPLIED != 0 {
                CT_TIMEOUT_TCP_ESTABLISHED
            } else {
                CT_TIMEOUT_TCP_OPENING
            }
        }
        17 => CT_TIMEOUT_UDP,
        _ => CT_TIMEOUT_OTHER,
    }
}

/// Datagrams being fragmented that policy has seen the first fragment of (LRU, as many
/// as Cilium keeps): later fragments carry no ports, so they take the first fragment's
/// and are judged as packets of that flow.
pub const FRAG_ENTRIES: u32 = 8_192;

/// `X0_FRAGS` key: one datagram (RFC 791 / RFC 8200: addresses, protocol and id).
/// IPv4 addresses fill the first 4 bytes, as in `Flow`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The IPv4 identification (16 bits) or the IPv6 fragment header's (32 bits).
    pub id: u32,
    /// 4 or 6.
    pub family: u8,
    pub proto: u8,
    pub _pad: [u8; 2],
}

/// `X0_FRAGS` value: the ports of the datagram's first fragment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragPorts {
    pub sport: u16,
    pub dport: u16,
}

/// `X0_PENDING[0]` (per CPU): what `x0_forward` decided for a packet before it tail-calls
/// `x0_policy`, which checks policy and then finishes the forwarding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub egress_ifindex: u32,
    pub nexthop: u32,
    pub mtu: u32,
    /// `Reason` the packet is forwarded with (route or FIB).
    pub reason: u32,
    pub generation: u32,
    /// 4 or 6.
    pub family: u8,
    pub default_deny: u8,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The packet's flow, filled in by `x0_policy` (kept here, off the small BPF stack).
    pub flow: Flow,
}

/// What policy looks at in a packet. Aligned to 8 so that the BPF code fills the
/// addresses with 8-byte stores (at Pending's natural offset it called a byte-wise memset).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// 4 or 6.
    pub family: u8,
    pub proto: u8,
    pub tcp_flags: u8,
    pub _pad: u8,
}

/// Slot of `x0_policy` in the `X0_JUMP` program array.
pub const JUMP_POLICY: u32 = 0;

/// Metadata that makes a BPF_PROG_TEST_RUN an explanation: the program then records its
/// decision in `X0_TRACE` and changes no state (no flow entry, no tokens, no counters).
pub const EXPLAIN_MAGIC: u64 = 0x5831_4558_504c_4149; // "X1EXPLAI"

/// `X0_TRACE[0]` (per CPU): what the program decided on an explained packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// `Reason` of the verdict.
    pub reason: u32,
    /// Route prefix length matched (0xff: none / FIB).
    pub route_prefix_len: u32,
    pub nexthop: u32,
    pub egress_ifindex: u32,
    pub src_identity: u32,
    pub dst_identity: u32,
    /// The rule that decided (0: none, the default action).
    pub rule_id: u32,
    /// `TRACE_F_*`.
    pub flags: u32,
}

pub const TRACE_F_POLICY_CHECKED: u32 = 1;
pub const TRACE_F_CONNTRACK_HIT: u32 = 2;
pub const TRACE_F_DEFAULT_ACTION: u32 = 4;

/// Sampled drop event (ring buffer `X0_DROPS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    pub ktime_ns: u64,
    pub ifindex: u32,
    pub reason: u32,
    pub rule_id: u32,
    pub family: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub _pad: [u8; 6],
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// Drop events per second and CPU at most (a flood cannot starve the reader).
pub const DROP_EVENTS_PER_SEC: u64 = 1_000;
