//! x0tta6bl4's XDP fast path. See docs/DESIGN.md for the map layout and the decisions.
#![no_std]
#![no_main]

mod checksum;
mod fib;
mod forward;
mod maps;
mod packet;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// Forwards IPv4/IPv6 from the route maps (or the kernel FIB), passes the rest to the kernel.
#[xdp]
pub fn x0_forward(ctx: XdpContext) -> u32 {
    let outcome = forward::process(&ctx);
    maps::count(&ctx, &outcome);
    outcome.action
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
