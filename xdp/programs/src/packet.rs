//! Bounds-checked access to the frame. Every header read goes through `header`, which is
//! the check the verifier needs before any access.

use aya_ebpf::programs::XdpContext;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: [u8; 2],
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub version_class_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// A `T` at `offset` bytes into the frame, if the frame is long enough.
#[inline(always)]
pub fn header<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// `header` for an offset computed from the packet (where the transport header starts).
/// The address is laundered before the bounds check: the compiler otherwise turns
/// `start + offset + size > end` into a test of `offset` against `end - start`, which
/// gives the verifier no packet range for the pointer.
#[inline(always)]
pub fn header_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let at = opaque(ctx.data() + offset);
    if at + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some(at as *mut T)
}

#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// `value`, hidden from the optimiser (moved to itself in an asm block), so that a bounds
/// check is made on the register the verifier then sees used. Unlike
/// `core::hint::black_box`, it costs no stack slot (the BPF stack is 512 bytes); an empty
/// block would leave the kernel a line-info record without an instruction.
#[inline(always)]
pub fn opaque(mut value: usize) -> usize {
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) value, options(pure, nomem, nostack)) };
    value
}
