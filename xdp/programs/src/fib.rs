//! The kernel FIB fallback: routes that another daemon (babeld, bird, FRR) or the operator
//! put into the kernel are forwarded in XDP too.

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_PROHIBIT, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE,
        bpf_fib_lookup as FibParams,
    },
    helpers::bpf_fib_lookup,
    programs::XdpContext,
};
use x0_common::Reason;

use crate::packet::{Ipv4Hdr, Ipv6Hdr};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

pub struct FibEgress {
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

pub fn lookup_v4(ctx: &XdpContext, ip: &Ipv4Hdr, tot_len: u16) -> Result<FibEgress, Reason> {
    let mut p: FibParams = unsafe { core::mem::zeroed() };
    p.family = AF_INET;
    p.l4_protocol = ip.protocol;
    p.__bindgen_anon_1.tot_len = tot_len;
    p.ifindex = ctx.ingress_ifindex() as u32;
    p.__bindgen_anon_2.tos = ip.tos;
    p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(ip.src);
    p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(ip.dst);
    run(ctx, &mut p)
}

pub fn lookup_v6(ctx: &XdpContext, ip: &Ipv6Hdr, tot_len: u16) -> Result<FibEgress, Reason> {
    let mut p: FibParams = unsafe { core::mem::zeroed() };
    p.family = AF_INET6;
    p.l4_protocol = ip.next_header;
    p.__bindgen_anon_1.tot_len = tot_len;
    p.ifindex = ctx.ingress_ifindex() as u32;
    let vcf = ip.version_class_flow;
    p.__bindgen_anon_2.flowinfo = u32::from_ne_bytes([vcf[0] & 0x0f, vcf[1], vcf[2], vcf[3]]);
    p.__bindgen_anon_3.ipv6_src = words(&ip.src);
    p.__bindgen_anon_4.ipv6_dst = words(&ip.dst);
    run(ctx, &mut p)
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

#[inline(always)]
fn run(ctx: &XdpContext, p: &mut FibParams) -> Result<FibEgress, Reason> {
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            p as *mut FibParams,
            size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc < 0 {
        return Err(Reason::PassFibNotForwarded);
    }
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(FibEgress {
            ifindex: p.ifindex,
            src_mac: p.smac,
            dst_mac: p.dmac,
        }),
        BPF_FIB_LKUP_RET_NO_NEIGH => Err(Reason::PassNoNeighbour),
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Err(Reason::PassTooBig),
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            Err(Reason::PassFibBlocked)
        }
        // Not forwarded (local or no route), forwarding disabled, unsupported, no source.
        _ => Err(Reason::PassFibNotForwarded),
    }
}
