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

use crate::test_run_cost::{PORT_MAC, REPEAT, lo_port, resolve_gateway, run_batch};

struct Row {
    name: String,
    ns: Vec<f64>,
}

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

pub fn run(quick: bool) -> Result<()> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (BPF_PROG_TEST_RUN)"
    );
    let batches = if quick { 40 } else { 200 };
    println!(
        "x0-bench policy-cost: {batches} batches x {REPEAT} runs per figure, 1,000 identities"
    );
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
        rows.push(Row {
            name: "forwarding, no policy".into(),
            ns: measure(&dp, &forward, 4)?,
        });
        for n in [0usize, 100, 10_000] {
            let ifaces = vec![("lo".to_string(), Some("deny".to_string()))];
            let p = compile(&identities(), &rules(n), &ifaces)?;
            dp.install_policy(&p, &lo)?;
            // First run creates the flow; the measured ones hit the connection table.
            rows.push(Row {
                name: format!("policy, {n} rules: established flow"),
                ns: measure(&dp, &forward, 4)?,
            });
            rows.push(Row {
                name: format!("policy, {n} rules: judged from scratch"),
                ns: measure(&dp, &judged, 1)?,
            });
        }
        Ok(rows)
    })();
    dp.shutdown(true)?;
    let mut rows = result?;
    println!();
    println!(
        "{:<44} {:>9} {:>10} {:>9} {:>16}",
        "case", "min ns", "median ns", "max ns", "vs no policy"
    );
    let mut base = 0.0;
    for r in &mut rows {
        r.ns.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (min, med, max) = (r.ns[0], r.ns[r.ns.len() / 2], r.ns[r.ns.len() - 1]);
        if base == 0.0 {
            base = med;
        }
        println!(
            "{:<44} {:>9.1} {:>10.1} {:>9.1} {:>+15.0}%",
            r.name,
            min,
            med,
            max,
            (med / base - 1.0) * 100.0
        );
    }
    Ok(())
}
