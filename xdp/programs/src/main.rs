//! x0tta6bl4's XDP fast path. See docs/DESIGN.md for the map layout and the decisions.
#![no_std]
#![no_main]

mod checksum;
mod fib;
mod forward;
mod maps;
mod packet;
mod policy;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// Forwards IPv4/IPv6 from the route maps (or the kernel FIB), passes the rest to the kernel.
#[xdp]
pub fn x0_forward(ctx: XdpContext) -> u32 {
    let explain = is_explained(&ctx);
    if explain {
        maps::trace(true, |t| *t = Default::default());
    }
    let mut outcome = forward::process(&ctx);
    if outcome.action == forward::TAIL_CALL_POLICY {
        // Does not return when x0_policy is installed.
        unsafe { maps::X0_JUMP.tail_call(&ctx, x0_common::policy::JUMP_POLICY) };
        outcome.action = xdp_action::XDP_DROP;
    }
    finish(&ctx, &outcome, explain);
    outcome.action
}

/// Policy on a packet `x0_forward` routed, then the forwarding (tail-called).
#[xdp]
pub fn x0_policy(ctx: XdpContext) -> u32 {
    let explain = is_explained(&ctx);
    if explain {
        maps::trace(true, |t| *t = Default::default());
    }
    let outcome = forward::after_policy(&ctx, explain);
    finish(&ctx, &outcome, explain);
    outcome.action
}

/// Counts the outcome, or (for an explained packet, which changes nothing) records it.
#[inline(always)]
fn finish(ctx: &XdpContext, outcome: &forward::Outcome, explain: bool) {
    if explain {
        maps::trace(true, |t| {
            t.reason = outcome.reason as u32;
            t.egress_ifindex = outcome.egress;
            t.nexthop = outcome.nexthop;
        });
    } else {
        maps::count(ctx, outcome);
        if outcome.action == xdp_action::XDP_DROP && !policy::emitted_by_policy(outcome.reason) {
            policy::emit_basic(ctx, outcome.reason);
        }
    }
}

/// `x0-dataplane explain` runs the programs with EXPLAIN_MAGIC as metadata before the
/// frame; real frames carry no metadata here.
#[inline(always)]
fn is_explained(ctx: &XdpContext) -> bool {
    let meta = ctx.metadata();
    if meta + 8 > ctx.data() {
        return false;
    }
    let magic = unsafe { core::ptr::read_unaligned(meta as *const u64) };
    magic == x0_common::policy::EXPLAIN_MAGIC
}

/// Does nothing but XDP_PASS: the benchmarks' baseline, and the program lab hosts attach so
/// that frames redirected into their veth end are accepted.
#[xdp]
pub fn x0_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Drops every frame: the XDP_DROP ceiling in benchmarks, and the lab's black-hole.
#[xdp]
pub fn x0_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
