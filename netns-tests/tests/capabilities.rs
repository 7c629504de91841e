//! The capabilities x0-dataplane needs on this kernel, found the way systemd would run it:
//! as an unprivileged user (nobody) holding only a given set (setpriv). With CAP_BPF,
//! CAP_PERFMON, CAP_NET_ADMIN and CAP_NET_RAW (what deploy/systemd/x0-dataplane.service
//! grants) it loads and attaches its programs, runs BFD over AF_XDP, writes the kernel's
//! routes and forwards; without any one of them something it needs fails. The test prints
//! what failed for each, for docs/DEPLOY.md.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use x0_lab::{Lab, traffic};

const NOBODY: u32 = 65534;
const NEEDED: [&str; 4] = ["bpf", "perfmon", "net_admin", "net_raw"];

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// Starts r1's dataplane as nobody with `caps`; what happened, in words ("ok" if it
/// forwarded with BFD over AF_XDP).
fn run_with(lab: &Lab, caps: &[&str]) -> String {
    let _ = lab.stop_dataplane("r1");
    lab.detach_dataplane("r1").unwrap();
    let home = lab.dir.join(format!("nobody-{}", caps.join("-")));
    std::fs::create_dir_all(home.join("state")).unwrap();
    for p in [home.clone(), home.join("state"), lab.pin_root("r1")] {
        std::fs::create_dir_all(&p).unwrap();
        chown_nobody(&p);
    }
    let mut config = lab.dataplane_config("r1").unwrap();
    let mut api = lab.api_config("r1").unwrap();
    let socket = home.join("api.sock");
    (api.unix_socket, api.listen, api.tls) = (Some(socket.clone()), None, None);
    api.state_dir = home.join("state");
    config.api = Some(api);
    let set = caps
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let inh = format!(
        "--inh-caps=-all{}",
        if set.is_empty() {
            String::new()
        } else {
            format!(",{set}")
        }
    );
    let ambient = inh.replace("--inh-caps", "--ambient-caps");
    let bounding = inh.replace("--inh-caps", "--bounding-set");
    let wrapper = [
        "/usr/bin/setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &inh,
        &ambient,
        &bounding,
        "--",
    ];
    let ready = home.join("ready");
    lab.start_dataplane_wrapped("r1", &config, &wrapper, &ready)
        .unwrap();
    let start = Instant::now();
    while !ready.exists() {
        if !lab.dataplane_running("r1") || start.elapsed() > Duration::from_secs(15) {
            let log = lab.dataplane_log("r1");
            let last = log
                .lines()
                .rev()
                .find(|l| l.contains("x0-dataplane: error:"))
                .unwrap_or("(no error logged)");
            // The verifier's log follows on later lines; the first line says what failed.
            let first: String = last.chars().take(200).collect();
            return format!("did not start: {first}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let addr = format!("unix://{}", socket.display());
    let bfd_up = wait_bfd(lab, &addr);
    if let Err(e) = bfd_up {
        return format!("started, but BFD: {e}");
    }
    let h2 = common::addr(lab, "h2", false);
    match traffic::wait_reply(lab, "h1", h2, Duration::from_secs(3)) {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("started, BFD up, but h1 does not reach h2: {e}"),
    }
}

/// Both of r1's sessions Up over AF_XDP within 10 s.
fn wait_bfd(lab: &Lab, addr: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let text = lab
            .x0ctl_at("r1", addr, &["--json", "bfd", "list"])
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let sessions = v["sessions"].as_array().cloned().unwrap_or_default();
        let up = sessions.iter().filter(|s| s["state"] == "Up").count();
        let (af_xdp, udp) = (&v["counters"]["tx_af_xdp"], &v["counters"]["tx_udp"]);
        if up == sessions.len() && up > 0 {
            // A session that could not bind AF_XDP sends over a UDP socket instead (a few
            // packets may go that way anyway while a neighbour's MAC is unknown).
            return match af_xdp.as_u64() {
                Some(n) if n > 0 => Ok(()),
                _ => Err(format!(
                    "sent over UDP, not AF_XDP: {af_xdp} AF_XDP, {udp} UDP"
                )),
            };
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("{up} of {} sessions Up", sessions.len()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_dataplane_needs_exactly_bpf_perfmon_net_admin_and_net_raw() {
    let lab = common::lab("diamond.toml", |_| {});
    let all = run_with(&lab, &NEEDED);
    println!("{:<40} {all}", NEEDED.join(" "));
    assert_eq!(all, "ok", "with {NEEDED:?}:\n{}", lab.dataplane_log("r1"));
    for missing in NEEDED {
        let fewer: Vec<&str> = NEEDED.iter().copied().filter(|c| *c != missing).collect();
        let got = run_with(&lab, &fewer);
        println!("{:<40} {got}", format!("without {missing}"));
        assert_ne!(
            got, "ok",
            "without {missing} it still does everything: not needed"
        );
    }
    // Root again, so that the lab tears down as it was built.
    let _ = lab.stop_dataplane("r1");
    lab.detach_dataplane("r1").unwrap();
}
