//! x0tta6bl4's XDP fast path. See docs/DESIGN.md for the map layout and the decisions.
#![no_std]
#![no_main]
// `packet::opaque`: an asm block hides a value from the optimiser.
#![feature(asm_experimental_arch)]

mod checksum;
mod fib;
mod forward;
mod l3;
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
    let mut outcome = forward::process(&ctx, explain);
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

/// How many frames per million `x0_lossy` drops, set by its loader (`override_global`).
#[unsafe(no_mangle)]
static X0_LOSS_PER_MILLION: u32 = 0;

/// Where `x0_lossy` hands the frames it keeps: the router's own `x0_forward`, put at 0 by
/// the lab. Not pinned: each lossy port's loader makes its own.
#[aya_ebpf::macros::map]
static X0_LOSSY_NEXT: aya_ebpf::maps::ProgramArray =
    aya_ebpf::maps::ProgramArray::with_max_entries(1, 0);

/// The rate `x0_lossy` lets through, in bytes per second (0: no limit), set by its loader.
#[unsafe(no_mangle)]
static X0_RATE_BYTES_PER_S: u64 = 0;

/// `x0_lossy`'s token bucket: bytes available (at most a tenth of a second's worth) and
/// when it was last filled. Not per CPU: a lab link's rate is the link's, whichever CPU
/// a frame arrives on (the rare race between CPUs only blurs the rate).
#[aya_ebpf::macros::map]
static X0_LOSSY_BUCKET: aya_ebpf::maps::Array<[u64; 2]> =
    aya_ebpf::maps::Array::with_max_entries(1, 0);

/// The lab's lossy or congested link (this kernel has no netem, and frames redirected by
/// XDP never meet a qdisc to rate-limit): drops frames at random, and those over its rate
/// (a policer, like a full queue's tail drop without the queue), unseen and uncounted as
/// a bad or full wire would, and tail-calls the router's `x0_forward` with the rest (a
/// second copy of the forwarding here would not pass the verifier). Swapped into a router
/// port's link by the lab; not used by the dataplane.
#[xdp]
pub fn x0_lossy(ctx: XdpContext) -> u32 {
    // Volatile: the values are patched into the object after compilation.
    // SAFETY: plain reads of statics, and a helper that takes nothing.
    let (loss, rate, draw) = unsafe {
        (
            core::ptr::read_volatile(&X0_LOSS_PER_MILLION),
            core::ptr::read_volatile(&X0_RATE_BYTES_PER_S),
            aya_ebpf::helpers::bpf_get_prandom_u32(),
        )
    };
    if draw % 1_000_000 < loss || (rate > 0 && !within_rate(&ctx, rate)) {
        return xdp_action::XDP_DROP;
    }
    // SAFETY: the array holds only XDP programs; it does not return when one is there.
    unsafe { X0_LOSSY_NEXT.tail_call(&ctx, 0) };
    xdp_action::XDP_PASS
}

/// Whether the frame fits the bucket of `rate` bytes per second (and takes its bytes).
fn within_rate(ctx: &XdpContext, rate: u64) -> bool {
    let Some(bucket) = X0_LOSSY_BUCKET.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: a helper that takes nothing.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    let len = (ctx.data_end() - ctx.data()) as u64;
    let burst = rate / 10;
    // SAFETY: the map's one element, valid while the program runs.
    let b = unsafe { &mut *bucket };
    let elapsed = now.saturating_sub(b[1]).min(1_000_000_000);
    let tokens = (b[0] + rate * elapsed / 1_000_000_000).min(burst);
    b[1] = now;
    if tokens < len {
        b[0] = tokens;
        return false;
    }
    b[0] = tokens - len;
    true
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

/// The ifindex `x0_redirect` sends to, set by its loader (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static X0_REDIRECT_TO: u32 = 0;

/// Sends every frame out of one port through the egress port map, reading and rewriting
/// nothing: the forwarding benchmark's redirect ceiling, what the rig forwards with no
/// forwarding work at all (no forwarder can pass it). Not used by the dataplane.
#[xdp]
pub fn x0_redirect(_ctx: XdpContext) -> u32 {
    // Volatile: the value is patched into the object after compilation.
    // SAFETY: a plain read of a static.
    let ifindex = unsafe { core::ptr::read_volatile(&X0_REDIRECT_TO) };
    maps::X0_TX_PORTS
        .redirect(ifindex, 0)
        .unwrap_or(xdp_action::XDP_ABORTED)
}

/// The forwarding benchmark's traffic generator, not used by the dataplane. Run through
/// BPF_PROG_TEST_RUN in live-frames mode on a 60-byte UDP template whose ingress is the
/// sending interface, it sends each frame out of that interface (XDP_TX), spread over the
/// number of UDP source ports the template's payload gives. No socket and no skb: the
/// kernel hands the frames straight to the veth peer's receive ring.
///
/// The kernel recycles a frame's page with whatever the routers on the way wrote into it
/// (MACs, TTL, checksum), so each run restores those from a copy in the payload, which
/// nothing on the way touches. Payload layout: flows (u16), Ethernet destination and
/// source (12 bytes), gap (`gen_frame::GAP`, u16), IPv4 checksum (u16).
#[xdp]
pub fn x0_gen(ctx: XdpContext) -> u32 {
    use aya_ebpf::helpers::bpf_ktime_get_ns;
    use x0_common::gen_frame::{
        CHECK_COPY, FLOWS, GAP, IP_CHECK, LEN, MACS, MACS_COPY, SPORT, TEMPLATE_TTL, TTL,
    };
    const WAIT_TURNS: u32 = 4096;
    let data = ctx.data();
    if data + LEN > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: every offset lies inside the frame (checked above).
    unsafe {
        let at = |off: usize| (data + off) as *mut u8;
        // Paced by waiting, not by dropping: a frame this program dropped would go back to
        // the run's page pool through the ring the router's core returns the forwarded
        // frames to, and the two cores would fight over its lock (measured: a third of
        // both cores' time).
        let gap = u64::from(u16::from_be(core::ptr::read_unaligned(
            at(GAP) as *const u16
        )));
        if gap > 0 {
            let start = bpf_ktime_get_ns();
            // A bound the verifier can walk; each turn (a clock read) takes far more than
            // MAX_GAP / WAIT_TURNS ns, so the gap, not the bound, ends the wait.
            for _ in 0..WAIT_TURNS {
                if bpf_ktime_get_ns().wrapping_sub(start) >= gap {
                    break;
                }
            }
        }
        core::ptr::copy_nonoverlapping(at(MACS_COPY), at(MACS), 12);
        *at(TTL) = TEMPLATE_TTL;
        core::ptr::copy_nonoverlapping(at(CHECK_COPY), at(IP_CHECK), 2);
        let flows = u16::from_be(core::ptr::read_unaligned(at(FLOWS) as *const u16));
        let port = if flows > 1 {
            10_000 + (aya_ebpf::helpers::bpf_get_prandom_u32() % flows as u32) as u16
        } else {
            10_000
        };
        // The template's UDP checksum is 0 ("none" in IPv4), so nothing to fix up.
        core::ptr::write_unaligned(at(SPORT) as *mut u16, port.to_be());
    }
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
