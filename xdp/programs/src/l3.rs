//! The IP headers' checks and where the upper layer starts: IPv4 header length, checksum,
//! options and fragments; IPv6 extension headers. Fragments and headers with options are
//! forwarded like any packet (routing needs only the addresses); only what RFC 1812 5.2.4
//! and RFC 8200 4.3 ask every router to act on goes to the kernel.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_csum_diff, bpf_loop, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use x0_common::Reason;

use crate::{
    checksum,
    packet::{ETH_HLEN, Ipv4Hdr, Ipv6Hdr, header, opaque},
};

/// Whether the packet is a whole datagram or which fragment of one (with its id).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    Whole,
    /// Offset 0, more to come: it carries the transport header.
    First(u32),
    /// A non-zero offset: no transport header.
    Later(u32),
}

/// The upper-layer protocol, the offset of its header in the frame, and the fragment.
#[derive(Clone, Copy)]
pub struct Upper {
    pub proto: u8,
    pub l4: usize,
    pub frag: Frag,
}

/// Checks an IPv4 header (IHL >= 5, total length within the frame, checksum over the whole
/// header) and finds where the payload starts. `Err`: drop as malformed, or pass options a
/// router must process.
#[inline(always)]
pub fn ipv4(ctx: &XdpContext, ip: &Ipv4Hdr, frame_len: usize) -> Result<Upper, Reason> {
    if ip.version_ihl >> 4 != 4 || ip.version_ihl & 0x0f < 5 {
        return Err(Reason::DropMalformedL3);
    }
    let ihl = (ip.version_ihl & 0x0f) as usize * 4;
    let tot_len = u16::from_be_bytes(ip.tot_len) as usize;
    if tot_len < ihl || tot_len > frame_len - ETH_HLEN {
        return Err(Reason::DropMalformedL3);
    }
    let sum = fixed_header_sum(ip);
    if ihl > 20 {
        check_options(ctx, ihl, sum)?;
    } else if checksum::fold(sum) != 0xffff {
        return Err(Reason::DropMalformedL3);
    }
    let frag_off = u16::from_be_bytes(ip.frag_off);
    let id = u16::from_be_bytes(ip.id) as u32;
    let frag = if frag_off & 0x1fff == 1 && ip.protocol == IPPROTO_TCP {
        // Would overwrite the first fragment's TCP flags at reassembly (RFC 1858 3.2).
        return Err(Reason::DropFragmentUnknown);
    } else if frag_off & 0x1fff != 0 {
        Frag::Later(id)
    } else if frag_off & 0x2000 != 0 {
        Frag::First(id)
    } else {
        Frag::Whole
    };
    Ok(Upper {
        proto: ip.protocol,
        l4: ETH_HLEN + ihl,
        frag,
    })
}

/// The one's-complement sum of the first ten 16-bit words, summed as loaded: the sum is
/// independent of byte order (RFC 1071), so no swap per word; 16-bit loads, where the
/// header's byte arrays would load byte by byte (frames start 2-aligned, after the
/// headroom, so the header does too; x86 and the verifier take misaligned loads anyway).
#[inline(always)]
fn fixed_header_sum(ip: &Ipv4Hdr) -> u32 {
    let words = ip as *const Ipv4Hdr as *const u16;
    let mut sum: u32 = 0;
    for i in 0..10 {
        sum += unsafe { *words.add(i) } as u32;
    }
    sum
}

/// The checksum with the options' words (`sum`: the fixed header's), and whether the
/// options are the kernel's. A call of its own: its 52-byte copy of the options stays
/// off the stack of the calls the forwarding path makes after it (512 bytes in all).
#[inline(never)]
fn check_options(ctx: &XdpContext, ihl: usize, sum: u32) -> Result<(), Reason> {
    let mut options = Options::load(ctx, ihl).ok_or(Reason::DropMalformedL3)?;
    if checksum::fold(sum + options.sum()) != 0xffff {
        return Err(Reason::DropMalformedL3);
    }
    if options.need_a_router() {
        return Err(Reason::PassIpv4Options);
    }
    Ok(())
}

/// A header's options, copied out of the frame, and how far the walk over them got.
/// Copied with one helper call and summed and walked by helpers, so that the verifier
/// checks a fixed number of paths: walked in the program, every option length split
/// the rest of the program into its own path, past a million instructions.
#[repr(C)]
struct Options {
    bytes: [u8; 40],
    off: u32,
    len: u32,
    needs_router: u32,
}

impl Options {
    #[inline(always)]
    fn load(ctx: &XdpContext, ihl: usize) -> Option<Options> {
        if ihl < 24 {
            return None;
        }
        // 4..=40, computed so that the verifier sees both bounds on the register the
        // helper gets (the compiler knew them, dropped the tests, and the verifier lost
        // them): laundered, masked, then one test.
        let len = ((opaque(ihl - 24) & 0x3c) + 4) as u32;
        if len > 40 {
            return None;
        }
        let mut options = Options {
            bytes: [0; 40],
            off: 0,
            len,
            needs_router: 0,
        };
        let buf = options.bytes.as_mut_ptr() as *mut c_void;
        let copied = unsafe { bpf_xdp_load_bytes(ctx.ctx, (ETH_HLEN + 20) as u32, buf, len) };
        (copied == 0).then_some(options)
    }

    /// The one's-complement sum of the options' 16-bit words, folded to 16 bits.
    #[inline(always)]
    fn sum(&mut self) -> u32 {
        let words = self.bytes.as_mut_ptr() as *mut u32;
        // csum_diff sums whole 4-byte words, as options are (IHL counts them); the bound
        // tested where the verifier sees it, as in `load`.
        let len = opaque(self.len as usize) as u32 & 0x3c;
        if len > 40 {
            return 0;
        }
        let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, words, len, 0) };
        checksum::fold(sum as u32) as u32
    }

    /// Options a router must update or act on when it forwards (RFC 1812 5.2.4; what
    /// Linux's ip_forward_options and its router-alert and CIPSO code handle): record
    /// route (7), timestamp (68), loose and strict source route (131, 137), router alert
    /// (148), security (130, 133, 134). Also true for malformed options, which the kernel
    /// answers with a parameter problem. End of list (0), no-op (1) and every other
    /// option are forwarded unchanged, as RFC 1812 5.2.4 allows for options a router does
    /// not implement.
    #[inline(always)]
    fn need_a_router(&mut self) -> bool {
        unsafe {
            bpf_loop(
                40,
                scan_option as *mut c_void,
                self as *mut Options as *mut c_void,
                0,
            );
        }
        self.needs_router != 0
    }
}

/// One option of `Options`, for bpf_loop: returns 1 to stop the walk.
extern "C" fn scan_option(_index: u32, ctx: *mut c_void) -> i64 {
    let s = unsafe { &mut *(ctx as *mut Options) };
    let (off, len) = (s.off as usize, (s.len as usize).min(40));
    if off >= len {
        return 1;
    }
    match s.bytes[off] {
        0 => return 1,
        1 => s.off += 1,
        7 | 68 | 131 | 137 | 148 | 130 | 133 | 134 => {
            s.needs_router = 1;
            return 1;
        }
        _ => {
            let option_len = if off + 1 < len {
                s.bytes[off + 1] as usize
            } else {
                0
            };
            if option_len < 2 || off + option_len > len {
                s.needs_router = 1;
                return 1;
            }
            s.off += option_len as u32;
        }
    }
    0
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
/// Extension headers walked before the upper layer; a longer chain goes to the kernel.
const MAX_EXT_HEADERS: usize = 4;

/// Walks the IPv6 extension headers (routing, fragment, destination options, AH) to the
/// upper layer. A routing header is only processed by the node it is addressed to, so a
/// transit router forwards it unchanged; hop-by-hop options are for every router (RFC
/// 8200 4.3): the kernel's. `Err`: pass the hop-by-hop header or a long chain, or drop a
/// header cut short.
#[inline(always)]
pub fn ipv6(ctx: &XdpContext, ip: &Ipv6Hdr) -> Result<Upper, Reason> {
    let end = ETH_HLEN + 40 + u16::from_be_bytes(ip.payload_len) as usize;
    let mut next = ip.next_header;
    let mut l4 = ETH_HLEN + 40;
    let mut frag = Frag::Whole;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS => return Err(Reason::PassIpv6ExtHeader),
            IPPROTO_FRAGMENT => {
                let h = header::<[u8; 8]>(ctx, l4).ok_or(Reason::DropMalformedL3)?;
                let h = unsafe { &*h };
                next = h[0];
                l4 += 8;
                let offset_more = u16::from_be_bytes([h[2], h[3]]);
                let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                if offset_more & 0xfff8 != 0 {
                    // The headers after a later fragment's are not in it.
                    return within(end, next, l4, Frag::Later(id));
                }
                if offset_more & 1 != 0 {
                    frag = Frag::First(id);
                }
                // Offset 0 without M is an atomic fragment (RFC 6946): a whole datagram.
            }
            IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH => {
                let h = header::<[u8; 2]>(ctx, l4).ok_or(Reason::DropMalformedL3)?;
                let h = unsafe { &*h };
                // AH counts its length in 4-byte units less 2 (RFC 4302), the others in
                // 8-byte units less 1 (RFC 8200 4.4, 4.6).
                l4 += if next == IPPROTO_AH {
                    (h[1] as usize + 2) * 4
                } else {
                    (h[1] as usize + 1) * 8
                };
                next = h[0];
            }
            _ => return within(end, next, l4, frag),
        }
    }
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_AH | IPPROTO_DSTOPTS => {
            Err(Reason::PassIpv6ExtHeader)
        }
        _ => within(end, next, l4, frag),
    }
}

/// The upper layer at `l4`, unless the extension headers ran past the payload (`end`), or
/// past what the fast path reads (the kernel's then).
#[inline(always)]
fn within(end: usize, proto: u8, l4: usize, frag: Frag) -> Result<Upper, Reason> {
    // Laundered: each path through the walk left its own bounds on `l4`, and the
    // verifier lost the packet range of the later reads at it.
    let l4 = opaque(l4);
    if l4 > end {
        return Err(Reason::DropMalformedL3);
    }
    if l4 > MAX_L4_OFFSET {
        return Err(Reason::PassIpv6ExtHeader);
    }
    Ok(Upper { proto, l4, frag })
}

/// Where the upper layer may start at the latest for the fast path (extension headers of
/// more than 458 bytes in all are the kernel's).
const MAX_L4_OFFSET: usize = 512;
