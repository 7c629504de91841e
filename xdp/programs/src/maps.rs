//! The maps, declared pinned by name so that a restarted daemon adopts them
//! (aya reuses a pinned map of the same name under its pin path), and the counting.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::{
        Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, ProgramArray,
        RingBuf, XskMap,
    },
    programs::XdpContext,
};
use x0_common::{
    Config, Counter, IF_STATS_ARRAY_LEN, IfCounters, MAX_NEXTHOP_SETS, MAX_NEXTHOPS, MAX_PORTS,
    MAX_ROUTES_V4, MAX_ROUTES_V6, MAX_XSKS, NEIGH_PER_PORT, NextHop, NextHopHealth, NextHopSet,
    PortState, Route, V4_DIRECT_ELEMENTS, V4_FILTER_WORDS, V4ExactKey, V4Lengths, mac_key,
    policy::{
        ACTION_DENY, CT_DEFAULT_ENTRIES, CtEntry, CtKey, CtKey4, FLOW_CACHE_SLOTS, FRAG_ENTRIES,
        FlowCacheEntry, FragKey, FragPorts, MAX_IDENTITY_PREFIXES, MAX_RULE_PAIRS, MAX_RULES,
        Pending, PolicyState, RateLimit, RuleList, RulePairKey, Trace,
    },
    reason::{REASON_COUNT, Verdict},
};

use crate::{
    forward::Outcome,
    packet::{self, EthHdr},
};

#[map]
pub static X0_ROUTES_V4: LpmTrie<[u8; 4], Route> = LpmTrie::pinned(MAX_ROUTES_V4, 0);
#[map]
pub static X0_ROUTES_V6: LpmTrie<[u8; 16], Route> = LpmTrie::pinned(MAX_ROUTES_V6, 0);
/// The IPv4 routes by (length, masked address), and the lengths in use (see
/// `MAX_V4_LENGTHS`). Not preallocated: a router with few routes pays for few.
#[map]
pub static X0_ROUTES_V4_EXACT: HashMap<V4ExactKey, Route> =
    HashMap::pinned(MAX_ROUTES_V4, BPF_F_NO_PREALLOC);
#[map]
pub static X0_V4_LENGTHS: Array<V4Lengths> = Array::pinned(1, 0);
/// Which exact-map probes may hit (`x0_common::v4_filter_bit`). Memory-mapped by user
/// space, which sets a route's bit before writing the route and clears it after deleting.
#[map]
pub static X0_V4_FILTER: Array<u64> = Array::pinned(V4_FILTER_WORDS, BPF_F_MMAPABLE);
/// The answer of the routes up to /24 per /24 (`x0_common::V4Direct`), two per element,
/// memory-mapped and written by user space.
#[map]
pub static X0_V4_DIRECT: Array<u64> = Array::pinned(V4_DIRECT_ELEMENTS, BPF_F_MMAPABLE);
#[map]
pub static X0_NH_SETS: Array<NextHopSet> = Array::pinned(MAX_NEXTHOP_SETS, 0);
#[map]
pub static X0_NEXTHOPS: Array<NextHop> = Array::pinned(MAX_NEXTHOPS, 0);
/// Egress ports, keyed by ifindex: a frame is only redirected to an attached interface.
#[map]
pub static X0_TX_PORTS: DevMapHash = DevMapHash::pinned(MAX_PORTS, 0);
#[map]
pub static X0_CONFIG: Array<Config> = Array::pinned(1, 0);
/// One counter per `Reason`.
#[map]
pub static X0_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(REASON_COUNT, 0);
#[map]
pub static X0_IF_STATS: PerCpuArray<IfCounters> = PerCpuArray::pinned(IF_STATS_ARRAY_LEN, 0);
#[map]
pub static X0_IF_STATS_HI: PerCpuHashMap<u32, IfCounters> = PerCpuHashMap::pinned(MAX_PORTS, 0);

/// Liveness word per next hop (`NH_LIVE`).
#[map]
pub static X0_NH_LIVE: Array<u32> = Array::pinned(MAX_NEXTHOPS, 0);
/// Packets and bytes forwarded through each next hop.
#[map]
pub static X0_NH_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(MAX_NEXTHOPS, 0);
/// Written by user space only; declared here so that it is created and pinned with the rest.
#[map]
pub static X0_NH_HEALTH: Array<NextHopHealth> = Array::pinned(MAX_NEXTHOPS, 0);
/// Passive liveness: per port, its tracked neighbours and when each last sent a frame.
/// User space fills in the MACs; the program only stamps.
#[map]
pub static X0_PORTS: Array<PortState> = Array::pinned(IF_STATS_ARRAY_LEN, 0);

/// BFD's AF_XDP sockets, and which slot serves an (ifindex, queue).
#[map]
pub static X0_XSKS: XskMap = XskMap::pinned(MAX_XSKS, 0);
#[map]
pub static X0_XSK_SLOTS: HashMap<u64, u32> = HashMap::pinned(MAX_XSKS, 0);

/// Policy: the generation in force, identities by prefix (the version is the first key
/// byte), rules by identity pair, rate limiters and counters by rule, flows, drop events.
#[map]
pub static X0_POLICY: Array<PolicyState> = Array::pinned(1, 0);
#[map]
pub static X0_IDENT_V4: LpmTrie<[u8; 5], u32> = LpmTrie::pinned(2 * MAX_IDENTITY_PREFIXES, 0);
#[map]
pub static X0_IDENT_V6: LpmTrie<[u8; 17], u32> = LpmTrie::pinned(2 * MAX_IDENTITY_PREFIXES, 0);
#[map]
pub static X0_RULES: HashMap<RulePairKey, RuleList> =
    HashMap::pinned(2 * MAX_RULE_PAIRS, BPF_F_NO_PREALLOC);
#[map]
pub static X0_RATE: Array<RateLimit> = Array::pinned(2 * (MAX_RULES + 1), 0);
#[map]
pub static X0_RULE_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(2 * (MAX_RULES + 1), 0);
#[map]
pub static X0_CT: HashMap<CtKey, CtEntry> = HashMap::pinned(CT_DEFAULT_ENTRIES, 0);
#[map]
pub static X0_CT4: HashMap<CtKey4, CtEntry> = HashMap::pinned(CT_DEFAULT_ENTRIES, 0);
/// Per CPU: IPv4 flows the connection table allowed a moment ago, by slot.
#[map]
pub static X0_FLOW_CACHE: PerCpuArray<FlowCacheEntry> = PerCpuArray::pinned(FLOW_CACHE_SLOTS, 0);
/// Per datagram being fragmented: its first fragment's ports (policy on only).
#[map]
pub static X0_FRAGS: LruHashMap<FragKey, FragPorts> = LruHashMap::pinned(FRAG_ENTRIES, 0);
/// What the program decided on an explained packet (see `EXPLAIN_MAGIC`).
#[map]
pub static X0_TRACE: PerCpuArray<Trace> = PerCpuArray::pinned(1, 0);
#[map]
pub static X0_DROPS: RingBuf = RingBuf::pinned(256 * 1024, 0);
/// Per CPU: [window start ns, events in the window].
#[map]
pub static X0_DROP_BUDGET: PerCpuArray<[u64; 2]> = PerCpuArray::pinned(1, 0);
/// `x0_policy`, tail-called when policy is on (a program of its own keeps each program
/// within the verifier's limits, and costs nothing when policy is off).
#[map]
pub static X0_JUMP: ProgramArray = ProgramArray::pinned(1, 0);
#[map]
pub static X0_PENDING: PerCpuArray<Pending> = PerCpuArray::pinned(1, 0);
/// Per CPU: [jiffies, coarse clock ns] at this CPU's last reading (see `coarse_now_ns`).
#[map]
pub static X0_CLOCK: PerCpuArray<[u64; 2]> = PerCpuArray::pinned(1, 0);

/// The coarse monotonic clock (`bpf_ktime_get_coarse_ns`), read at most once per jiffy per
/// CPU. Both advance on the same timer tick, so the value is the one the helper would
/// return (at most a tick behind, as the coarse clock always is); but the helper is three
/// nested kernel calls (a tenth of the forwarding cost where returns are mitigated, as on
/// AMD with SRSO), while `bpf_jiffies64` is inlined by the verifier into one load.
#[inline(always)]
pub fn coarse_now_ns() -> u64 {
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(c) = X0_CLOCK.get_ptr_mut(0) else {
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    let c = unsafe { &mut *c };
    if c[0] != jiffies || c[1] == 0 {
        c[0] = jiffies;
        c[1] = unsafe { bpf_ktime_get_coarse_ns() };
    }
    c[1]
}

/// Fills in the explanation when the packet is being explained.
#[inline(always)]
pub fn trace(explain: bool, f: impl FnOnce(&mut Trace)) {
    if explain && let Some(t) = X0_TRACE.get_ptr_mut(0) {
        f(unsafe { &mut *t });
    }
}

#[inline(always)]
pub fn config_flags() -> u32 {
    match X0_CONFIG.get(0) {
        Some(c) => c.flags,
        None => 0,
    }
}

#[inline(always)]
fn add(c: &mut Counter, bytes: u64) {
    c.packets += 1;
    c.bytes += bytes;
}

/// Moves the reason counter and the ingress (and egress) interface counters.
#[inline(always)]
pub fn count(ctx: &XdpContext, outcome: &Outcome) {
    let bytes = packet::frame_len(ctx) as u64;
    if let Some(c) = X0_STATS.get_ptr_mut(outcome.reason as u32) {
        add(unsafe { &mut *c }, bytes);
    }
    let ingress = ctx.ingress_ifindex() as u32;
    if let Some(c) = if_counters(ingress) {
        let c = unsafe { &mut *c };
        add(&mut c.rx, bytes);
        match outcome.reason.verdict() {
            Verdict::Forwarded => add(&mut c.forwarded, bytes),
            Verdict::Passed => add(&mut c.passed, bytes),
            Verdict::Dropped => add(&mut c.dropped, bytes),
        }
    }
    if outcome.egress != 0
        && let Some(c) = if_counters(outcome.egress)
    {
        add(unsafe { &mut (*c).tx }, bytes);
    }
    if outcome.nexthop != 0
        && let Some(c) = X0_NH_STATS.get_ptr_mut(outcome.nexthop)
    {
        add(unsafe { &mut *c }, bytes);
    }
}

/// Per-port work done once per frame: stamps the sender's time if it is a neighbour we
/// track (passive liveness: a neighbour that keeps sending is alive, whatever its probes
/// say; the coarse clock is cheap and liveness is judged in tens of milliseconds), and
/// says whether the frame is addressed to this port's MAC, the only frames we may forward.
#[inline(always)]
pub fn ingress_port(ctx: &XdpContext, eth: &EthHdr) -> Ingress {
    let Some(port) = X0_PORTS.get_ptr_mut(ctx.ingress_ifindex() as u32) else {
        return Ingress {
            for_us: true,
            default_deny: [false; 2],
        }; // beyond the array: no check
    };
    let port = unsafe { &mut *port };
    let key = mac_key(eth.src);
    for i in 0..NEIGH_PER_PORT {
        if port.macs[i] == key {
            port.seen_ns[i] = coarse_now_ns();
            break;
        }
    }
    Ingress {
        for_us: port.own_mac == 0 || port.own_mac == mac_key(eth.dst),
        default_deny: [
            port.default_action[0] == ACTION_DENY as u32,
            port.default_action[1] == ACTION_DENY as u32,
        ],
    }
}

/// What the ingress port says about a frame.
pub struct Ingress {
    /// Addressed to the port's MAC (or the port is not checked): may be forwarded.
    pub for_us: bool,
    /// Policy default on this port is deny (zero-trust), per policy version.
    pub default_deny: [bool; 2],
}

impl Ingress {
    /// The default of the policy version of `generation`. (A branch, not an index: LLVM
    /// turns the index into pointer arithmetic the verifier refuses.)
    #[inline(always)]
    pub fn default_deny_in(&self, generation: u32) -> bool {
        if generation & 1 == 0 {
            self.default_deny[0]
        } else {
            self.default_deny[1]
        }
    }
}

/// The interface's counters: a direct index for the usual small ifindex, else a hash
/// entry created on first use.
#[inline(always)]
fn if_counters(ifindex: u32) -> Option<*mut IfCounters> {
    if ifindex < IF_STATS_ARRAY_LEN {
        return X0_IF_STATS.get_ptr_mut(ifindex);
    }
    if let Some(c) = X0_IF_STATS_HI.get_ptr_mut(ifindex) {
        return Some(c);
    }
    // BPF_NOEXIST: never overwrite a counter another CPU just created.
    let _ = X0_IF_STATS_HI.insert(ifindex, IfCounters::default(), BPF_NOEXIST as u64);
    X0_IF_STATS_HI.get_ptr_mut(ifindex)
}
