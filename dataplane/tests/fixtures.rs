//! The frames the fast path is tested with: each case is a frame in and what must come
//! out (the verdict, the one counter that moves, and for redirects the exact frame).
//! A new case is one entry in `cases()`.
#![allow(dead_code)]

use etherparse::PacketBuilder;
use x0_common::Reason;

use crate::common::{HOST_MAC, NEIGH_MAC, PORT_A, PORT_A_MAC};

pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xd, 0x04];

pub enum Expect {
    /// XDP_REDIRECT to `ifindex` with exactly `frame`.
    Redirect {
        ifindex: u32,
        frame: Vec<u8>,
        reason: Reason,
    },
    Pass(Reason),
    Drop(Reason),
}

pub struct Case {
    pub name: String,
    pub frame: Vec<u8>,
    pub expect: Expect,
}

fn case(name: impl Into<String>, frame: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        frame,
        expect,
    }
}

pub fn udp4(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOST_MAC, ROUTER_MAC)
        .ipv4(src, dst, ttl)
        .udp(4000, 5000);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// The same packet as the router must send it: new MACs, TTL - 1, checksum recomputed
/// from scratch by etherparse.
pub fn udp4_forwarded(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(PORT_A_MAC, NEIGH_MAC)
        .ipv4(src, dst, ttl - 1)
        .udp(4000, 5000);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

pub fn tcp4(src: [u8; 4], dst: [u8; 4], ttl: u8, macs: ([u8; 6], [u8; 6])) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src, dst, ttl)
        .tcp(40000, 443, 7, 64240)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

pub fn udp6(src: [u8; 16], dst: [u8; 16], hops: u8, macs: ([u8; 6], [u8; 6])) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv6(src, dst, hops)
        .udp(4000, 5000);
    let mut v = Vec::new();
    b.write(&mut v, b"x0tta6bl4").unwrap();
    v
}

pub fn icmp6(src: [u8; 16], dst: [u8; 16], icmp_type: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOST_MAC, ROUTER_MAC)
        .ipv6(src, dst, 255)
        .icmpv6_raw(icmp_type, 0, [0; 4]);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 20]).unwrap();
    v
}

pub fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// Rewrites the IPv4 header of `frame` with `f`, then fixes its checksum.
pub fn patch_ipv4(mut frame: Vec<u8>, f: impl Fn(&mut [u8])) -> Vec<u8> {
    f(&mut frame[14..34]);
    frame[24] = 0;
    frame[25] = 0;
    let ihl = (frame[14] & 0x0f) as usize * 4;
    let end = (14 + ihl.max(20)).min(frame.len());
    let sum = checksum(&frame[14..end]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    frame
}

pub fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Sets the next-header byte of an IPv6 frame and inserts `ext` (an extension header).
pub fn with_ext6(frame: &[u8], next_header: u8, ext: &[u8]) -> Vec<u8> {
    let mut v = frame[..54].to_vec();
    let orig_next = v[20];
    v[20] = next_header;
    let mut ext = ext.to_vec();
    ext[0] = orig_next;
    v.extend_from_slice(&ext);
    v.extend_from_slice(&frame[54..]);
    let plen = u16::from_be_bytes([v[18], v[19]]) + ext.len() as u16;
    v[18..20].copy_from_slice(&plen.to_be_bytes());
    v
}

const H1: [u8; 4] = [198, 18, 1, 2];
const H2: [u8; 4] = [198, 18, 2, 2];

pub fn cases() -> Vec<Case> {
    let h1_6 = ip6("2001:db8:1::2");
    let h2_6 = ip6("2001:db8:2::2");
    let to_router = (HOST_MAC, ROUTER_MAC);
    let fwd6 = udp6(h1_6, h2_6, 64, to_router);
    let mut out = vec![
        case(
            "ipv4 udp is forwarded: new MACs, TTL 64 -> 63, checksum as recomputed",
            udp4(H1, H2, 64, b"hello"),
            Expect::Redirect {
                ifindex: PORT_A,
                frame: udp4_forwarded(H1, H2, 64, b"hello"),
                reason: Reason::ForwardedRoute,
            },
        ),
        case(
            "ipv4 tcp SYN is forwarded",
            tcp4(H1, [198, 18, 2, 77], 2, to_router),
            Expect::Redirect {
                ifindex: PORT_A,
                frame: tcp4(H1, [198, 18, 2, 77], 1, (PORT_A_MAC, NEIGH_MAC)),
                reason: Reason::ForwardedRoute,
            },
        ),
        case(
            "ipv6 udp is forwarded: new MACs, hop limit 64 -> 63",
            fwd6.clone(),
            Expect::Redirect {
                ifindex: PORT_A,
                frame: udp6(h1_6, h2_6, 63, (PORT_A_MAC, NEIGH_MAC)),
                reason: Reason::ForwardedRoute,
            },
        ),
        case(
            "ipv4 without a route",
            udp4(H1, [203, 0, 113, 9], 64, b"x"),
            Expect::Pass(Reason::PassNoRoute),
        ),
        case(
            "ipv6 without a route",
            udp6(h1_6, ip6("2001:db8:99::1"), 64, to_router),
            Expect::Pass(Reason::PassNoRoute),
        ),
        case(
            "ipv4 TTL 1",
            udp4(H1, H2, 1, b"x"),
            Expect::Pass(Reason::PassTtlExpired),
        ),
        case(
            "ipv4 TTL 0",
            udp4(H1, H2, 0, b"x"),
            Expect::Pass(Reason::PassTtlExpired),
        ),
        case(
            "ipv6 hop limit 1",
            udp6(h1_6, h2_6, 1, to_router),
            Expect::Pass(Reason::PassTtlExpired),
        ),
        case(
            "ipv4 to the router itself",
            udp4(H1, [198, 18, 1, 1], 64, b"x"),
            Expect::Pass(Reason::PassLocal),
        ),
        case(
            "ipv4 to the router itself with TTL 1 is local, not expired",
            udp4(H1, [198, 18, 1, 1], 1, b"x"),
            Expect::Pass(Reason::PassLocal),
        ),
        case(
            "ipv6 to the router itself",
            udp6(h1_6, ip6("2001:db8:1::1"), 64, to_router),
            Expect::Pass(Reason::PassLocal),
        ),
        case(
            "next hop MAC unresolved",
            udp4(H1, [198, 18, 9, 5], 64, b"x"),
            Expect::Pass(Reason::PassNoNeighbour),
        ),
        case(
            "ipv4 with options (IHL 6)",
            patch_ipv4(udp4(H1, H2, 64, b"abcdefgh"), |h| h[0] = 0x46),
            Expect::Pass(Reason::PassIpv4Options),
        ),
        case(
            "ipv4 first fragment (MF)",
            patch_ipv4(udp4(H1, H2, 64, b"x"), |h| h[6] = 0x20),
            Expect::Pass(Reason::PassFragment),
        ),
        case(
            "ipv4 later fragment (offset 185)",
            patch_ipv4(udp4(H1, H2, 64, b"x"), |h| {
                h[6] = 0x00;
                h[7] = 185
            }),
            Expect::Pass(Reason::PassFragment),
        ),
        case(
            "ipv4 DF set is not a fragment",
            patch_ipv4(udp4(H1, H2, 64, b"x"), |h| h[6] = 0x40),
            Expect::Redirect {
                ifindex: PORT_A,
                frame: patch_ipv4(udp4_forwarded(H1, H2, 64, b"x"), |h| h[6] = 0x40),
                reason: Reason::ForwardedRoute,
            },
        ),
        case(
            "ipv6 fragment header",
            with_ext6(&fwd6, 44, &[0, 0, 0, 1, 0, 0, 0, 7]),
            Expect::Pass(Reason::PassFragment),
        ),
        case(
            "ipv6 hop-by-hop header",
            with_ext6(&fwd6, 0, &[0, 0, 1, 4, 0, 0, 0, 0]),
            Expect::Pass(Reason::PassIpv6ExtHeader),
        ),
        case(
            "ipv4 multicast",
            udp4(H1, [224, 0, 0, 5], 64, b"x"),
            Expect::Pass(Reason::PassMulticast),
        ),
        case(
            "ipv4 broadcast",
            udp4(H1, [255, 255, 255, 255], 64, b"x"),
            Expect::Pass(Reason::PassMulticast),
        ),
        case(
            "ipv6 multicast",
            udp6(h1_6, ip6("ff02::1"), 64, to_router),
            Expect::Pass(Reason::PassMulticast),
        ),
        case(
            "ipv4 link-local destination",
            udp4(H1, [169, 254, 1, 1], 64, b"x"),
            Expect::Pass(Reason::PassLinkLocal),
        ),
        case(
            "ipv4 link-local source",
            udp4([169, 254, 1, 1], H2, 64, b"x"),
            Expect::Pass(Reason::PassLinkLocal),
        ),
        case(
            "ipv6 link-local source",
            udp6(ip6("fe80::1"), h2_6, 64, to_router),
            Expect::Pass(Reason::PassLinkLocal),
        ),
        case(
            "ipv4 loopback destination",
            udp4(H1, [127, 0, 0, 1], 64, b"x"),
            Expect::Pass(Reason::PassMartian),
        ),
        case(
            "ipv6 neighbour solicitation to a unicast address",
            icmp6(h1_6, ip6("2001:db8:1::1"), 135),
            Expect::Pass(Reason::PassNdp),
        ),
        case(
            "ipv6 neighbour advertisement",
            icmp6(h1_6, h2_6, 136),
            Expect::Pass(Reason::PassNdp),
        ),
        case(
            "ipv4 version 5",
            patch_ipv4(udp4(H1, H2, 64, b"x"), |h| h[0] = 0x55),
            Expect::Drop(Reason::DropMalformedL3),
        ),
        case(
            "ipv4 IHL 4",
            patch_ipv4(udp4(H1, H2, 64, b"x"), |h| h[0] = 0x44),
            Expect::Drop(Reason::DropMalformedL3),
        ),
        case(
            "ipv4 total length 19",
            patch_ipv4(udp4(H1, H2, 64, b"x"), |h| {
                h[2] = 0;
                h[3] = 19
            }),
            Expect::Drop(Reason::DropMalformedL3),
        ),
        case(
            "ipv4 total length beyond the frame",
            patch_ipv4(udp4(H1, H2, 64, b"x"), |h| {
                h[2] = 0x05;
                h[3] = 0xdc
            }),
            Expect::Drop(Reason::DropMalformedL3),
        ),
        case(
            "ipv4 bad header checksum",
            {
                let mut f = udp4(H1, H2, 64, b"x");
                f[24] ^= 0x01;
                f
            },
            Expect::Drop(Reason::DropMalformedL3),
        ),
        case(
            "ipv6 version 4",
            {
                let mut f = fwd6.clone();
                f[14] = 0x40;
                f
            },
            Expect::Drop(Reason::DropMalformedL3),
        ),
        case(
            "ipv6 payload length beyond the frame",
            {
                let mut f = fwd6.clone();
                f[18] = 0x05;
                f
            },
            Expect::Drop(Reason::DropMalformedL3),
        ),
    ];
    // ARP request (who-has 198.18.1.1), LLDP.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&HOST_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&HOST_MAC);
    arp.extend_from_slice(&H1);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[198, 18, 1, 1]);
    out.push(case("ARP request", arp, Expect::Pass(Reason::PassArp)));
    let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
    lldp.extend_from_slice(&HOST_MAC);
    lldp.extend_from_slice(&[0x88, 0xcc]);
    lldp.extend_from_slice(&[0; 32]);
    out.push(case("LLDP (not IP)", lldp, Expect::Pass(Reason::PassNonIp)));

    // Truncated at every length from an Ethernet header to a full packet.
    let v4 = udp4(H1, H2, 64, b"");
    for len in 14..v4.len() {
        out.push(case(
            format!("ipv4 udp truncated to {len} bytes"),
            v4[..len].to_vec(),
            Expect::Drop(Reason::DropMalformedL3),
        ));
    }
    let v6 = udp6(h1_6, h2_6, 64, to_router);
    for len in 14..v6.len() {
        out.push(case(
            format!("ipv6 udp truncated to {len} bytes"),
            v6[..len].to_vec(),
            Expect::Drop(Reason::DropMalformedL3),
        ));
    }
    out
}
