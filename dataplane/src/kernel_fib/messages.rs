//! The rtnetlink messages of the kernel's copy of our routes: nexthop objects
//! (RTM_*NEXTHOP, which neli has no types for) and routes that point at them.

use std::{io::Cursor, net::IpAddr};

use anyhow::{Context, Result};
use ipnet::IpNet;
use neli::{
    FromBytes, FromBytesWithInput, Size, ToBytes,
    consts::{
        nl::NlmF,
        rtnl::{RtAddrFamily, RtScope, RtTable, Rta, Rtm, Rtn, Rtprot},
    },
    err::DeError,
    rtnl::{Rtattr, RtattrBuilder, Rtmsg, RtmsgBuilder},
    types::{Buffer, RtBuffer},
};

use crate::netlink::{Netlink, ip_from_bytes};

// include/uapi/linux/rtnetlink.h and nexthop.h (not in neli or libc).
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const RTM_GETNEXTHOP: u16 = 106;
const NHA_ID: u16 = 1;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
/// nhmsg.nh_flags: the gateway is on the link (no route lookup to check it).
const RTNH_F_ONLINK: u32 = 4;
const RTA_NH_ID: u16 = 30;

/// `struct nhmsg` and its attributes.
#[derive(Debug, Size, ToBytes)]
pub(crate) struct Nhmsg {
    family: u8,
    scope: u8,
    protocol: u8,
    resvd: u8,
    flags: u32,
    attrs: RtBuffer<u16, Buffer>,
}

/// The 8 bytes before the attributes.
const NHMSG_HEADER: usize = 8;

// By hand: neli's derive of it calls the `log` crate, which this workspace does not use.
impl FromBytesWithInput for Nhmsg {
    type Input = usize;

    fn from_bytes_with_input(
        buffer: &mut Cursor<impl AsRef<[u8]>>,
        input: usize,
    ) -> Result<Self, DeError> {
        let attrs_len = input
            .checked_sub(NHMSG_HEADER)
            .ok_or(DeError::InvalidInput(input))?;
        Ok(Self {
            family: u8::from_bytes(buffer)?,
            scope: u8::from_bytes(buffer)?,
            protocol: u8::from_bytes(buffer)?,
            resvd: u8::from_bytes(buffer)?,
            flags: u32::from_bytes(buffer)?,
            attrs: RtBuffer::from_bytes_with_input(buffer, attrs_len)?,
        })
    }
}

/// A route of ours as the kernel holds it: its prefix, and the nexthop object it uses
/// (None: an `unreachable` route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    pub prefix: IpNet,
    pub nexthop: Option<u32>,
    pub metric: u32,
}

fn attr(ty: u16, payload: Vec<u8>) -> Result<Rtattr<u16, Buffer>> {
    Ok(RtattrBuilder::default()
        .rta_type(ty)
        .rta_payload(Buffer::from(payload))
        .build()?)
}

fn rta(ty: Rta, payload: Vec<u8>) -> Result<Rtattr<Rta, Buffer>> {
    Ok(RtattrBuilder::default()
        .rta_type(ty)
        .rta_payload(Buffer::from(payload))
        .build()?)
}

fn ip_bytes(a: IpAddr) -> (u8, Vec<u8>) {
    match a {
        IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec()),
        IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec()),
    }
}

fn nhmsg(family: u8, protocol: u8, attrs: Vec<Rtattr<u16, Buffer>>) -> Nhmsg {
    Nhmsg {
        family,
        scope: 0,
        protocol,
        resvd: 0,
        flags: 0,
        attrs: attrs.into_iter().collect(),
    }
}

fn u32_attr(attrs: &RtBuffer<u16, Buffer>, ty: u16) -> Option<u32> {
    let a = attrs.iter().find(|a| *a.rta_type() == ty)?;
    Some(u32::from_ne_bytes(
        a.rta_payload().as_ref().try_into().ok()?,
    ))
}

/// Points nexthop object `id` at `gateway` through `ifindex`. With `create` false it only
/// replaces an existing object: Err with ENOENT when the kernel has none (it deletes the
/// nexthops of a link that loses its carrier, and the routes using them).
pub fn replace_nexthop(
    nl: &Netlink,
    id: u32,
    protocol: u8,
    gateway: IpAddr,
    ifindex: u32,
    create: bool,
) -> Result<()> {
    let (family, gw) = ip_bytes(gateway);
    let mut msg = nhmsg(
        family,
        protocol,
        vec![
            attr(NHA_ID, id.to_ne_bytes().to_vec())?,
            attr(NHA_GATEWAY, gw)?,
            attr(NHA_OIF, ifindex.to_ne_bytes().to_vec())?,
        ],
    );
    // Our gateways are on the interface's link by construction. Without "onlink" the
    // kernel checks an IPv6 gateway by a route lookup, which finds our own route for the
    // gateway's subnet (through that gateway) and refuses with EHOSTUNREACH: every
    // restart failed so for a host's subnet routed via the host.
    msg.flags = RTNH_F_ONLINK;
    let mut flags = NlmF::REPLACE | NlmF::ACK;
    if create {
        flags |= NlmF::CREATE;
    }
    nl.request(
        Rtm::UnrecognizedConst(RTM_NEWNEXTHOP),
        flags,
        msg,
        |_: &Nhmsg| None::<()>,
    )
    .with_context(|| format!("nexthop {id} via {gateway} (ifindex {ifindex})"))?;
    Ok(())
}

pub fn delete_nexthop(nl: &Netlink, id: u32) -> Result<()> {
    let msg = nhmsg(0, 0, vec![attr(NHA_ID, id.to_ne_bytes().to_vec())?]);
    nl.request(
        Rtm::UnrecognizedConst(RTM_DELNEXTHOP),
        NlmF::ACK,
        msg,
        |_: &Nhmsg| None::<()>,
    )
    .with_context(|| format!("deleting nexthop {id}"))?;
    Ok(())
}

/// Ids of the nexthop objects with `protocol`.
pub fn nexthops(nl: &Netlink, protocol: u8) -> Result<Vec<u32>> {
    nl.dump(
        Rtm::UnrecognizedConst(RTM_GETNEXTHOP),
        || Ok::<_, std::convert::Infallible>(nhmsg(0, 0, Vec::new())),
        |m: &Nhmsg| {
            (m.protocol == protocol)
                .then(|| u32_attr(&m.attrs, NHA_ID))
                .flatten()
        },
    )
}

/// The route message for `prefix` with our protocol and metric, of type `kind` (Unspec and
/// scope Nowhere for a delete, which matches any type).
fn route_msg(
    prefix: IpNet,
    protocol: u8,
    metric: u32,
    nexthop: Option<u32>,
    kind: Rtn,
) -> Result<Rtmsg> {
    let (family, dst) = ip_bytes(prefix.network());
    let mut attrs = RtBuffer::new();
    attrs.push(rta(Rta::Dst, dst)?);
    attrs.push(rta(Rta::Priority, metric.to_ne_bytes().to_vec())?);
    if let Some(id) = nexthop {
        attrs.push(rta(
            Rta::UnrecognizedConst(RTA_NH_ID),
            id.to_ne_bytes().to_vec(),
        )?);
    }
    Ok(RtmsgBuilder::default()
        .rtm_family(RtAddrFamily::from(family))
        .rtm_dst_len(prefix.prefix_len())
        .rtm_src_len(0)
        .rtm_tos(0)
        .rtm_table(RtTable::Main)
        .rtm_protocol(Rtprot::UnrecognizedConst(protocol))
        .rtm_scope(if kind == Rtn::Unspec {
            RtScope::Nowhere
        } else {
            RtScope::Universe
        })
        .rtm_type(kind)
        .rtattrs(attrs)
        .build()?)
}

/// Adds or replaces the route for `prefix` with our protocol and metric: through nexthop
/// object `nexthop`, or `unreachable` (the kernel answers ICMP "net unreachable").
pub fn replace_route(
    nl: &Netlink,
    prefix: IpNet,
    protocol: u8,
    metric: u32,
    nexthop: Option<u32>,
) -> Result<()> {
    let kind = if nexthop.is_some() {
        Rtn::Unicast
    } else {
        Rtn::Unreachable
    };
    let msg = route_msg(prefix, protocol, metric, nexthop, kind)?;
    let flags = NlmF::CREATE | NlmF::REPLACE | NlmF::ACK;
    nl.request(Rtm::Newroute, flags, msg, |_: &Rtmsg| None::<()>)
        .with_context(|| format!("kernel route {prefix}"))?;
    Ok(())
}

/// Deletes our route for `prefix` (the protocol and metric must match: another daemon's
/// route for the same prefix is never touched).
pub fn delete_route(nl: &Netlink, prefix: IpNet, protocol: u8, metric: u32) -> Result<()> {
    let msg = route_msg(prefix, protocol, metric, None, Rtn::Unspec)?;
    nl.request(Rtm::Delroute, NlmF::ACK, msg, |_: &Rtmsg| None::<()>)
        .with_context(|| format!("deleting kernel route {prefix}"))?;
    Ok(())
}

/// Our routes in the main table, both families.
pub fn routes(nl: &Netlink, protocol: u8) -> Result<Vec<KernelRoute>> {
    let mut out = Vec::new();
    for family in [RtAddrFamily::Inet, RtAddrFamily::Inet6] {
        let msg = || {
            RtmsgBuilder::default()
                .rtm_family(family)
                .rtm_dst_len(0)
                .rtm_src_len(0)
                .rtm_tos(0)
                .rtm_table(RtTable::Unspec)
                .rtm_protocol(Rtprot::Unspec)
                .rtm_scope(RtScope::Universe)
                .rtm_type(Rtn::Unspec)
                .build()
        };
        out.extend(nl.dump(Rtm::Getroute, msg, |m: &Rtmsg| decode_route(m, protocol))?);
    }
    Ok(out)
}

fn decode_route(m: &Rtmsg, protocol: u8) -> Option<KernelRoute> {
    if u8::from(*m.rtm_protocol()) != protocol || *m.rtm_table() != RtTable::Main {
        return None;
    }
    let attrs = m.rtattrs().get_attr_handle();
    let dst = match attrs.get_attribute(Rta::Dst) {
        Some(a) => ip_from_bytes(a.rta_payload().as_ref())?,
        None if *m.rtm_family() == RtAddrFamily::Inet6 => IpAddr::from([0u16; 8]),
        None => IpAddr::from([0u8; 4]),
    };
    let nexthop = attrs
        .get_attr_payload_as::<u32>(Rta::UnrecognizedConst(RTA_NH_ID))
        .ok();
    let metric = attrs.get_attr_payload_as::<u32>(Rta::Priority).unwrap_or(0);
    Some(KernelRoute {
        prefix: IpNet::new(dst, *m.rtm_dst_len()).ok()?,
        nexthop,
        metric,
    })
}
