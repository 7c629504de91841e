//! Why the fast path did what it did with a frame: the index of its counter in the
//! `X0_STATS` per-CPU array. Every frame the program sees moves exactly one of these.

/// What happened to the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Redirected out of another port by XDP.
    Forwarded,
    /// Handed to the kernel stack (XDP_PASS).
    Passed,
    /// Dropped (XDP_DROP).
    Dropped,
}

macro_rules! reasons {
    ($( $variant:ident = $value:literal, $verdict:ident, $name:literal, $help:literal; )*) => {
        /// Counter index; see [`Reason::help`] for each.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $variant = $value, )*
        }

        impl Reason {
            /// Every reason, in counter order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// Short stable name, used in the CLI and in tests.
            pub const fn name(self) -> &'static str {
                match self { $( Reason::$variant => $name, )* }
            }

            /// One line an operator can act on.
            pub const fn help(self) -> &'static str {
                match self { $( Reason::$variant => $help, )* }
            }

            pub const fn verdict(self) -> Verdict {
                match self { $( Reason::$variant => Verdict::$verdict, )* }
            }

            pub fn from_u32(value: u32) -> Option<Reason> {
                match value { $( $value => Some(Reason::$variant), )* _ => None }
            }
        }
    };
}

reasons! {
    ForwardedRoute = 0, Forwarded, "forwarded_route", "redirected by a route in the x0tta6bl4 route maps";
    ForwardedFib = 1, Forwarded, "forwarded_fib", "redirected by the kernel FIB fallback (bpf_fib_lookup)";
    PassArp = 2, Passed, "pass_arp", "ARP: the kernel answers it";
    PassNonIp = 3, Passed, "pass_non_ip", "not IPv4 or IPv6 (VLAN tags, LLDP, ...)";
    PassIpv4Options = 4, Passed, "pass_ipv4_options", "IPv4 options a router must act on (record route, timestamp, source route, router alert, security) or malformed options: the kernel processes them (RFC 1812 5.2.4)";
    PassFragment = 5, Passed, "pass_fragment", "not used any more (fragments are forwarded since 2026-12); kept so that counter indices stay those of earlier versions";
    PassIpv6ExtHeader = 6, Passed, "pass_ipv6_ext_header", "IPv6 hop-by-hop options header (RFC 8200 4.3), or more than 4 extension headers before the upper layer";
    PassNdp = 7, Passed, "pass_ndp", "IPv6 neighbour discovery (ICMPv6 133-137)";
    PassMulticast = 8, Passed, "pass_multicast", "multicast or broadcast destination";
    PassLinkLocal = 9, Passed, "pass_link_local", "link-local source or destination, never forwarded";
    DropMartian = 10, Dropped, "drop_martian", "martian address, never forwarded (RFC 1812 5.3.7, RFC 4291): source in 0/8, 127/8, 224/4, 240/4; ::, ::1, multicast or IPv4-mapped source; or such a destination";
    PassLocal = 11, Passed, "pass_local", "addressed to this router";
    PassTtlExpired = 12, Passed, "pass_ttl_expired", "TTL or hop limit <= 1: the kernel sends time-exceeded";
    PassNoRoute = 13, Passed, "pass_no_route", "no route in our maps and the FIB fallback is off";
    PassFibNotForwarded = 14, Passed, "pass_fib_not_forwarded", "kernel FIB: local, no route, or forwarding disabled";
    PassFibBlocked = 15, Passed, "pass_fib_blocked", "kernel FIB: blackhole, unreachable or prohibit route";
    PassNoNeighbour = 16, Passed, "pass_no_neighbour", "next hop MAC unresolved: the kernel resolves it";
    PassTooBig = 17, Passed, "pass_too_big", "larger than the egress MTU: the kernel fragments or sends PTB";
    PassNoTxPort = 18, Passed, "pass_no_tx_port", "egress interface is not attached to x0tta6bl4";
    DropMalformedL2 = 19, Dropped, "drop_malformed_l2", "shorter than an Ethernet header";
    DropMalformedL3 = 20, Dropped, "drop_malformed_l3", "truncated or invalid IP header (length, version, checksum)";
    DropRedirectFailed = 21, Dropped, "drop_redirect_failed", "bpf_redirect_map failed";
    PassNoNexthop = 22, Passed, "pass_no_nexthop", "route points to a missing next-hop set or next hop";
    PassNoLiveNexthop = 23, Passed, "pass_no_live_nexthop", "every next hop of the route is down: the kernel decides";
    ToBfdSocket = 24, Passed, "to_bfd_xsk", "BFD control packet for this router, handed to x0-dataplane's AF_XDP socket";
    PassOtherHost = 25, Passed, "pass_other_host", "unicast to another MAC: not ours to forward (the kernel drops it)";
    DropPolicyDeny = 26, Dropped, "drop_policy_deny", "a deny rule matched (rule id in the drop events)";
    DropDefaultDeny = 27, Dropped, "drop_default_deny", "no rule allowed it on a zero-trust (default deny) interface";
    DropRateLimited = 28, Dropped, "drop_rate_limited", "over the allow rule's rate limit";
    DropConntrackFull = 29, Dropped, "drop_conntrack_full", "a new flow, allowed, but the connection table is full";
    DropMalformedL4 = 30, Dropped, "drop_malformed_l4", "TCP/UDP header truncated (policy needs the ports)";
    DropPolicyUnavailable = 31, Dropped, "drop_policy_unavailable", "policy is on but its program is not loaded: fail closed";
    DropFragmentUnknown = 32, Dropped, "drop_fragment_unknown", "policy is on and this later fragment's datagram never showed its first fragment here; or an IPv4 TCP fragment at offset 8 (RFC 1858 3.2: only an attack makes one)";
    DropPolicyUnjudged = 33, Dropped, "drop_policy_unjudged", "policy is on and a packet from a zero-trust port would go to the kernel to be forwarded (IPv4 options a router acts on, an IPv6 hop-by-hop header), where no policy judges it; to the router itself and multicast still pass";
}

// Counters are indexed by value and listed in `ALL` in declaration order: keep them equal.
const _: () = {
    let mut i = 0;
    while i < Reason::ALL.len() {
        assert!(
            Reason::ALL[i] as usize == i,
            "reason values must follow their order"
        );
        i += 1;
    }
};

/// Number of counters in `X0_STATS`.
pub const REASON_COUNT: u32 = Reason::ALL.len() as u32;
