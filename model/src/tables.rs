//! Random routing tables: routes of every length inside a few base ranges (so that frames
//! hit them, nested), each local or to one to three next hops in preference order, each
//! next hop's neighbour resolved or not; all on one port.

use std::net::IpAddr;

use ipnet::IpNet;
use rand::{RngExt, rngs::StdRng};

/// The port every next hop is on (`lo`: a real ifindex in every namespace, so the DEVMAP
/// takes it; BPF_PROG_TEST_RUN's frames arrive on it too).
pub const PORT: u32 = 1;
pub const PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
pub const PORT_MTU: u32 = 1500;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Local,
    /// Gateways in preference order.
    Via(Vec<IpAddr>),
}

#[derive(Clone, Debug)]
pub struct Route {
    pub prefix: IpNet,
    pub target: Target,
}

/// What the model and the program are both given.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub routes: Vec<Route>,
    /// Gateways whose MAC is known, with it.
    pub neighbours: Vec<(IpAddr, [u8; 6])>,
}

/// The bases routes are drawn in: 198.18.0.0/15 and 10.0.0.0/8; 2001:db8::/32.
const V4_BASES: [([u8; 4], u8); 2] = [([198, 18, 0, 0], 15), ([10, 0, 0, 0], 8)];

/// A MAC per gateway, so that a wrong next-hop choice shows in the frame out.
pub fn mac_of(gw: IpAddr) -> [u8; 6] {
    let b = match gw {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets()[12..].to_vec(),
    };
    [0x02, 0xbb, b[0] ^ b[1], b[1], b[2], b[3]]
}

fn random_v4_in(rng: &mut StdRng, base: [u8; 4], len: u8) -> u32 {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from_be_bytes(base) & mask) | (rng.random::<u32>() & !mask)
}

fn random_prefix(rng: &mut StdRng, v6: bool) -> IpNet {
    if v6 {
        let len = rng.random_range(32..=128u8);
        let mut a = rng.random::<u128>();
        a = (0x2001_0db8u128 << 96) | (a & ((1u128 << 96) - 1));
        IpNet::new(std::net::Ipv6Addr::from(a).into(), len)
            .expect("length")
            .trunc()
    } else {
        let (base, blen) = V4_BASES[rng.random_range(0..V4_BASES.len())];
        let len = rng.random_range(blen..=32);
        let a = random_v4_in(rng, base, blen);
        IpNet::new(std::net::Ipv4Addr::from(a).into(), len)
            .expect("length")
            .trunc()
    }
}

fn gateway(rng: &mut StdRng, v6: bool) -> IpAddr {
    // A small pool per family, so that routes share next hops as real tables do.
    let n = rng.random_range(1..=12u8);
    if v6 {
        format!("2001:db8:ffff::{n}").parse().expect("v6")
    } else {
        format!("198.19.255.{n}").parse().expect("v4")
    }
}

impl Tables {
    /// `routes` routes of both families, and a neighbour for about 70 % of the gateways.
    pub fn random(rng: &mut StdRng, routes: usize) -> Tables {
        let mut t = Tables::default();
        let mut seen = std::collections::HashSet::new();
        while t.routes.len() < routes {
            let v6 = rng.random_bool(0.4);
            let prefix = random_prefix(rng, v6);
            if !seen.insert(prefix) {
                continue;
            }
            let target = if rng.random_bool(0.1) {
                Target::Local
            } else {
                let mut via: Vec<IpAddr> = Vec::new();
                for _ in 0..rng.random_range(1..=3) {
                    let g = gateway(rng, v6);
                    if !via.contains(&g) {
                        via.push(g);
                    }
                }
                Target::Via(via)
            };
            t.routes.push(Route { prefix, target });
        }
        for n in 1..=12u8 {
            for g in [format!("198.19.255.{n}"), format!("2001:db8:ffff::{n}")] {
                let g: IpAddr = g.parse().expect("gateway");
                if rng.random_bool(0.7) {
                    t.neighbours.push((g, mac_of(g)));
                }
            }
        }
        t
    }

    /// The longest prefix holding `dst` (the route lookup).
    pub fn lookup(&self, dst: IpAddr) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| r.prefix.contains(&dst))
            .max_by_key(|r| r.prefix.prefix_len())
    }

    pub fn neighbour(&self, gw: IpAddr) -> Option<[u8; 6]> {
        self.neighbours
            .iter()
            .find(|(g, _)| *g == gw)
            .map(|(_, m)| *m)
    }

    /// An address inside a random route's prefix (or None without routes of the family).
    pub fn address_in_a_route(&self, rng: &mut StdRng, v6: bool) -> Option<IpAddr> {
        let of_family: Vec<&Route> = self
            .routes
            .iter()
            .filter(|r| matches!(r.prefix, IpNet::V6(_)) == v6)
            .collect();
        if of_family.is_empty() {
            return None;
        }
        let r = of_family[rng.random_range(0..of_family.len())];
        Some(match r.prefix {
            IpNet::V4(p) => {
                let a = random_v4_in(rng, p.addr().octets(), p.prefix_len());
                std::net::Ipv4Addr::from(a).into()
            }
            IpNet::V6(p) => {
                let len = p.prefix_len();
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                let a = (u128::from(p.addr()) & mask) | (rng.random::<u128>() & !mask);
                std::net::Ipv6Addr::from(a).into()
            }
        })
    }
}
