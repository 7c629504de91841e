//! Per-packet cost of policy through BPF_PROG_TEST_RUN: forwarding without policy, and
//! with 0, 100 and 10,000 rules among 1,000 identities, for a flow already in the
//! connection table (its packets after the first) and for a packet judged from scratch
//! (identities, four rule lists, the default: a new flow that is denied, so nothing is
//! cached and every repetition does the whole evaluation).

use std::{net::Ipv4Addr, path::PathBuf};

use anyhow::{Result, ensure};
use etherparse::PacketBuilder;
use x0_common::program_names;
use x0_dataplane::{
    Dataplane,
    policy::{IdentityConfig, RuleConfig, compile},
};

use x0_dataplane::tables::{NextHopSpec, RouteTarget};

use crate::{
    report::{Row, Table},
    test_run_cost::{GATEWAY, PORT_MAC, REPEAT, lo_port, resolve_gateway, run_batch},
};

/// 1,000 identities: 10.(i/256).(i%256).0/24 for identity i+1.
fn identities() -> Vec<IdentityConfig> {
    (0..1000u32)
        .map(|i| IdentityConfig {
            name: format!("id{i}"),
            id: i + 1,
            prefixes: vec![format!("10.{}.{}.0/24", i / 256, i % 256)],
        })
        .collect()
}

/// `n` allow rules: the probe pair (id0 -> id1) gets 31 of them on other ports (a full
/// scan), the rest spread over other pairs.
fn rules(n: usize) -> Vec<RuleConfig> {
    let mut out = Vec::new();
    for i in 0..n {
        let (from, to, port) = if i < 31.min(n) {
            ("id0".to_string(), "id1".to_string(), 1000 + i)
        } else {
            (
                format!("id{}", 2 + i % 997),
                format!("id{}", 3 + (i / 997) % 997),
                2000 + i % 30,
            )
        };
        out.push(RuleConfig {
            from,
            to,
            proto: "udp".into(),
            ports: Some(port.to_string()),
            action: "allow".into(),
            rate: None,
        });
    }
    out.push(RuleConfig {
        from: "id0".into(),
        to: "id1".into(),
        proto: "udp".into(),
        ports: Some("5000".into()),
        action: "allow".into(),
        rate: None,
    });
    out
}

fn frame(dport: u16, ttl: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], PORT_MAC)
        .ipv4(
            Ipv4Addr::new(10, 0, 0, 7).octets(),
            Ipv4Addr::new(10, 0, 1, 9).octets(),
            ttl,
        )
        .udp(4000, dport)
        .write(&mut v, &[0u8; 22])
        .unwrap();
    v
}

/// With a dataplane whose `lo` port is set up (`lo_port`): routes 10.0.0.0/8 through it,
/// installs `n` rules among 1,000 identities (zero-trust default on `lo`), and returns ns
/// per packet of a flow the connection table knows, over `batches` batches.
pub fn with_policy(dp: &mut Dataplane, n: usize, batches: usize) -> Result<Vec<f64>> {
    dp.tables().upsert(
        "10.0.0.0/8".parse()?,
        RouteTarget::NextHops(vec![NextHopSpec {
            gateway: GATEWAY.parse()?,
            ifindex: 1,
        }]),
    )?;
    resolve_gateway(dp)?;
    let lo = |n: &str| (n == "lo").then_some(1);
    let ifaces = vec![("lo".to_string(), Some("deny".to_string()))];
    let p = compile(&identities(), &rules(n), &ifaces)?;
    dp.install_policy(&p, &lo)?;
    let forward = frame(5000, 255);
    let (action, _) = dp.test_run(&forward)?;
    ensure!(action == 4, "the probe flow is not forwarded under policy");
    let prog = dp.program(program_names::FORWARD)?;
    (0..batches)
        .map(|_| run_batch(prog, &forward, 4, None))
        .collect()
}

pub fn run(quick: bool) -> Result<Table> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (BPF_PROG_TEST_RUN)"
    );
    let batches = if quick { 40 } else { 200 };
    let pin_root = PathBuf::from(format!(
        "/sys/fs/bpf/x0-bench-policy-{}",
        std::process::id()
    ));
    let mut dp = Dataplane::load(&pin_root)?;
    let result = (|| -> Result<Vec<Row>> {
        let via = lo_port(&mut dp)?;
        dp.tables().upsert("10.0.0.0/8".parse()?, via)?;
        resolve_gateway(&mut dp)?;
        let lo = |n: &str| (n == "lo").then_some(1);
        let forward = frame(5000, 255);
        let judged = frame(7777, 64); // no rule: the zero-trust default drops it, every time
        let mut rows = Vec::new();
        let measure = |dp: &Dataplane, f: &[u8], want: u32| -> Result<Vec<f64>> {
            let prog = dp.program(program_names::FORWARD)?;
            (0..batches)
                .map(|_| run_batch(prog, f, want, None))
                .collect()
        };
        let (action, _) = dp.test_run(&forward)?;
        ensure!(
            action == 4,
            "probe not forwarded: {:?}",
            dp.counters()?
                .reasons
                .iter()
                .filter(|r| r.packets > 0)
                .collect::<Vec<_>>()
        );
        rows.push(Row::new("forwarding, no policy", measure(&dp, &forward, 4)?).baseline());
        for n in [0usize, 100, 10_000] {
            eprintln!("  policy cost: {n} rules");
            let ifaces = vec![("lo".to_string(), Some("deny".to_string()))];
            let p = compile(&identities(), &rules(n), &ifaces)?;
            dp.install_policy(&p, &lo)?;
            // First run creates the flow; the measured ones hit the connection table.
            rows.push(Row::new(
                format!("policy, {n} rules: established flow"),
                measure(&dp, &forward, 4)?,
            ));
            rows.push(Row::new(
                format!("policy, {n} rules: judged from scratch"),
                measure(&dp, &judged, 1)?,
            ));
        }
        Ok(rows)
    })();
    dp.shutdown(true)?;
    Ok(Table {
        id: "policy-cost".into(),
        title: "Per-packet cost of policy (BPF_PROG_TEST_RUN)".into(),
        command: format!(
            "cargo build --release -p x0-bench && ./target/release/x0-bench policy-cost{}",
            if quick { " --quick" } else { "" }
        ),
        about: format!(
            "`x0_forward` with zero-trust policy on the ingress: 1,000 identities, 0, 100 and \
             10,000 rules (31 of them on the probe's identity pair, so a full scan), beside the \
             same forwarding without policy. \"established\": a flow in the connection table; \
             \"judged from scratch\": a new flow no rule allows, so nothing is cached and every \
             run evaluates identities, four rule lists and the default. {batches} batches of \
             {REPEAT} runs per row: ns per run."
        ),
        unit: "ns per packet".into(),
        higher_is_better: false,
        rows: result?,
        goal: String::new(),
        verdict: String::new(),
        notes: vec![],
    })
}
