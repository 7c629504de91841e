//! Route text as operators write it: `PREFIX via GATEWAY@INTERFACE [via ...]`, and batch
//! files with one `add|replace|del` operation per line.

use anyhow::{Result, anyhow, bail};
use x0_proto::dataplane::v1::{self as pb, route_operation::Op};

/// "192.0.2.1@eth0" -> next hop.
pub fn next_hop(s: &str) -> Result<pb::NextHop> {
    let (gateway, interface) = s
        .split_once('@')
        .ok_or_else(|| anyhow!("{s:?}: write a next hop as GATEWAY@INTERFACE"))?;
    Ok(pb::NextHop {
        gateway: gateway.into(),
        interface: interface.into(),
    })
}

pub fn route(prefix: &str, via: &[String]) -> Result<pb::Route> {
    Ok(pb::Route {
        prefix: prefix.into(),
        next_hops: via.iter().map(|v| next_hop(v)).collect::<Result<_>>()?,
        origin: 0,
    })
}

/// One line of a batch file: "add 10.0.0.0/24 192.0.2.1@eth0 [...]", "replace ...",
/// "del 10.0.0.0/24". Blank lines and # comments are skipped (None).
pub fn batch_line(line: &str) -> Result<Option<pb::RouteOperation>> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(None);
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let via: Vec<String> = words
        .iter()
        .skip(2)
        .filter(|w| **w != "via")
        .map(|w| w.to_string())
        .collect();
    let op = match (words[0], words.get(1)) {
        ("add", Some(p)) => Op::Add(route(p, &via)?),
        ("replace", Some(p)) => Op::Replace(route(p, &via)?),
        ("del" | "delete", Some(p)) if via.is_empty() => Op::Delete(p.to_string()),
        _ => bail!("{line:?}: expected add|replace PREFIX GATEWAY@IF..., or del PREFIX"),
    };
    Ok(Some(pb::RouteOperation { op: Some(op) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_batch_lines() {
        let op = batch_line("add 10.0.0.0/24 via 192.0.2.1@eth0 192.0.2.9@eth1 # two")
            .unwrap()
            .unwrap();
        let Some(Op::Add(r)) = op.op else { panic!() };
        assert_eq!(r.next_hops.len(), 2);
        assert_eq!(r.next_hops[1].interface, "eth1");
        assert!(batch_line("  # nothing").unwrap().is_none());
        assert!(matches!(
            batch_line("del 10.0.0.0/24").unwrap().unwrap().op,
            Some(Op::Delete(_))
        ));
        assert!(batch_line("add 10.0.0.0/24 192.0.2.1").is_err());
        assert!(batch_line("frob 10.0.0.0/24").is_err());
    }
}
