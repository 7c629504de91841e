//! The lab through an operator's ordinary tools (ping with options, traceroute, tracepath,
//! iperf3, ip route), their output parsed into figures the tests can check.

use std::{
    net::IpAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{lab::Lab, netns};

/// `ping -c COUNT EXTRA.. TO` from `from`; returns the replies and ping's whole output.
pub fn ping_with(
    lab: &Lab,
    from: &str,
    to: IpAddr,
    count: u32,
    extra: &[&str],
) -> Result<(u32, String)> {
    let count = count.to_string();
    let target = to.to_string();
    let mut args = vec!["ping", "-n", "-c", &count, "-i", "0.05", "-W", "1"];
    args.extend_from_slice(extra);
    args.push(&target);
    let out = netns::exec(&lab.ns(from), &args)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((crate::traffic::ping_received(&text)?, text))
}

/// The hops `traceroute -n` lists from `from` to `to` (None: no answer, `*`), one probe per
/// hop, at most `max_hops`.
pub fn traceroute(lab: &Lab, from: &str, to: IpAddr, max_hops: u32) -> Result<Vec<Option<IpAddr>>> {
    let max = max_hops.to_string();
    let target = to.to_string();
    let family = if to.is_ipv6() { "-6" } else { "-4" };
    let args = [
        "traceroute",
        family,
        "-n",
        "-q",
        "1",
        "-N",
        "1",
        "-w",
        "1",
        "-m",
        &max,
        &target,
    ];
    let out = netns::exec_ok(&lab.ns(from), &args)?;
    Ok(parse_traceroute(&out))
}

/// " 2  198.18.12.2  0.065 ms" -> Some(198.18.12.2); " 3  *" -> None (the header skipped).
fn parse_traceroute(out: &str) -> Vec<Option<IpAddr>> {
    out.lines()
        .filter(|l| !l.starts_with("traceroute"))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.next()?.parse::<u32>().ok()?;
            Some(words.next().and_then(|w| w.parse().ok()))
        })
        .collect()
}

/// The path MTU `tracepath -n` finds from `from` to `to`.
pub fn tracepath_pmtu(lab: &Lab, from: &str, to: IpAddr) -> Result<u32> {
    let target = to.to_string();
    let out = netns::exec_ok(&lab.ns(from), &["tracepath", "-n", "-m", "8", &target])?;
    parse_pmtu(&out).with_context(|| format!("no \"pmtu\" in tracepath's output:\n{out}"))
}

/// "     Resume: pmtu 1400 hops 4 back 4 " -> 1400.
fn parse_pmtu(out: &str) -> Option<u32> {
    let line = out.lines().rev().find(|l| l.contains("pmtu"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "pmtu")?;
    words.next()?.parse().ok()
}

/// Bytes an `iperf3` TCP test of `secs` seconds from `client` delivered to `server` (at `to`),
/// at most at `bitrate` (iperf3's `-b`: "50M") if given.
pub fn iperf3_tcp(
    lab: &Lab,
    (client, server): (&str, &str),
    to: IpAddr,
    secs: u32,
    bitrate: Option<&str>,
) -> Result<u64> {
    let mut daemon = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(server),
            "iperf3",
            "-s",
            "-1",
            "-p",
            "5301",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 -s")?;
    let target = to.to_string();
    let secs = secs.to_string();
    let (mut out, mut last_error) = (None, String::new());
    // The server needs a moment to listen; the client is asked again until it connects
    // (iperf3 -J may exit 0 with an "error" in its JSON).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut args = vec!["iperf3", "-c", &target, "-p", "5301", "-t", &secs, "-J"];
        if let Some(b) = bitrate {
            args.extend(["-b", b]);
        }
        let o = netns::exec(&lab.ns(client), &args)?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&o.stdout).ok();
        if let Some(json) = json.filter(|j| o.status.success() && j.get("error").is_none()) {
            out = Some(json);
            break;
        }
        last_error = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stderr).trim(),
            serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .ok()
                .and_then(|j| j.get("error").cloned())
                .map_or(String::new(), |e| format!(" {e}"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let json = out.with_context(|| format!("iperf3 never connected: {last_error}"))?;
    json["end"]["sum_received"]["bytes"]
        .as_u64()
        .with_context(|| format!("no end.sum_received.bytes in {json}"))
}

/// The gateway the router's kernel uses for `dst` now (`ip route get`), None if it has no
/// route (or only a direct one).
pub fn kernel_gateway(lab: &Lab, router: &str, dst: IpAddr) -> Result<Option<IpAddr>> {
    let out = netns::exec(&lab.ns(router), &["ip", "route", "get", &dst.to_string()])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    Ok(words
        .find(|w| *w == "via")
        .and_then(|_| words.next()?.parse().ok()))
}

/// Waits until the router's kernel sends `dst` through `gateway`; returns how long it took
/// from `since` (each check is an `ip route get`, a few milliseconds).
pub fn wait_kernel_gateway(
    lab: &Lab,
    router: &str,
    dst: IpAddr,
    gateway: IpAddr,
    since: Instant,
    within: Duration,
) -> Result<Duration> {
    loop {
        if kernel_gateway(lab, router, dst)? == Some(gateway) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > within {
            let now = kernel_gateway(lab, router, dst)?;
            bail!(
                "{router}'s kernel still routes {dst} via {now:?}, not {gateway}, after {within:?}"
            );
        }
    }
}

/// Waits until every BFD session of the router (both families, every link) is Up with a
/// detection time of at most `detect` (past the 1 s slow start), as its API lists them.
/// Only a session that has been Up fails its next hop when it goes down (RFC 5882 3.2):
/// a fault injected before then is not detected, by design.
pub fn wait_bfd_all_up(lab: &Lab, router: &str, detect: Duration, within: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let listed: serde_json::Value =
            serde_json::from_str(&lab.x0ctl(router, &["--json", "bfd", "list"])?)?;
        let sessions = listed["sessions"].as_array().cloned().unwrap_or_default();
        let fast = |s: &serde_json::Value| {
            s["state"] == "Up"
                && s["detection_time_us"]
                    .as_u64()
                    .is_some_and(|us| us <= detect.as_micros() as u64)
        };
        let waiting: Vec<String> = sessions
            .iter()
            .filter(|s| !fast(s))
            .map(|s| {
                format!(
                    "{} {} detect {}us",
                    s["peer"], s["state"], s["detection_time_us"]
                )
            })
            .collect();
        if !sessions.is_empty() && waiting.is_empty() {
            return Ok(());
        }
        if start.elapsed() > within {
            bail!(
                "{router}: BFD sessions not Up within {detect:?} after {within:?}: {waiting:?} of {}",
                sessions.len()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of `ip [-6] route show proto PROTO` and `ip nexthop show proto PROTO` in the router.
pub fn kernel_routes_of(
    lab: &Lab,
    router: &str,
    protocol: u8,
) -> Result<(Vec<String>, Vec<String>)> {
    let ns = lab.ns(router);
    let p = protocol.to_string();
    let mut routes = Vec::new();
    for family in ["-4", "-6"] {
        let out = netns::exec_ok(&ns, &["ip", family, "route", "show", "proto", &p])?;
        routes.extend(out.lines().map(str::to_string));
    }
    let out = netns::exec_ok(&ns, &["ip", "nexthop", "show", "protocol", &p])?;
    Ok((routes, out.lines().map(str::to_string).collect()))
}

/// Sends one UDP datagram with TTL 1 to `to` from each of `sources` (addresses of `from`),
/// all at once, and returns the routers that answered each with an ICMP time exceeded
/// (read from the sockets' error queues, IP_RECVERR), in the sources' order.
pub fn time_exceeded_for(
    lab: &Lab,
    from: &str,
    sources: &[IpAddr],
    to: IpAddr,
) -> Result<Vec<Option<IpAddr>>> {
    const SCRIPT: &str = r#"
import socket, struct, sys, time
IP_RECVERR, SO_EE_ORIGIN_ICMP = 11, 2
dst, socks = sys.argv[1], []
for src in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    socks.append(s)
for s in socks:
    s.sendto(b"x0", (dst, 33434))
time.sleep(1.0)
for s in socks:
    try:
        _, anc, _, _ = s.recvmsg(64, 512, socket.MSG_ERRQUEUE)
    except BlockingIOError:
        print("-")
        continue
    err = anc[0][2]
    origin, kind = err[4], err[5]
    offender = socket.inet_ntoa(err[20:24])
    print(offender if origin == SO_EE_ORIGIN_ICMP and kind == 11 else "-")
"#;
    let mut args = vec![
        "python3".to_string(),
        "-c".into(),
        SCRIPT.into(),
        to.to_string(),
    ];
    args.extend(sources.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = netns::exec_ok(&lab.ns(from), &args)?;
    Ok(out.lines().map(|l| l.parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceroute_output_becomes_hops() {
        let out = "traceroute to 198.18.2.2 (198.18.2.2), 8 hops max, 60 byte packets\n \
                   1  198.18.1.1  0.048 ms\n 2  *\n 3  198.18.24.4  0.024 ms\n";
        let hops = parse_traceroute(out);
        assert_eq!(
            hops,
            vec![
                Some("198.18.1.1".parse().unwrap()),
                None,
                Some("198.18.24.4".parse().unwrap())
            ]
        );
    }

    #[test]
    fn tracepath_output_gives_the_path_mtu() {
        let out = " 1?: [LOCALHOST]    pmtu 1500\n 2:  198.18.12.2  0.1ms pmtu 1400\n     Resume: pmtu 1400 hops 4 back 4 \n";
        assert_eq!(parse_pmtu(out), Some(1400));
        assert_eq!(parse_pmtu("no figures"), None);
    }
}
