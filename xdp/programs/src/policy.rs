//! Zero-trust policy on forwarded packets: connection tracking first (replies and known
//! flows pass), then for a new flow the identities of both ends and the rules between
//! them (a fixed number of lookups, whatever the number of rules), then the ingress
//! interface's default. See docs/DESIGN.md, "Policy".

use core::ffi::c_void;

use aya_ebpf::{helpers::bpf_loop, maps::lpm_trie::Key, programs::XdpContext};
use x0_common::{
    Counter, Reason,
    policy::{
        ACTION_DENY, CT_F_FIN_A, CT_F_FIN_B, CT_F_INITIATOR_A, CT_F_REPLIED, CT_F_RST, CtEntry,
        CtKey, CtKey4, DROP_EVENTS_PER_SEC, DropEvent, FLOW_CACHE_FROM_A, FLOW_CACHE_FROM_B,
        FLOW_CACHE_REVALIDATE_NS, Flow, FlowCacheEntry, FragKey, FragPorts, IDENTITY_ANY,
        IDENTITY_WORLD, POLICY_F_ENABLED, PROTO_ANY, RULES_PER_PAIR, RuleList, RulePairKey,
        TRACE_F_CONNTRACK_HIT, TRACE_F_DEFAULT_ACTION, TRACE_F_POLICY_CHECKED, ct_timeout,
        flow_cache_slot, rule_slot,
    },
};

use crate::{
    l3::{Frag, Upper},
    maps::{
        X0_CT, X0_CT4, X0_DROP_BUDGET, X0_DROPS, X0_FLOW_CACHE, X0_FRAGS, X0_IDENT_V4, X0_IDENT_V6,
        X0_POLICY, X0_RATE, X0_RULE_STATS, X0_RULES, coarse_now_ns, trace,
    },
    packet::{Ipv4Hdr, header_at},
};

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;
const TCP_SYN: u8 = 0x02;

/// The generation in force, if policy is on.
#[inline(always)]
pub fn generation() -> Option<u32> {
    let state = X0_POLICY.get(0)?;
    (state.flags & POLICY_F_ENABLED != 0).then_some(state.generation)
}

/// Fills in the ports of `f` (and TCP flags) from the packet's transport header at
/// `upper.l4`; `f` has its addresses and protocol. ICMP echo uses its identifier as the
/// source port, so that request and reply are one flow. A later fragment has no
/// transport header: it takes the ports its datagram's first fragment had, which that
/// one left in X0_FRAGS (unless `explain`, which changes nothing).
#[inline(always)]
pub fn read_flow(
    ctx: &XdpContext,
    f: &mut Flow,
    upper: &Upper,
    explain: bool,
) -> Result<(), Reason> {
    f.sport = 0;
    f.dport = 0;
    f.tcp_flags = 0;
    if let Frag::Later(id) = upper.frag {
        return fragment_ports(f, id);
    }
    let l4 = upper.l4;
    match f.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let p = ports(ctx, f.proto, l4).ok_or(Reason::DropMalformedL4)?;
            (f.sport, f.dport, f.tcp_flags) = p;
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            if let Some(h) = header_at::<[u8; 8]>(ctx, l4) {
                let h = unsafe { &*h };
                // Echo request / reply (ICMP 8/0, ICMPv6 128/129): the identifier.
                if matches!(h[0], 0 | 8 | 128 | 129) {
                    f.sport = u16::from_be_bytes([h[4], h[5]]);
                }
            }
        }
        _ => {}
    }
    if let Frag::First(id) = upper.frag
        && !explain
    {
        remember_fragment(f, id);
    }
    Ok(())
}

/// A later fragment's ports: its first fragment's. Calls of their own (here and in
/// `remember_fragment`): the key's 40 bytes stay off the forwarding path's stack.
#[inline(never)]
fn fragment_ports(f: &mut Flow, id: u32) -> Result<(), Reason> {
    let ports = unsafe { X0_FRAGS.get(frag_key(f, id)) }.ok_or(Reason::DropFragmentUnknown)?;
    f.sport = ports.sport;
    f.dport = ports.dport;
    Ok(())
}

/// A first fragment's ports, for the later fragments of its datagram. LRU: a full table
/// forgets the oldest datagram, whose later fragments then drop.
#[inline(never)]
fn remember_fragment(f: &Flow, id: u32) {
    let ports = FragPorts {
        sport: f.sport,
        dport: f.dport,
    };
    let _ = X0_FRAGS.insert(frag_key(f, id), ports, 0);
}

#[inline(always)]
fn frag_key(f: &Flow, id: u32) -> FragKey {
    FragKey {
        src: f.src,
        dst: f.dst,
        id,
        family: f.family,
        proto: f.proto,
        _pad: [0; 2],
    }
}

/// The source and destination ports (and, for TCP, the flags) of a TCP or UDP header at
/// `l4`; None if the frame is too short for it (or `proto` is neither).
#[inline(always)]
fn ports(ctx: &XdpContext, proto: u8, l4: usize) -> Option<(u16, u16, u8)> {
    let be = |h: &[u8]| {
        (
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[2], h[3]]),
        )
    };
    match proto {
        IPPROTO_TCP => {
            let h = unsafe { &*header_at::<[u8; 20]>(ctx, l4)? };
            let (sport, dport) = be(h);
            Some((sport, dport, h[13]))
        }
        IPPROTO_UDP => {
            let h = unsafe { &*header_at::<[u8; 8]>(ctx, l4)? };
            let (sport, dport) = be(h);
            Some((sport, dport, 0))
        }
        _ => None,
    }
}

/// The policy verdict for a packet about to be forwarded. `Err` carries the drop reason.
/// A function of its own (not inlined): the BPF stack is 512 bytes per call chain, and the
/// forwarding path's locals and policy's must not share one frame.
#[inline(never)]
pub fn check(
    ctx: &XdpContext,
    f: &Flow,
    generation: u32,
    default_deny: bool,
    explain: bool,
) -> Result<(), Reason> {
    let (key, from_a) = ct_key(f);
    // The coarse clock (4 ms here) is far cheaper than the precise one, and flow
    // timeouts are seconds; token refills follow it in 4 ms steps.
    let now = coarse_now_ns();
    // A known flow allowed under an older policy is judged again, in its original
    // direction (a reply is not a new flow of its own).
    let mut revalidate_reply = false;
    let mut known = false;
    if let Some(entry) = key.entry() {
        let e = unsafe { &mut *entry };
        let fresh = fresh(e, f, now);
        if fresh && e.generation == generation {
            trace(explain, |t| {
                t.flags |= TRACE_F_CONNTRACK_HIT | TRACE_F_POLICY_CHECKED;
                t.rule_id = e.rule_id;
            });
            rate_limit(generation, e.rule_id, now, explain)
                .map_err(|r| emit(ctx, f, r, e.rule_id, explain))?;
            if !explain {
                refresh(e, f, from_a, generation, now);
            }
            return Ok(());
        }
        if fresh {
            known = true;
            revalidate_reply = from_a != (e.flags & CT_F_INITIATOR_A != 0);
        }
    }

    let rule = match evaluate(f, generation, explain, revalidate_reply) {
        Decision::Deny(rule) => return Err(emit(ctx, f, Reason::DropPolicyDeny, rule, explain)),
        Decision::Allow(rule) => rule,
        Decision::NoMatch if default_deny => {
            trace(explain, |t| t.flags |= TRACE_F_DEFAULT_ACTION);
            return Err(emit(ctx, f, Reason::DropDefaultDeny, 0, explain));
        }
        Decision::NoMatch => {
            trace(explain, |t| t.flags |= TRACE_F_DEFAULT_ACTION);
            0
        }
    };
    rate_limit(generation, rule, now, explain).map_err(|r| emit(ctx, f, r, rule, explain))?;
    if explain {
        return Ok(());
    }
    if known && let Some(entry) = key.entry() {
        let e = unsafe { &mut *entry };
        e.generation = generation;
        e.rule_id = rule;
        refresh(e, f, from_a, generation, now);
        return Ok(());
    }
    let mut entry = CtEntry {
        last_ns: now,
        generation,
        rule_id: rule,
        flags: if from_a { CT_F_INITIATOR_A } else { 0 },
        _pad: 0,
    };
    track(&mut entry, f, from_a);
    if key.insert(entry).is_err() {
        // Full: existing flows keep their entries; a new one is refused rather than let
        // through untracked (its replies would then be judged as new flows).
        return Err(emit(ctx, f, Reason::DropConntrackFull, rule, explain));
    }
    count_rule(generation, rule);
    Ok(())
}

/// `x0_forward`'s shortcut: a flow the connection table knows, allowed under the policy
/// in force and within its rule's rate, is refreshed, takes its token and is counted as
/// `check` would; anything else changes nothing and returns false, and `x0_policy` judges
/// the packet in full (and sends the drop events). Saves the tail call, the second parse
/// and the hand-over through X0_PENDING on every packet of an established flow. An IPv4
/// flow allowed a moment ago is found in this CPU's flow cache (`FlowCacheEntry`) without
/// the table's hash lookup.
#[inline(never)]
pub fn established(f: &Flow, generation: u32) -> bool {
    let (key, from_a) = ct_key(f);
    let now = coarse_now_ns();
    let cache = match &key {
        FlowKey::V4(k) => X0_FLOW_CACHE
            .get_ptr_mut(k.cache_slot())
            .map(|c| (unsafe { &mut *c }, k)),
        FlowKey::V6(_) => None,
    };
    let way = if from_a {
        FLOW_CACHE_FROM_A
    } else {
        FLOW_CACHE_FROM_B
    };
    let state_change = f.proto == IPPROTO_TCP && f.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0;
    if let Some((c, k)) = &cache
        && c.key == **k
        && !state_change
        && cache_answers(c, generation, way, now)
    {
        return take_cached(c, generation, now);
    }
    let Some(entry) = key.entry() else {
        return false;
    };
    let e = unsafe { &mut *entry };
    if !fresh(e, f, now)
        || e.generation != generation
        || rate_limit(generation, e.rule_id, now, false).is_err()
    {
        return false;
    }
    refresh(e, f, from_a, generation, now);
    if let Some((c, k)) = cache
        && !state_change
    {
        let initiator = if e.flags & CT_F_INITIATOR_A != 0 {
            FLOW_CACHE_FROM_A
        } else {
            FLOW_CACHE_FROM_B
        };
        let replied = if e.flags & CT_F_REPLIED != 0 {
            FLOW_CACHE_FROM_A | FLOW_CACHE_FROM_B
        } else {
            0
        };
        *c = FlowCacheEntry {
            key: *k,
            checked_ns: now,
            generation,
            rule_id: e.rule_id,
            ways: initiator | replied,
            _pad: 0,
        };
    }
    true
}

/// What the flow cache says about an IPv4 packet (`cached_v4`).
pub enum Cached {
    /// Allowed: its rule's token is taken and the packet counted.
    Pass,
    /// Over its rule's rate: `x0_policy` judges it in full (and sends the drop event).
    Judge,
    /// Not answered here: the connection table decides (`established`).
    Miss,
}

/// `x0_forward`'s first shortcut, for an IPv4 TCP or UDP packet: its flow's slot in this
/// CPU's flow cache, the key compared in registers straight from the headers. Half the
/// cost of policy on an established flow went into what this skips: building the `Flow`
/// in X0_PENDING, the canonical key on the stack (a call of memset for its padding) and
/// the call of `established`.
#[inline(always)]
pub fn cached_v4(ctx: &XdpContext, ip: &Ipv4Hdr, l4: usize, generation: u32) -> Cached {
    let proto = ip.protocol;
    // Not TCP or UDP, or a packet that changes a TCP flow's state: the table's.
    let Some((sport, dport, tcp_flags)) = ports(ctx, proto, l4) else {
        return Cached::Miss;
    };
    if tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
        return Cached::Miss;
    }
    // `a_first`'s order: addresses compared as bytes (big-endian numbers), then ports.
    let (src, dst) = (u32::from_be_bytes(ip.src), u32::from_be_bytes(ip.dst));
    let from_a = src < dst || (src == dst && sport <= dport);
    let (a, b, port_a, port_b) = if from_a {
        (ip.src, ip.dst, sport, dport)
    } else {
        (ip.dst, ip.src, dport, sport)
    };
    let (a, b) = (u32::from_ne_bytes(a), u32::from_ne_bytes(b));
    let Some(c) = X0_FLOW_CACHE.get_ptr_mut(flow_cache_slot(a, b, port_a, port_b, proto)) else {
        return Cached::Miss;
    };
    let c = unsafe { &*c };
    let way = if from_a {
        FLOW_CACHE_FROM_A
    } else {
        FLOW_CACHE_FROM_B
    };
    let now = coarse_now_ns();
    if key_words(c) != ct_key4_words(a, b, port_a, port_b, proto)
        || !cache_answers(c, generation, way, now)
    {
        return Cached::Miss;
    }
    if take_cached(c, generation, now) {
        Cached::Pass
    } else {
        Cached::Judge
    }
}

// `ct_key4_words` packs a `CtKey4` by these offsets.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(CtKey4, addr_a) == 0 && offset_of!(CtKey4, addr_b) == 4);
    assert!(offset_of!(CtKey4, port_a) == 8 && offset_of!(CtKey4, port_b) == 10);
    assert!(offset_of!(CtKey4, proto) == 12 && size_of::<CtKey4>() == 16);
    assert!(offset_of!(FlowCacheEntry, key) == 0);
};

/// The two little-endian 8-byte words of the `CtKey4` of these fields (padding zero).
#[inline(always)]
fn ct_key4_words(a: u32, b: u32, port_a: u16, port_b: u16, proto: u8) -> [u64; 2] {
    [
        a as u64 | (b as u64) << 32,
        port_a as u64 | (port_b as u64) << 16 | (proto as u64) << 32,
    ]
}

/// The cached key's words: two 8-byte loads (map values are 8-aligned), where comparing
/// the fields of byte arrays would load byte by byte.
#[inline(always)]
fn key_words(c: &FlowCacheEntry) -> [u64; 2] {
    let words = c as *const FlowCacheEntry as *const u64;
    unsafe { [*words, *words.add(1)] }
}

/// A cached flow whose key matched may be answered from its slot: allowed under the
/// policy in force, in a direction the table has seen, and checked against the table
/// within `FLOW_CACHE_REVALIDATE_NS`. (Packets that change TCP state never get here.)
#[inline(always)]
fn cache_answers(c: &FlowCacheEntry, generation: u32, way: u32, now: u64) -> bool {
    c.generation == generation
        && c.ways & way != 0
        && now.saturating_sub(c.checked_ns) < FLOW_CACHE_REVALIDATE_NS
}

/// A packet the cache answers: takes its rule's token (false when over the rate) and
/// counts it, as `check` would.
#[inline(always)]
fn take_cached(c: &FlowCacheEntry, generation: u32, now: u64) -> bool {
    if rate_limit(generation, c.rule_id, now, false).is_err() {
        return false;
    }
    count_rule(generation, c.rule_id);
    true
}

/// A packet of a flow its entry allows: the entry's time and TCP state move, its rule
/// counts the packet.
#[inline(always)]
fn refresh(e: &mut CtEntry, f: &Flow, from_a: bool, generation: u32, now: u64) {
    e.last_ns = now;
    track(e, f, from_a);
    count_rule(generation, e.rule_id);
}

/// The flow's entry has not timed out.
#[inline(always)]
fn fresh(e: &CtEntry, f: &Flow, now: u64) -> bool {
    now.saturating_sub(e.last_ns) < ct_timeout(f.proto, e.flags)
}

/// Follows a TCP flow's state from its flags (replies seen, FINs, RST).
#[inline(always)]
fn track(e: &mut CtEntry, f: &Flow, from_a: bool) {
    if from_a != (e.flags & CT_F_INITIATOR_A != 0) {
        e.flags |= CT_F_REPLIED;
    }
    if f.proto == IPPROTO_TCP {
        if f.tcp_flags & TCP_RST != 0 {
            e.flags |= CT_F_RST;
        }
        if f.tcp_flags & TCP_FIN != 0 {
            e.flags |= if from_a { CT_F_FIN_A } else { CT_F_FIN_B };
        }
    }
}

enum Decision {
    Allow(u32),
    Deny(u32),
    NoMatch,
}

/// The identity of an address: the longest identity prefix that contains it.
#[inline(always)]
fn identity(family: u8, addr: &[u8; 16], version: u8) -> u32 {
    if family == 4 {
        let key = Key::new(40, [version, addr[0], addr[1], addr[2], addr[3]]);
        X0_IDENT_V4.get(key).copied().unwrap_or(IDENTITY_WORLD)
    } else {
        let mut data = [0u8; 17];
        data[0] = version;
        data[1..].copy_from_slice(addr);
        X0_IDENT_V6
            .get(Key::new(136, data))
            .copied()
            .unwrap_or(IDENTITY_WORLD)
    }
}

/// Rules between the two identities, with wildcards: four lookups at most. Deny wins; of
/// the allows, the most specific.
/// `reversed`: judge the flow in the other direction (a reply whose flow is re-checked).
#[inline(never)]
fn evaluate(f: &Flow, generation: u32, explain: bool, reversed: bool) -> Decision {
    let version = generation & 1;
    let (src_addr, dst_addr, dport) = if reversed {
        (&f.dst, &f.src, f.sport)
    } else {
        (&f.src, &f.dst, f.dport)
    };
    let src = identity(f.family, src_addr, version as u8);
    let dst = identity(f.family, dst_addr, version as u8);
    trace(explain, |t| {
        t.flags |= TRACE_F_POLICY_CHECKED;
        t.src_identity = src;
        t.dst_identity = dst;
    });
    let mut scan = Scan {
        list: core::ptr::null(),
        proto: f.proto,
        dport,
        deny: 0,
        best: 0,
        best_spec: 0,
    };
    let pairs = [
        (src, dst),
        (src, IDENTITY_ANY),
        (IDENTITY_ANY, dst),
        (IDENTITY_ANY, IDENTITY_ANY),
    ];
    for (s, d) in pairs {
        let Some(list) = X0_RULES.get_ptr(RulePairKey {
            version,
            src: s,
            dst: d,
        }) else {
            continue;
        };
        scan.list = list;
        let len = unsafe { (*list).len }.min(RULES_PER_PAIR as u32);
        // bpf_loop: the verifier checks the body once, not once per rule.
        unsafe {
            bpf_loop(
                len,
                scan_entry as *mut c_void,
                &mut scan as *mut Scan as *mut c_void,
                0,
            );
        }
        if scan.deny != 0 {
            let rule = scan.deny;
            trace(explain, |t| t.rule_id = rule);
            return Decision::Deny(rule);
        }
    }
    if scan.best == 0 {
        return Decision::NoMatch;
    }
    let rule = scan.best;
    trace(explain, |t| t.rule_id = rule);
    Decision::Allow(rule)
}

/// State of the scan of one rule list.
struct Scan {
    list: *const RuleList,
    proto: u8,
    dport: u16,
    /// First deny rule that matched (0: none).
    deny: u32,
    best: u32,
    best_spec: u16,
}

/// One rule of the list: returns 1 to stop (a deny matched), 0 to go on.
extern "C" fn scan_entry(index: u32, ctx: *mut c_void) -> i64 {
    let scan = unsafe { &mut *(ctx as *mut Scan) };
    if index as usize >= RULES_PER_PAIR || scan.list.is_null() {
        return 1;
    }
    let e = unsafe { &(*scan.list).entries[index as usize] };
    if (e.proto != PROTO_ANY && e.proto != scan.proto)
        || scan.dport < e.port_lo
        || scan.dport > e.port_hi
    {
        return 0;
    }
    if e.action == ACTION_DENY {
        scan.deny = e.rule_id;
        return 1;
    }
    if scan.best == 0 || e.specificity > scan.best_spec {
        scan.best = e.rule_id;
        scan.best_spec = e.specificity;
    }
    0
}

/// The rule's token bucket (if it has a rate): refill by elapsed time, take one token.
#[inline(always)]
fn rate_limit(generation: u32, rule: u32, now: u64, explain: bool) -> Result<(), Reason> {
    if rule == 0 {
        return Ok(());
    }
    let Some(b) = X0_RATE.get_ptr_mut(rule_slot(generation, rule)) else {
        return Ok(());
    };
    let b = unsafe { &mut *b };
    if b.rate_pps == 0 {
        return Ok(());
    }
    // Racy across CPUs by design: a bucket shared by all CPUs without a lock can let a
    // few extra packets through under contention, never fewer.
    // User space bounds rate (<= 10^7/s) and burst (<= 10^7), and the elapsed time is
    // capped at 10 s: the products stay far below 2^64 (the BPF target has no 128-bit
    // multiply for a saturating one).
    let cap = b.burst * 1_000_000_000;
    let elapsed = now.saturating_sub(b.last_ns).min(10_000_000_000);
    let tokens = (b.tokens_nano + elapsed * b.rate_pps).min(cap);
    if tokens < 1_000_000_000 {
        return Err(Reason::DropRateLimited);
    }
    if !explain {
        b.tokens_nano = tokens - 1_000_000_000;
        b.last_ns = now;
    }
    Ok(())
}

#[inline(always)]
fn count_rule(generation: u32, rule: u32) {
    if let Some(c) = X0_RULE_STATS.get_ptr_mut(rule_slot(generation, rule)) {
        let c: &mut Counter = unsafe { &mut *c };
        c.packets += 1;
    }
}

/// A flow's key in its family's connection table.
enum FlowKey {
    V4(CtKey4),
    V6(CtKey),
}

impl FlowKey {
    #[inline(always)]
    fn entry(&self) -> Option<*mut CtEntry> {
        match self {
            FlowKey::V4(k) => X0_CT4.get_ptr_mut(k),
            FlowKey::V6(k) => X0_CT.get_ptr_mut(k),
        }
    }

    #[inline(always)]
    fn insert(&self, entry: CtEntry) -> Result<(), i32> {
        match self {
            FlowKey::V4(k) => X0_CT4.insert(k, entry, 0),
            FlowKey::V6(k) => X0_CT.insert(k, entry, 0),
        }
    }
}

/// The flow key with the ends in canonical order, and whether the packet comes from end A.
#[inline(always)]
fn ct_key(f: &Flow) -> (FlowKey, bool) {
    let from_a = a_first(f);
    let (a, b, port_a, port_b) = if from_a {
        (&f.src, &f.dst, f.sport, f.dport)
    } else {
        (&f.dst, &f.src, f.dport, f.sport)
    };
    let key = if f.family == 4 {
        FlowKey::V4(CtKey4 {
            addr_a: [a[0], a[1], a[2], a[3]],
            addr_b: [b[0], b[1], b[2], b[3]],
            port_a,
            port_b,
            proto: f.proto,
            _pad: [0; 3],
        })
    } else {
        FlowKey::V6(CtKey {
            addr_a: *a,
            addr_b: *b,
            port_a,
            port_b,
            proto: f.proto,
            family: f.family,
            _pad: [0; 2],
        })
    };
    (key, from_a)
}

/// Whether the packet's source is end A: the lower address, or on equal addresses the
/// lower port. (An IPv4 flow's addresses fill the first 4 bytes, the rest zero.)
#[inline(always)]
fn a_first(f: &Flow) -> bool {
    let mut i = 0;
    while i < 16 {
        if f.src[i] != f.dst[i] {
            return f.src[i] < f.dst[i];
        }
        i += 1;
    }
    f.sport <= f.dport
}

/// Takes one event from this CPU's budget (at most DROP_EVENTS_PER_SEC per second), so
/// that a flood of drops cannot flood the reader. Returns the time if there was one.
#[inline(always)]
fn drop_budget() -> Option<u64> {
    let budget = X0_DROP_BUDGET.get_ptr_mut(0)?;
    let budget = unsafe { &mut *budget };
    let now = coarse_now_ns();
    if now.saturating_sub(budget[0]) >= 1_000_000_000 {
        budget[0] = now;
        budget[1] = 0;
    }
    if budget[1] >= DROP_EVENTS_PER_SEC {
        return None;
    }
    budget[1] += 1;
    Some(now)
}

/// A sampled drop event for a drop outside policy (malformed, policy unavailable, ...):
/// the interface and the reason, no flow.
#[inline(never)]
pub fn emit_basic(ctx: &XdpContext, reason: Reason) {
    let Some(now) = drop_budget() else { return };
    if let Some(mut entry) = X0_DROPS.reserve::<DropEvent>(0) {
        let e = entry.as_mut_ptr();
        unsafe {
            core::ptr::write_bytes(e, 0, 1);
            (*e).ktime_ns = now;
            (*e).ifindex = ctx.ingress_ifindex() as u32;
            (*e).reason = reason as u32;
        }
        entry.submit(0);
    }
}

/// Whether `check` already sent the event for this drop reason.
pub fn emitted_by_policy(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::DropPolicyDeny
            | Reason::DropDefaultDeny
            | Reason::DropRateLimited
            | Reason::DropConntrackFull
    )
}

/// Sends a sampled drop event (at most DROP_EVENTS_PER_SEC per CPU) and returns `reason`.
#[inline(never)]
pub fn emit(ctx: &XdpContext, f: &Flow, reason: Reason, rule: u32, explain: bool) -> Reason {
    if explain {
        return reason;
    }
    let Some(now) = drop_budget() else {
        return reason;
    };
    // Written in place in the ring buffer: no copy on the (small) BPF stack.
    if let Some(mut entry) = X0_DROPS.reserve::<DropEvent>(0) {
        let e = entry.as_mut_ptr();
        unsafe {
            (*e).ktime_ns = now;
            (*e).ifindex = ctx.ingress_ifindex() as u32;
            (*e).reason = reason as u32;
            (*e).rule_id = rule;
            (*e).family = f.family;
            (*e).proto = f.proto;
            (*e).sport = f.sport;
            (*e).dport = f.dport;
            (*e)._pad = [0; 6];
            (*e).src = f.src;
            (*e).dst = f.dst;
        }
        entry.submit(0);
    }
    reason
}
