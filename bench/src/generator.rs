//! `x0-bench generate`: the forwarding benchmark's traffic generator. 64-byte UDP frames
//! (60 + FCS) out of one interface through an AF_PACKET socket that bypasses the qdisc,
//! in `sendmmsg` batches, for a given time; prints how many it sent.
//!
//! Why not trafgen (netsniff-ng): it gives up ("Flushing TX_RING failed") the first time
//! the veth pushes back, which a receiver on another core (threaded NAPI) does at once,
//! so it can only measure with generator and router on one core. This one retries.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use etherparse::PacketBuilder;
use nix::libc;

pub struct Spec {
    pub iface: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Distinct UDP source ports.
    pub flows: u16,
    pub duration: Duration,
}

fn frames(s: &Spec) -> Vec<Vec<u8>> {
    (0..s.flows)
        .map(|i| {
            let mut v = Vec::with_capacity(60);
            PacketBuilder::ethernet2(s.src_mac, s.dst_mac)
                .ipv4(s.src.octets(), s.dst.octets(), 64)
                .udp(10_000 + i, 9)
                .write(&mut v, &[0u8; 18]) // 14 + 20 + 8 + 18 = 60
                .expect("a valid frame");
            v
        })
        .collect()
}

/// Sends until the time is up; returns the frames the kernel took.
pub fn run(s: &Spec) -> Result<u64> {
    let frames = frames(s);
    let ifindex = nix::net::if_::if_nametoindex(s.iface.as_str())
        .with_context(|| format!("interface {}", s.iface))?;
    // SAFETY: plain socket calls on a descriptor this function owns and closes.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    let result = (|| -> Result<u64> {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int of the right size.
        if unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        } < 0
        {
            bail!("PACKET_QDISC_BYPASS: {}", std::io::Error::last_os_error());
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: bind with a pointer to a live sockaddr_ll and its size.
        if unsafe {
            libc::bind(
                fd,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        } < 0
        {
            bail!("bind to {}: {}", s.iface, std::io::Error::last_os_error());
        }
        const BATCH: usize = 64;
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(BATCH);
        let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(BATCH);
        let mut next = 0usize;
        let mut sent = 0u64;
        let end = Instant::now() + s.duration;
        let mut round = 0u32;
        loop {
            round += 1;
            if round.is_multiple_of(64) && Instant::now() >= end {
                return Ok(sent);
            }
            iov.clear();
            msgs.clear();
            for k in 0..BATCH {
                let f = &frames[(next + k) % frames.len()];
                iov.push(libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                });
            }
            for v in iov.iter_mut() {
                // SAFETY: msghdr is plain data; zeroed, then pointed at one live iovec.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                msgs.push(h);
            }
            // SAFETY: msgs and the iovecs and frames they point to outlive the call.
            let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
            if n > 0 {
                sent += n as u64;
                next = (next + n as usize) % frames.len();
            } else {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    // the veth pushes back: its receiver is behind; try again
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) => std::hint::spin_loop(),
                    _ => bail!("sendmmsg: {e}"),
                }
            }
        }
    })();
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    result
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC {s:?}"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("MAC {s:?}: not 6 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_60_bytes_one_per_flow() {
        let s = Spec {
            iface: "lo".into(),
            src_mac: parse_mac("02:00:00:00:00:01").unwrap(),
            dst_mac: parse_mac("02:00:00:00:00:02").unwrap(),
            src: "198.18.1.2".parse().unwrap(),
            dst: "198.18.2.2".parse().unwrap(),
            flows: 1000,
            duration: Duration::from_millis(1),
        };
        let f = frames(&s);
        assert_eq!(f.len(), 1000);
        assert!(f.iter().all(|x| x.len() == 60));
        let ports: std::collections::HashSet<&[u8]> = f.iter().map(|x| &x[34..36]).collect();
        assert_eq!(ports.len(), 1000);
        assert!(parse_mac("02:00:00").is_err());
    }
}
