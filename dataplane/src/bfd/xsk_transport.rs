//! BFD over AF_XDP: packets for the router arrive on XSK sockets (one per interface queue)
//! that the XDP program feeds, and frames are sent through them; the UDP transport stays
//! underneath for interfaces where AF_XDP cannot bind, for peers whose MAC is not known
//! yet, and for any BFD packet that reached the kernel anyway.

use std::{
    collections::{HashMap, VecDeque},
    io,
    net::IpAddr,
    os::fd::{AsRawFd, RawFd},
    time::Duration,
};

use aya::maps::{HashMap as BpfHashMap, MapData, XskMap};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use x0_common::{BFD_CONTROL_PORT, MAX_XSKS, xsk_slot_key};

use super::{
    transport::{Path, Received, Transport, UdpTransport, wait_readable},
    xsk::XskSocket,
};

/// The XDP program's maps that route BFD packets to our sockets.
pub struct XskMaps {
    pub xsks: XskMap<MapData>,
    pub slots: BpfHashMap<MapData, u64, u32>,
}

pub struct XskTransport {
    udp: UdpTransport,
    maps: XskMaps,
    /// Sockets by ifindex (one per receive queue); an empty list: AF_XDP could not bind.
    sockets: HashMap<u32, Vec<XskSocket>>,
    macs: HashMap<Path, ([u8; 6], [u8; 6])>,
    next_slot: u32,
    /// Packets taken off the rings and not yet handed out.
    pending: VecDeque<Received>,
    sent_xsk: u64,
}

fn rx_queues(ifname: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

impl XskTransport {
    pub fn new(udp: UdpTransport, maps: XskMaps) -> Self {
        Self {
            udp,
            maps,
            sockets: HashMap::new(),
            macs: HashMap::new(),
            next_slot: 0,
            pending: VecDeque::new(),
            sent_xsk: 0,
        }
    }

    /// Binds a socket to every receive queue of the path's interface, once. Failure is
    /// logged and leaves that interface on UDP.
    fn bind_interface(&mut self, path: &Path) {
        if self.sockets.contains_key(&path.ifindex) {
            return;
        }
        let mut socks = Vec::new();
        for queue in 0..rx_queues(&path.ifname) {
            let bound = XskSocket::bind(path.ifindex, queue).and_then(|s| {
                if self.next_slot >= MAX_XSKS {
                    return Err(io::Error::other("all AF_XDP slots in use"));
                }
                let slot = self.next_slot;
                self.maps
                    .xsks
                    .set(slot, s.as_raw_fd(), 0)
                    .map_err(io::Error::other)?;
                self.maps
                    .slots
                    .insert(xsk_slot_key(path.ifindex, queue), slot, 0)
                    .map_err(io::Error::other)?;
                self.next_slot += 1;
                Ok(s)
            });
            match bound {
                Ok(s) => socks.push(s),
                Err(e) => {
                    tracing::warn!(iface = %path.ifname, queue, error = %e, "AF_XDP cannot bind: BFD on this interface uses the UDP socket");
                    socks.clear();
                    break;
                }
            }
        }
        if !socks.is_empty() {
            tracing::info!(iface = %path.ifname, queues = socks.len(), "BFD on this interface runs over AF_XDP (copy mode)");
        }
        self.sockets.insert(path.ifindex, socks);
    }

    fn frame(&self, path: &Path, packet: &[u8]) -> Option<Vec<u8>> {
        let (src_mac, dst_mac) = *self.macs.get(path)?;
        let port = self.udp.port_of(path)?;
        let builder = PacketBuilder::ethernet2(src_mac, dst_mac);
        let mut out = Vec::with_capacity(80);
        let written = match (path.local, path.peer) {
            (IpAddr::V4(l), IpAddr::V4(p)) => builder
                .ipv4(l.octets(), p.octets(), 255)
                .udp(port, BFD_CONTROL_PORT)
                .write(&mut out, packet),
            (IpAddr::V6(l), IpAddr::V6(p)) => builder
                .ipv6(l.octets(), p.octets(), 255)
                .udp(port, BFD_CONTROL_PORT)
                .write(&mut out, packet),
            _ => return None,
        };
        written.ok().map(|_| out)
    }
}

/// A BFD packet from a frame the XDP program redirected to us.
fn parse(frame: &[u8], ifindex: u32) -> Option<Received> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, ttl) = match p.net? {
        NetSlice::Ipv4(ip) => (IpAddr::V4(ip.header().source_addr()), ip.header().ttl()),
        NetSlice::Ipv6(ip) => (
            IpAddr::V6(ip.header().source_addr()),
            ip.header().hop_limit(),
        ),
    };
    let TransportSlice::Udp(udp) = p.transport? else {
        return None;
    };
    if udp.destination_port() != BFD_CONTROL_PORT {
        return None;
    }
    Some(Received {
        src,
        ifindex,
        ttl,
        payload: udp.payload().to_vec(),
    })
}

impl Transport for XskTransport {
    fn name(&self) -> &'static str {
        "af-xdp"
    }

    fn open_path(&mut self, path: &Path) -> io::Result<()> {
        self.udp.open_path(path)?;
        self.bind_interface(path);
        Ok(())
    }

    fn close_path(&mut self, path: &Path) {
        self.udp.close_path(path);
        self.macs.remove(path);
    }

    fn sent(&self) -> (u64, u64) {
        (self.sent_xsk, self.udp.sent().1)
    }

    fn set_neighbour(&mut self, path: &Path, src_mac: [u8; 6], dst_mac: Option<[u8; 6]>) {
        match dst_mac {
            Some(d) => self.macs.insert(path.clone(), (src_mac, d)),
            None => self.macs.remove(path),
        };
    }

    fn send(&mut self, path: &Path, packet: &[u8]) -> io::Result<()> {
        if let Some(frame) = self.frame(path, packet)
            && let Some(sock) = self
                .sockets
                .get_mut(&path.ifindex)
                .and_then(|s| s.first_mut())
            && sock.send(&frame).is_ok()
        {
            self.sent_xsk += 1;
            return Ok(());
        }
        self.udp.send(path, packet)
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Received>> {
        for attempt in 0..2 {
            for sock in self.sockets.values_mut().flatten() {
                let ifindex = sock.ifindex;
                let pending = &mut self.pending;
                sock.receive(|frame| pending.extend(parse(frame, ifindex)));
            }
            if let Some(r) = self.pending.pop_front() {
                return Ok(Some(r));
            }
            if let Some(r) = self.udp.try_recv()? {
                return Ok(Some(r));
            }
            if attempt == 0 {
                let fds: Vec<RawFd> = self
                    .sockets
                    .values()
                    .flatten()
                    .map(|s| s.as_raw_fd())
                    .chain(self.udp.fds())
                    .collect();
                wait_readable(&fds, timeout)?;
            }
        }
        Ok(None)
    }
}

impl Drop for XskTransport {
    fn drop(&mut self) {
        for sock in self.sockets.values().flatten() {
            let _ = self
                .maps
                .slots
                .remove(&xsk_slot_key(sock.ifindex, sock.queue));
        }
    }
}
