//! What a router needs of its host's sysctls, checked at start (`[host]` in the config):
//! IP forwarding on, so that the kernel forwards what the fast path passes up (fragments,
//! options, packets too big) and sends the ICMP errors of a router (time exceeded, packet
//! too big, unreachable); reverse-path filtering not strict, since a mesh with backup paths
//! receives traffic on links it would not send it back on; ICMP redirects not accepted;
//! and, if the config gives it, the rate of the router's ICMP errors.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// What to do with one sysctl that is not as a router needs it.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set it as a router needs it, and say so.
    #[default]
    Fix,
    /// Refuse to start.
    Require,
    /// Leave it, with a warning (the operator owns it).
    Leave,
}

/// `[host]` in the config.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// net.ipv4.ip_forward and net.ipv6.conf.all.forwarding: 1.
    #[serde(default)]
    pub forwarding: Action,
    /// net.ipv4.conf.<interface>.rp_filter: not strict (the effective value is the larger of
    /// `all` and the interface's; fixed by setting the interface's to 2, loose).
    #[serde(default)]
    pub rp_filter: Action,
    /// net.ipv4.conf.<interface>.accept_redirects and net.ipv6's: 0.
    #[serde(default)]
    pub accept_redirects: Action,
    /// The token bucket of the ICMP errors the router sends, both families (RFC 1812
    /// 4.3.2.8, RFC 4443 2.4(f)); absent: the kernel's (1000/s, burst 50).
    #[serde(default)]
    pub icmp_errors: Option<IcmpRate>,
}

/// `icmp_errors = { per_sec = 1000, burst = 50 }`: net.ipv4.icmp_msgs_per_sec and
/// icmp_msgs_burst, one bucket per network namespace that ICMPv6 errors draw from too.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IcmpRate {
    pub per_sec: u32,
    pub burst: u32,
}

impl HostConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = self.icmp_errors {
            for (field, v) in [("per_sec", r.per_sec), ("burst", r.burst)] {
                if !(1..=1_000_000).contains(&v) {
                    bail!("host.icmp_errors.{field}: {v} is outside 1..=1000000");
                }
            }
        }
        Ok(())
    }
}

/// One sysctl that is not what a router needs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Finding {
    action: Action,
    path: PathBuf,
    found: String,
    wanted: String,
}

fn read(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

/// The sysctls under `net` (normally /proc/sys/net, this network namespace's) for
/// `interfaces`, compared with what a router needs; what differs is fixed, refused or left
/// as `config` says. Returns the one line that tells what was found and done, and whether
/// something was left as a router would not have it.
pub fn check(config: &HostConfig, interfaces: &[String], net: &Path) -> Result<(String, bool)> {
    let mut seen = Vec::new();
    let mut findings = Vec::new();
    let mut want = |action, path: PathBuf, ok: &dyn Fn(&str) -> bool, wanted: &str| -> Result<()> {
        let found = read(&path)?;
        let short = path
            .strip_prefix(net)
            .unwrap_or(&path)
            .display()
            .to_string();
        seen.push(format!("{}={found}", short.replace('/', ".")));
        if !ok(&found) {
            findings.push(Finding {
                action,
                path,
                found,
                wanted: wanted.to_string(),
            });
        }
        Ok(())
    };
    let is = |v: &'static str| move |f: &str| f == v;
    want(
        config.forwarding,
        net.join("ipv4/ip_forward"),
        &is("1"),
        "1",
    )?;
    want(
        config.forwarding,
        net.join("ipv6/conf/all/forwarding"),
        &is("1"),
        "1",
    )?;
    let all_rp = read(&net.join("ipv4/conf/all/rp_filter"))?;
    for i in interfaces {
        let strict = |f: &str| f.max(all_rp.as_str()) != "1";
        want(
            config.rp_filter,
            net.join(format!("ipv4/conf/{i}/rp_filter")),
            &strict,
            "2",
        )?;
        let redirects = [
            format!("ipv4/conf/{i}/accept_redirects"),
            format!("ipv6/conf/{i}/accept_redirects"),
        ];
        for r in redirects {
            want(config.accept_redirects, net.join(r), &is("0"), "0")?;
        }
    }
    if let Some(rate) = config.icmp_errors {
        for (file, v) in [("msgs_per_sec", rate.per_sec), ("msgs_burst", rate.burst)] {
            let v = v.to_string();
            let path = net.join(format!("ipv4/icmp_{file}"));
            want(Action::Fix, path, &|f: &str| f == v, &v)?;
        }
    }
    apply(&findings, seen.join(" "))
}

fn apply(findings: &[Finding], seen: String) -> Result<(String, bool)> {
    let name = |f: &Finding| f.path.display().to_string();
    let refused: Vec<String> = findings
        .iter()
        .filter(|f| f.action == Action::Require)
        .map(|f| format!("{} is {} (a router needs {})", name(f), f.found, f.wanted))
        .collect();
    if !refused.is_empty() {
        bail!("[host] requires: {}", refused.join("; "));
    }
    let mut done = Vec::new();
    for f in findings {
        if f.action == Action::Fix {
            std::fs::write(&f.path, &f.wanted).with_context(|| format!("setting {}", name(f)))?;
            done.push(format!("set {} {} -> {}", name(f), f.found, f.wanted));
        } else {
            done.push(format!(
                "left {} at {} (a router needs {})",
                name(f),
                f.found,
                f.wanted
            ));
        }
    }
    let left = findings.iter().any(|f| f.action == Action::Leave);
    Ok(if done.is_empty() {
        (format!("host: {seen}: as a router needs"), false)
    } else {
        (format!("host: {seen}: {}", done.join(", ")), left)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A /proc/sys/net of a host that is not set up as a router.
    fn fake_net(dir: &Path) {
        let files = [
            ("ipv4/ip_forward", "0"),
            ("ipv6/conf/all/forwarding", "0"),
            ("ipv4/conf/all/rp_filter", "1"),
            ("ipv4/conf/eth0/rp_filter", "0"),
            ("ipv4/conf/eth0/accept_redirects", "1"),
            ("ipv6/conf/eth0/accept_redirects", "1"),
            ("ipv4/icmp_msgs_per_sec", "1000"),
            ("ipv4/icmp_msgs_burst", "50"),
        ];
        for (p, v) in files {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{v}\n")).unwrap();
        }
    }

    fn value(dir: &Path, p: &str) -> String {
        read(&dir.join(p)).unwrap()
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("x0-host-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn fix_sets_what_a_router_needs_and_says_so() {
        let dir = temp("fix");
        fake_net(&dir);
        let (line, left) = check(&HostConfig::default(), &["eth0".into()], &dir).unwrap();
        assert!(!left);
        assert_eq!(value(&dir, "ipv4/ip_forward"), "1");
        assert_eq!(value(&dir, "ipv6/conf/all/forwarding"), "1");
        assert_eq!(
            value(&dir, "ipv4/conf/eth0/rp_filter"),
            "2",
            "loose beats all's strict"
        );
        assert_eq!(value(&dir, "ipv4/conf/eth0/accept_redirects"), "0");
        assert_eq!(value(&dir, "ipv6/conf/eth0/accept_redirects"), "0");
        assert!(
            line.contains("ipv4.ip_forward=0") && line.contains("-> 1"),
            "{line}"
        );
        let (again, _) = check(&HostConfig::default(), &["eth0".into()], &dir).unwrap();
        assert!(again.ends_with("as a router needs"), "{again}");
    }

    #[test]
    fn require_refuses_and_changes_nothing() {
        let dir = temp("require");
        fake_net(&dir);
        let config = HostConfig {
            forwarding: Action::Require,
            ..Default::default()
        };
        let e = check(&config, &["eth0".into()], &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ip_forward is 0 (a router needs 1)"), "{e}");
        assert_eq!(value(&dir, "ipv4/ip_forward"), "0");
        assert_eq!(
            value(&dir, "ipv4/conf/eth0/rp_filter"),
            "0",
            "nothing else fixed either"
        );
    }

    #[test]
    fn leave_warns_and_changes_nothing() {
        let dir = temp("leave");
        fake_net(&dir);
        let config = HostConfig {
            forwarding: Action::Leave,
            rp_filter: Action::Leave,
            accept_redirects: Action::Leave,
            icmp_errors: None,
        };
        let (line, left) = check(&config, &["eth0".into()], &dir).unwrap();
        assert!(left && line.contains("ip_forward at 0"), "{line}");
        assert_eq!(value(&dir, "ipv4/ip_forward"), "0");
    }

    #[test]
    fn the_icmp_error_rate_is_set_when_given_and_left_when_not() {
        let dir = temp("icmp");
        fake_net(&dir);
        let (line, _) = check(&HostConfig::default(), &["eth0".into()], &dir).unwrap();
        assert!(
            !line.contains("icmp_msgs"),
            "not read unless configured: {line}"
        );
        let config = HostConfig {
            icmp_errors: Some(IcmpRate {
                per_sec: 20,
                burst: 5,
            }),
            ..Default::default()
        };
        let (line, _) = check(&config, &["eth0".into()], &dir).unwrap();
        assert_eq!(value(&dir, "ipv4/icmp_msgs_per_sec"), "20");
        assert_eq!(value(&dir, "ipv4/icmp_msgs_burst"), "5");
        assert!(line.contains("icmp_msgs_per_sec 1000 -> 20"), "{line}");
        let bad = HostConfig {
            icmp_errors: Some(IcmpRate {
                per_sec: 0,
                burst: 5,
            }),
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert_eq!(e, "host.icmp_errors.per_sec: 0 is outside 1..=1000000");
    }

    #[test]
    fn a_missing_interface_is_an_error_naming_it() {
        let dir = temp("missing");
        fake_net(&dir);
        let e = check(&HostConfig::default(), &["eth9".into()], &dir).unwrap_err();
        assert!(format!("{e:#}").contains("eth9"), "{e:#}");
    }
}
