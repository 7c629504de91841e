//! What `x0_forward` must do with a frame, from docs/DESIGN.md ("The fast path") and the
//! RFCs it cites: the verdict, the one reason it is counted under, and the frame out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use x0_common::Reason;

use crate::{
    frames::checksum,
    tables::{PORT, PORT_MAC, PORT_MTU, Tables, Target},
};

/// The expected outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass(Reason),
    Drop(Reason),
    /// Out of `PORT` with this frame.
    Redirect {
        reason: Reason,
        frame: Vec<u8>,
        ifindex: u32,
    },
}

const ETH: usize = 14;

/// The model of the whole program for one frame arriving on `PORT`.
pub fn forward(frame: &[u8], t: &Tables) -> Verdict {
    use Verdict::{Drop, Pass};
    if frame.len() < ETH {
        return Drop(Reason::DropMalformedL2);
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => ipv4(frame, t),
        0x86dd => ipv6(frame, t),
        0x0806 => Pass(Reason::PassArp),
        // VLAN tags, LLDP and the rest: the kernel's.
        _ => Pass(Reason::PassNonIp),
    }
}

/// The IPv4 header checks of DESIGN.md: length, version, IHL, total length within the
/// frame, checksum over the whole header; then options a router acts on (RFC 1812 5.2.4)
/// and the RFC 1858 fragment. Ok: (header length, a later fragment).
fn ipv4_header(ip: &[u8]) -> Result<usize, Verdict> {
    use Verdict::{Drop, Pass};
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[0] & 0x0f < 5 {
        return Err(Drop(Reason::DropMalformedL3));
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if tot < ihl || tot > ip.len() || checksum(&ip[..ihl]) != 0 {
        return Err(Drop(Reason::DropMalformedL3));
    }
    if options_need_a_router(&ip[20..ihl]) {
        return Err(Pass(Reason::PassIpv4Options));
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x1fff == 1 && ip[9] == 6 {
        return Err(Drop(Reason::DropFragmentUnknown));
    }
    Ok(ihl)
}

/// Record route (7), timestamp (68), source routes (131, 137), router alert (148),
/// security (130, 133, 134), or a malformed option: the kernel processes the packet.
fn options_need_a_router(o: &[u8]) -> bool {
    let mut i = 0;
    while i < o.len() {
        match o[i] {
            0 => return false,
            1 => i += 1,
            7 | 68 | 131 | 137 | 148 | 130 | 133 | 134 => return true,
            _ => {
                let len = o.get(i + 1).copied().unwrap_or(0) as usize;
                if len < 2 || i + len > o.len() {
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// RFC 1812 5.3.7 (DESIGN.md's list).
fn martian_v4(src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    let (s, d) = (src.octets()[0], dst.octets()[0]);
    s == 0 || s == 127 || s >= 224 || d == 0 || d == 127
}

fn ipv4(frame: &[u8], t: &Tables) -> Verdict {
    use Verdict::{Drop, Pass};
    let ip = &frame[ETH..];
    if let Err(v) = ipv4_header(ip) {
        return v;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    if dst.is_multicast() || dst.is_broadcast() {
        return Pass(Reason::PassMulticast);
    }
    if src.is_link_local() || dst.is_link_local() {
        return Pass(Reason::PassLinkLocal);
    }
    if martian_v4(src, dst) {
        return Drop(Reason::DropMartian);
    }
    let tot = u16::from_be_bytes([ip[2], ip[3]]) as u32;
    routed(frame, t, dst.into(), ip[8], tot, |f| {
        // TTL - 1 and the header checksum again (RFC 1624 gives the same sum).
        f[ETH + 8] -= 1;
        f[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
        let ihl = (f[ETH] & 0x0f) as usize * 4;
        let sum = checksum(&f[ETH..ETH + ihl]);
        f[ETH + 10..ETH + 12].copy_from_slice(&sum.to_be_bytes());
    })
}

/// After the checks of each family: the route (a local one passes before the TTL, so that
/// TTL-1 packets for the router are delivered), the TTL, the MTU, our MAC, then forward.
fn routed(
    frame: &[u8],
    t: &Tables,
    dst: IpAddr,
    ttl: u8,
    ip_len: u32,
    decrement: impl Fn(&mut Vec<u8>),
) -> Verdict {
    use Verdict::Pass;
    let Some(route) = t.lookup(dst) else {
        return Pass(Reason::PassNoRoute);
    };
    let mac = match &route.target {
        // No AF_XDP socket in the model's tables: BFD for the router goes to the kernel too.
        Target::Local => return Pass(Reason::PassLocal),
        Target::Via(gws) => match gws.iter().find_map(|g| t.neighbour(*g)) {
            Some(mac) => mac,
            // Every next hop is live (nothing failed): only the MACs are missing.
            None => return Pass(Reason::PassNoNeighbour),
        },
    };
    if ttl <= 1 {
        return Pass(Reason::PassTtlExpired);
    }
    if ip_len > PORT_MTU {
        return Pass(Reason::PassTooBig);
    }
    if frame[..6] != PORT_MAC {
        return Pass(Reason::PassOtherHost);
    }
    let mut out = frame.to_vec();
    out[..6].copy_from_slice(&mac);
    out[6..12].copy_from_slice(&PORT_MAC);
    decrement(&mut out);
    Verdict::Redirect {
        reason: Reason::ForwardedRoute,
        frame: out,
        ifindex: PORT,
    }
}

/// The upper layer after the extension headers (RFC 8200 4): hop-by-hop is every
/// router's (the kernel's), routing, fragment, destination options and AH are walked (4 at
/// most, the upper layer within 512 bytes of the frame's start, else the kernel's).
/// Ok: (protocol, its offset in the frame, a later fragment).
fn ipv6_upper(frame: &[u8], ip: &[u8]) -> Result<(u8, usize, bool), Verdict> {
    use Verdict::{Drop, Pass};
    let end = ETH + 40 + u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let (mut next, mut l4) = (ip[6], ETH + 40);
    let within = |proto: u8, l4: usize, later: bool| {
        if l4 > end {
            Err(Drop(Reason::DropMalformedL3))
        } else if l4 > 512 {
            Err(Pass(Reason::PassIpv6ExtHeader))
        } else {
            Ok((proto, l4, later))
        }
    };
    for _ in 0..4 {
        match next {
            0 => return Err(Pass(Reason::PassIpv6ExtHeader)),
            44 => {
                let Some(h) = frame.get(l4..l4 + 8) else {
                    return Err(Drop(Reason::DropMalformedL3));
                };
                next = h[0];
                l4 += 8;
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return within(next, l4, true);
                }
            }
            43 | 60 | 51 => {
                let Some(h) = frame.get(l4..l4 + 2) else {
                    return Err(Drop(Reason::DropMalformedL3));
                };
                l4 += if next == 51 {
                    (h[1] as usize + 2) * 4
                } else {
                    (h[1] as usize + 1) * 8
                };
                next = h[0];
            }
            _ => return within(next, l4, false),
        }
    }
    match next {
        0 | 43 | 44 | 51 | 60 => Err(Pass(Reason::PassIpv6ExtHeader)),
        _ => within(next, l4, false),
    }
}

/// RFC 4291: unspecified, loopback and IPv4-mapped either way, multicast as a source.
fn martian_v6(src: Ipv6Addr, dst: Ipv6Addr) -> bool {
    let mapped = |a: Ipv6Addr| a.to_ipv4_mapped().is_some();
    src.is_multicast()
        || src.is_unspecified()
        || src.is_loopback()
        || dst.is_unspecified()
        || dst.is_loopback()
        || mapped(src)
        || mapped(dst)
}

fn ipv6(frame: &[u8], t: &Tables) -> Verdict {
    use Verdict::{Drop, Pass};
    let ip = &frame[ETH..];
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return Drop(Reason::DropMalformedL3);
    }
    let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    if plen + 40 > ip.len() {
        return Drop(Reason::DropMalformedL3);
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).expect("16"));
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).expect("16"));
    if dst.is_multicast() {
        return Pass(Reason::PassMulticast);
    }
    if src.is_unicast_link_local() || dst.is_unicast_link_local() {
        return Pass(Reason::PassLinkLocal);
    }
    if martian_v6(src, dst) {
        return Drop(Reason::DropMartian);
    }
    let (proto, l4, later) = match ipv6_upper(frame, ip) {
        Ok(u) => u,
        Err(v) => return v,
    };
    // Neighbour discovery (ICMPv6 133-137) is the kernel's.
    if proto == 58 && !later && frame.get(l4).is_some_and(|ty| (133..=137).contains(ty)) {
        return Pass(Reason::PassNdp);
    }
    routed(frame, t, dst.into(), ip[7], plen as u32 + 40, |f| {
        f[ETH + 7] -= 1;
    })
}
