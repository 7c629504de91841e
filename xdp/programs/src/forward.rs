//! The forwarding decision: parse, classify, look up, rewrite, redirect.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use x0_common::{
    BFD_CONTROL_PORT, CFG_F_FIB_FALLBACK, MAX_NEXTHOPS_PER_SET, MAX_V4_LENGTHS, NH_F_RESOLVED,
    NH_LIVE, ROUTE_F_LOCAL, Reason, Route, V4Direct, V4ExactKey, policy::Flow, reason::Verdict,
    v4_filter_bit, xsk_slot_key,
};

use crate::{
    checksum, fib,
    l3::{self, Frag, Upper},
    maps::Ingress,
    maps::{
        self, X0_NEXTHOPS, X0_NH_LIVE, X0_NH_SETS, X0_PENDING, X0_ROUTES_V4, X0_ROUTES_V4_EXACT,
        X0_ROUTES_V6, X0_TX_PORTS, X0_V4_DIRECT, X0_V4_FILTER, X0_V4_LENGTHS, X0_XSK_SLOTS,
        X0_XSKS,
    },
    packet::{
        ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, EthHdr, Ipv4Hdr, Ipv6Hdr, frame_len, header,
        header_at,
    },
    policy::{self, Cached},
};

/// What to return, why, the egress interface and the next hop (0 when not redirected /
/// not through a next hop of ours).
pub struct Outcome {
    pub action: u32,
    pub reason: Reason,
    pub egress: u32,
    pub nexthop: u32,
}

#[inline(always)]
fn pass(reason: Reason) -> Outcome {
    Outcome {
        action: xdp_action::XDP_PASS,
        reason,
        egress: 0,
        nexthop: 0,
    }
}

#[inline(always)]
fn drop(reason: Reason) -> Outcome {
    Outcome {
        action: xdp_action::XDP_DROP,
        reason,
        egress: 0,
        nexthop: 0,
    }
}

/// Where the lookup says to send the frame.
pub struct Egress {
    ifindex: u32,
    /// Next-hop id (0 for the FIB path).
    nexthop: u32,
    mtu: u32,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    reason: Reason,
}

/// `explain`: the packet is being explained; policy then always goes through `x0_policy`,
/// which records its reasoning.
pub fn process(ctx: &XdpContext, explain: bool) -> Outcome {
    let Some(eth) = header::<EthHdr>(ctx, 0) else {
        return drop(Reason::DropMalformedL2);
    };
    let ingress = maps::ingress_port(ctx, unsafe { &*eth });
    match u16::from_be_bytes(unsafe { (*eth).ethertype }) {
        ETH_P_IP => ipv4(ctx, eth, &ingress, explain),
        ETH_P_IPV6 => ipv6(ctx, eth, &ingress, explain),
        ETH_P_ARP => pass(Reason::PassArp),
        _ => pass(Reason::PassNonIp),
    }
}

fn ipv4(ctx: &XdpContext, eth: *mut EthHdr, ingress: &Ingress, explain: bool) -> Outcome {
    let Some(ip) = header::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return drop(Reason::DropMalformedL3);
    };
    let ip = unsafe { &mut *ip };
    let upper = match l3::ipv4(ctx, ip, frame_len(ctx)) {
        Ok(upper) => upper,
        Err(Reason::PassIpv4Options) if unjudged(ingress) && kernel_forwards_v4(ip.dst) => {
            return drop(Reason::DropPolicyUnjudged);
        }
        Err(reason) => return refuse(reason),
    };
    let tot_len = u16::from_be_bytes(ip.tot_len) as usize;
    let (src, dst) = (ip.src, ip.dst);
    if dst[0] & 0xf0 == 0xe0 || dst == [255; 4] {
        return pass(Reason::PassMulticast);
    }
    if (src[0] == 169 && src[1] == 254) || (dst[0] == 169 && dst[1] == 254) {
        return pass(Reason::PassLinkLocal);
    }
    if is_martian_v4(src, dst) {
        return drop(Reason::DropMartian);
    }

    let egress = match route_v4(dst) {
        Some(route) => match nexthop_egress(&route) {
            Ok(e) => e,
            Err(Reason::PassLocal) => return local(ctx, &upper, ip.ttl),
            Err(reason) => return pass(reason),
        },
        None => {
            if maps::config_flags() & CFG_F_FIB_FALLBACK == 0 {
                return pass(Reason::PassNoRoute);
            }
            match fib::lookup_v4(ctx, ip, tot_len as u16) {
                Ok(e) if X0_TX_PORTS.get(e.ifindex).is_none() => return pass(Reason::PassNoTxPort),
                Ok(e) => Egress {
                    ifindex: e.ifindex,
                    nexthop: 0,
                    mtu: u32::MAX, // bpf_fib_lookup already checked tot_len against the MTU
                    src_mac: e.src_mac,
                    dst_mac: e.dst_mac,
                    reason: Reason::ForwardedFib,
                },
                Err(reason) => return pass(reason),
            }
        }
    };
    if ip.ttl <= 1 {
        return pass(Reason::PassTtlExpired);
    }
    if tot_len as u32 > egress.mtu {
        return pass(Reason::PassTooBig);
    }
    if !ingress.for_us {
        return pass(Reason::PassOtherHost);
    }
    if let Some(generation) = policy::generation() {
        let default_deny = ingress.default_deny_in(generation);
        let mut judge = explain;
        if !explain && upper.frag == Frag::Whole {
            match policy::cached_v4(ctx, ip, upper.l4, generation) {
                Cached::Pass => return forward_v4(ip, eth, &egress),
                Cached::Judge => judge = true,
                Cached::Miss => {}
            }
        }
        let Some(f) = pending_flow() else {
            return drop(Reason::DropPolicyUnavailable);
        };
        flow_v4(f, ip);
        if let Err(reason) = policy::read_flow(ctx, f, &upper, explain) {
            return drop(reason);
        }
        if !judge && policy::established(f, generation) {
            return forward_v4(ip, eth, &egress);
        }
        return to_policy(4, &egress, generation, default_deny);
    }
    forward_v4(ip, eth, &egress)
}

/// Policy is on and the packet came in on a zero-trust (default deny) port: what the
/// kernel would forward for it, unjudged, must not go there.
#[inline(always)]
fn unjudged(ingress: &Ingress) -> bool {
    policy::generation().is_some_and(|g| ingress.default_deny_in(g))
}

/// The kernel would forward a packet to `dst` (not multicast or broadcast, which it keeps,
/// nor an address of this router).
#[inline(always)]
fn kernel_forwards_v4(dst: [u8; 4]) -> bool {
    if dst[0] & 0xf0 == 0xe0 || dst == [255; 4] {
        return false;
    }
    !route_v4(dst).is_some_and(|r| r.flags & ROUTE_F_LOCAL != 0)
}

/// As `kernel_forwards_v4` (multicast was passed before the extension headers were read).
#[inline(always)]
fn kernel_forwards_v6(dst: &[u8; 16]) -> bool {
    let key = aya_ebpf::maps::lpm_trie::Key::new(128, *dst);
    !X0_ROUTES_V6
        .get(&key)
        .is_some_and(|r| r.flags & ROUTE_F_LOCAL != 0)
}

/// A reason found in the headers, as its outcome.
#[inline(always)]
fn refuse(reason: Reason) -> Outcome {
    match reason.verdict() {
        Verdict::Dropped => drop(reason),
        _ => pass(reason),
    }
}

/// The longest-prefix route of `dst`. Its /24's word in the direct table answers for the
/// routes up to /24; where it says longer routes lie inside, those lengths are probed
/// first, longest first, each through the probe filter and, where it says a route may be
/// there, one hash lookup. Without the direct table (turned off: a map of one element),
/// every length is probed so. The LPM trie when no lengths are published (maps of a
/// version before the exact map).
#[inline(always)]
fn route_v4(dst: [u8; 4]) -> Option<Route> {
    let l = X0_V4_LENGTHS.get(0)?;
    if l.count == 0 {
        return X0_ROUTES_V4
            .get(aya_ebpf::maps::lpm_trie::Key::new(32, dst))
            .copied();
    }
    let index = V4Direct::index(dst);
    let (word, shortest) = match X0_V4_DIRECT.get(index / 2) {
        Some(element) => (V4Direct::in_element(*element, index), 25),
        None => (V4Direct(V4Direct::LONGER), 0),
    };
    if word.longer() {
        for i in 0..MAX_V4_LENGTHS {
            if i as u32 >= l.count {
                break;
            }
            let len = l.lengths[i];
            if len < shortest {
                break;
            }
            let bit = v4_filter_bit(len, dst);
            match X0_V4_FILTER.get(bit / 64) {
                Some(w) if *w & (1 << (bit % 64)) != 0 => {}
                _ => continue,
            }
            if let Some(route) = unsafe { X0_ROUTES_V4_EXACT.get(V4ExactKey::masked(len, dst)) } {
                return Some(*route);
            }
        }
    }
    word.route()
}

/// Decrements the TTL (RFC 1624 checksum update), rewrites the MACs and redirects.
#[inline(always)]
pub fn forward_v4(ip: &mut Ipv4Hdr, eth: *mut EthHdr, egress: &Egress) -> Outcome {
    // TTL shares a 16-bit checksum word with the protocol byte.
    let old = u16::from_be_bytes([ip.ttl, ip.protocol]);
    ip.ttl -= 1;
    let new = u16::from_be_bytes([ip.ttl, ip.protocol]);
    ip.check = checksum::update(u16::from_be_bytes(ip.check), old, new).to_be_bytes();
    redirect(eth, egress)
}

const IPPROTO_ICMPV6: u8 = 58;

fn ipv6(ctx: &XdpContext, eth: *mut EthHdr, ingress: &Ingress, explain: bool) -> Outcome {
    let Some(ip) = header::<Ipv6Hdr>(ctx, ETH_HLEN) else {
        return drop(Reason::DropMalformedL3);
    };
    let ip = unsafe { &mut *ip };
    if ip.version_class_flow[0] >> 4 != 6 {
        return drop(Reason::DropMalformedL3);
    }
    let payload_len = u16::from_be_bytes(ip.payload_len) as usize;
    if payload_len + 40 > frame_len(ctx) - ETH_HLEN {
        return drop(Reason::DropMalformedL3);
    }
    let (src, dst) = (&ip.src, &ip.dst);
    if dst[0] == 0xff {
        return pass(Reason::PassMulticast);
    }
    if (src[0] == 0xfe && src[1] & 0xc0 == 0x80) || (dst[0] == 0xfe && dst[1] & 0xc0 == 0x80) {
        return pass(Reason::PassLinkLocal);
    }
    if is_martian_v6(src, dst) {
        return drop(Reason::DropMartian);
    }
    let upper = match l3::ipv6(ctx, ip) {
        Ok(upper) => upper,
        Err(Reason::PassIpv6ExtHeader) if unjudged(ingress) && kernel_forwards_v6(&ip.dst) => {
            return drop(Reason::DropPolicyUnjudged);
        }
        Err(reason) => return refuse(reason),
    };
    if upper.proto == IPPROTO_ICMPV6
        && !matches!(upper.frag, Frag::Later(_))
        && let Some(icmp_type) = header_at::<u8>(ctx, upper.l4)
        && (133..=137).contains(&unsafe { *icmp_type })
    {
        return pass(Reason::PassNdp);
    }

    let key = aya_ebpf::maps::lpm_trie::Key::new(128, ip.dst);
    let egress = match X0_ROUTES_V6.get(&key) {
        Some(route) => match nexthop_egress(route) {
            Ok(e) => e,
            Err(Reason::PassLocal) => return local(ctx, &upper, ip.hop_limit),
            Err(reason) => return pass(reason),
        },
        None => {
            if maps::config_flags() & CFG_F_FIB_FALLBACK == 0 {
                return pass(Reason::PassNoRoute);
            }
            match fib::lookup_v6(ctx, ip, (payload_len + 40) as u16) {
                Ok(e) if X0_TX_PORTS.get(e.ifindex).is_none() => return pass(Reason::PassNoTxPort),
                Ok(e) => Egress {
                    ifindex: e.ifindex,
                    nexthop: 0,
                    mtu: u32::MAX,
                    src_mac: e.src_mac,
                    dst_mac: e.dst_mac,
                    reason: Reason::ForwardedFib,
                },
                Err(reason) => return pass(reason),
            }
        }
    };
    if ip.hop_limit <= 1 {
        return pass(Reason::PassTtlExpired);
    }
    if (payload_len + 40) as u32 > egress.mtu {
        return pass(Reason::PassTooBig);
    }
    if !ingress.for_us {
        return pass(Reason::PassOtherHost);
    }
    if let Some(generation) = policy::generation() {
        let Some(f) = pending_flow() else {
            return drop(Reason::DropPolicyUnavailable);
        };
        flow_v6(f, ip, upper.proto);
        if let Err(reason) = policy::read_flow(ctx, f, &upper, explain) {
            return drop(reason);
        }
        if !explain && policy::established(f, generation) {
            return forward_v6(ip, eth, &egress);
        }
        return to_policy(6, &egress, generation, ingress.default_deny_in(generation));
    }
    forward_v6(ip, eth, &egress)
}

/// Decrements the hop limit, rewrites the MACs and redirects.
#[inline(always)]
pub fn forward_v6(ip: &mut Ipv6Hdr, eth: *mut EthHdr, egress: &Egress) -> Outcome {
    ip.hop_limit -= 1;
    redirect(eth, egress)
}

/// Policy is on: leaves the decision so far for `x0_policy`, which x0_forward then
/// tail-calls (the kernel allows tail calls only from the program's main function).
#[inline(always)]
fn to_policy(family: u8, egress: &Egress, generation: u32, default_deny: bool) -> Outcome {
    let Some(p) = X0_PENDING.get_ptr_mut(0) else {
        return drop(Reason::DropPolicyUnavailable);
    };
    let p = unsafe { &mut *p };
    p.egress_ifindex = egress.ifindex;
    p.nexthop = egress.nexthop;
    p.mtu = egress.mtu;
    p.reason = egress.reason as u32;
    p.generation = generation;
    p.family = family;
    p.default_deny = default_deny as u8;
    p.src_mac = egress.src_mac;
    p.dst_mac = egress.dst_mac;
    Outcome {
        action: TAIL_CALL_POLICY,
        reason: Reason::DropPolicyUnavailable,
        egress: 0,
        nexthop: 0,
    }
}

/// The `action` of an outcome that asks for `x0_policy`; should the tail call fail, the
/// packet is dropped with the outcome's reason (fail closed).
pub const TAIL_CALL_POLICY: u32 = u32::MAX;

/// `x0_policy`'s work: policy on the packet `x0_forward` routed, then the forwarding.
#[inline(always)]
pub fn after_policy(ctx: &XdpContext, explain: bool) -> Outcome {
    let Some(p) = X0_PENDING.get_ptr_mut(0) else {
        return drop(Reason::DropPolicyUnavailable);
    };
    let p = unsafe { &mut *p };
    let Some(eth) = header::<EthHdr>(ctx, 0) else {
        return drop(Reason::DropMalformedL2);
    };
    // x0_forward filled in the flow (and found a later fragment's ports).
    if let Err(r) = policy::check(ctx, &p.flow, p.generation, p.default_deny != 0, explain) {
        return drop(r);
    }
    let Some(reason) = Reason::from_u32(p.reason) else {
        return drop(Reason::DropPolicyUnavailable);
    };
    let egress = Egress {
        ifindex: p.egress_ifindex,
        nexthop: p.nexthop,
        mtu: p.mtu,
        src_mac: p.src_mac,
        dst_mac: p.dst_mac,
        reason,
    };
    if p.family == 4 {
        match header::<Ipv4Hdr>(ctx, ETH_HLEN) {
            Some(ip) => forward_v4(unsafe { &mut *ip }, eth, &egress),
            None => drop(Reason::DropMalformedL3),
        }
    } else {
        match header::<Ipv6Hdr>(ctx, ETH_HLEN) {
            Some(ip) => forward_v6(unsafe { &mut *ip }, eth, &egress),
            None => drop(Reason::DropMalformedL3),
        }
    }
}

/// The flow of the packet in X0_PENDING (off the small BPF stack), for policy.
#[inline(always)]
fn pending_flow() -> Option<&'static mut Flow> {
    let p = X0_PENDING.get_ptr_mut(0)?;
    Some(unsafe { &mut (*p).flow })
}

/// The addresses and protocol of an IPv4 packet's flow.
#[inline(always)]
fn flow_v4(f: &mut Flow, ip: &Ipv4Hdr) {
    f.family = 4;
    f.proto = ip.protocol;
    set_v4_address(&mut f.src, ip.src);
    set_v4_address(&mut f.dst, ip.dst);
}

/// `proto`: the upper layer's, after the extension headers.
#[inline(always)]
fn flow_v6(f: &mut Flow, ip: &Ipv6Hdr, proto: u8) {
    f.family = 6;
    f.proto = proto;
    f.src = ip.src;
    f.dst = ip.dst;
}

/// `a` = the IPv4 address `v4` followed by zeros, in two 8-byte stores (volatile: plain
/// stores get merged into a call of a byte-wise memset). `Flow` is 8-aligned.
#[inline(always)]
fn set_v4_address(a: &mut [u8; 16], v4: [u8; 4]) {
    let words = a.as_mut_ptr() as *mut u64;
    // Little-endian target: the low half of the first word is the address in order.
    unsafe {
        core::ptr::write_volatile(words, u32::from_ne_bytes(v4) as u64);
        core::ptr::write_volatile(words.add(1), 0);
    }
}

/// A packet for this router. Single-hop BFD control packets (UDP 3784, TTL 255) go to
/// x0-dataplane's AF_XDP socket for the interface queue when it has one, so that BFD
/// does not wait on a busy kernel; everything else (and BFD without a socket) to the kernel.
#[inline(always)]
fn local(ctx: &XdpContext, upper: &Upper, ttl: u8) -> Outcome {
    if upper.proto != IPPROTO_UDP || ttl != 255 || upper.frag != Frag::Whole {
        return pass(Reason::PassLocal);
    }
    let Some(udp) = header_at::<[u8; 8]>(ctx, upper.l4) else {
        return pass(Reason::PassLocal);
    };
    if u16::from_be_bytes([unsafe { (*udp)[2] }, unsafe { (*udp)[3] }]) != BFD_CONTROL_PORT {
        return pass(Reason::PassLocal);
    }
    let key = xsk_slot_key(ctx.ingress_ifindex() as u32, ctx.rx_queue_index());
    let Some(slot) = (unsafe { X0_XSK_SLOTS.get(key) }) else {
        return pass(Reason::PassLocal);
    };
    match X0_XSKS.redirect(*slot, xdp_action::XDP_PASS as u64) {
        Ok(action) if action == xdp_action::XDP_REDIRECT => Outcome {
            action,
            reason: Reason::ToBfdSocket,
            egress: 0,
            nexthop: 0,
        },
        _ => pass(Reason::PassLocal),
    }
}

const IPPROTO_UDP: u8 = 17;

/// RFC 1812 5.3.7: "this network" (0/8), loopback (127/8), multicast (224/4) and reserved
/// (240/4, with the limited broadcast) sources, and 0/8 or 127/8 destinations, are never
/// forwarded. (Multicast and broadcast destinations were passed to the kernel before.)
#[inline(always)]
fn is_martian_v4(src: [u8; 4], dst: [u8; 4]) -> bool {
    src[0] == 0 || src[0] == 127 || src[0] >= 224 || dst[0] == 0 || dst[0] == 127
}

/// RFC 4291 2.5.2-2.5.5 and 2.7: the unspecified and loopback addresses and IPv4-mapped
/// addresses are never forwarded, either way; a multicast address is never a source.
#[inline(always)]
fn is_martian_v6(src: &[u8; 16], dst: &[u8; 16]) -> bool {
    src[0] == 0xff
        || is_loopback_or_unspecified(src)
        || is_loopback_or_unspecified(dst)
        || is_v4_mapped(src)
        || is_v4_mapped(dst)
}

/// ::ffff:0:0/96.
#[inline(always)]
fn is_v4_mapped(a: &[u8; 16]) -> bool {
    let mut high = 0u8;
    for b in &a[..10] {
        high |= *b;
    }
    high == 0 && a[10] == 0xff && a[11] == 0xff
}

fn is_loopback_or_unspecified(a: &[u8; 16]) -> bool {
    let mut high = 0u8;
    for b in &a[..15] {
        high |= *b;
    }
    high == 0 && a[15] <= 1
}

/// The first live next hop of the route's set that has a MAC, in preference order.
/// User space only builds next hops on ports it has put into X0_TX_PORTS, so this path
/// skips that lookup (a broken promise shows as drop_redirect_failed).
#[inline(always)]
fn nexthop_egress(route: &Route) -> Result<Egress, Reason> {
    if route.flags & ROUTE_F_LOCAL != 0 {
        return Err(Reason::PassLocal);
    }
    let set = X0_NH_SETS
        .get(route.nexthop_set)
        .ok_or(Reason::PassNoNexthop)?;
    if set.len == 0 {
        return Err(Reason::PassNoNexthop);
    }
    let mut live_unresolved = false;
    for i in 0..MAX_NEXTHOPS_PER_SET {
        if i as u32 >= set.len {
            break;
        }
        let id = set.nexthops[i];
        match X0_NH_LIVE.get(id) {
            Some(live) if *live & NH_LIVE != 0 => {}
            _ => continue,
        }
        let Some(nh) = X0_NEXTHOPS.get(id) else {
            continue;
        };
        if nh.flags & NH_F_RESOLVED == 0 {
            live_unresolved = true;
            continue;
        }
        return Ok(Egress {
            ifindex: nh.ifindex,
            nexthop: id,
            mtu: nh.mtu,
            src_mac: nh.src_mac,
            dst_mac: nh.dst_mac,
            reason: Reason::ForwardedRoute,
        });
    }
    Err(if live_unresolved {
        Reason::PassNoNeighbour
    } else {
        Reason::PassNoLiveNexthop
    })
}

#[inline(always)]
fn redirect(eth: *mut EthHdr, egress: &Egress) -> Outcome {
    unsafe {
        (*eth).dst = egress.dst_mac;
        (*eth).src = egress.src_mac;
    }
    match X0_TX_PORTS.redirect(egress.ifindex, 0) {
        Ok(action) => Outcome {
            action,
            reason: egress.reason,
            egress: egress.ifindex,
            nexthop: egress.nexthop,
        },
        Err(_) => drop(Reason::DropRedirectFailed),
    }
}
