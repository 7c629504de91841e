//! BIRD 2's BFD protocol (Debian package bird2) as a second independent BFD peer beside
//! FRR's bfdd: one session to a neighbour by address, its timers changed live through
//! `birdc configure`.

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};

use crate::{Lab, faults, netns, report::log_time};

pub struct BirdBfd {
    dir: PathBuf,
    ns: String,
    iface: String,
    peer: String,
}

impl BirdBfd {
    /// Starts BIRD in `node` with a BFD session to `peer` over `iface` at `interval_ms` x 3.
    /// The lab stops it on teardown (its pid file is one of the lab's daemon files).
    pub fn start(
        lab: &Lab,
        node: &str,
        iface: &str,
        peer: &str,
        interval_ms: u32,
    ) -> Result<BirdBfd> {
        if crate::routing::which("bird").is_none() {
            bail!("bird is missing: install the Debian package bird2 (scripts/setup.sh does)");
        }
        let dir = crate::routing::daemon_dir(lab, "bird", node)?;
        let bird = BirdBfd {
            dir,
            ns: lab.ns(node),
            iface: iface.into(),
            peer: peer.into(),
        };
        bird.write_config(interval_ms)?;
        let d = bird.dir.to_string_lossy().into_owned();
        netns::exec_ok(
            &bird.ns,
            &[
                "bird",
                "-c",
                &format!("{d}/bird.conf"),
                "-s",
                &format!("{d}/bird.ctl"),
                "-P",
                &format!("{d}/bird.pid"),
            ],
        )
        .context("starting bird")?;
        Ok(bird)
    }

    fn write_config(&self, interval_ms: u32) -> Result<()> {
        let conf = format!(
            "log \"{d}/bird.log\" all;\n\
             router id 10.255.255.1;\n\
             protocol device {{ }}\n\
             protocol bfd {{\n  \
               interface \"{iface}\" {{ min rx interval {interval_ms} ms; \
               min tx interval {interval_ms} ms; multiplier 3; }};\n  \
               neighbor {peer} dev \"{iface}\";\n}}\n",
            d = self.dir.display(),
            iface = self.iface,
            peer = self.peer,
        );
        fs::write(self.dir.join("bird.conf"), conf)?;
        Ok(())
    }

    fn birdc(&self, args: &[&str]) -> Result<String> {
        let ctl = self.dir.join("bird.ctl");
        let mut cmd = vec!["birdc", "-s", ctl.to_str().context("path")?];
        cmd.extend_from_slice(args);
        netns::exec_ok(&self.ns, &cmd)
    }

    /// Changes the session's timers live (BIRD renegotiates with a Poll sequence).
    pub fn set_interval(&self, interval_ms: u32) -> Result<()> {
        self.write_config(interval_ms)?;
        let out = self.birdc(&["configure"])?;
        if !out.contains("Reconfigured") {
            bail!("birdc configure: {out}");
        }
        Ok(())
    }

    /// `show bfd sessions` as birdc prints it.
    pub fn sessions(&self) -> Result<String> {
        self.birdc(&["show", "bfd", "sessions"])
    }

    /// BIRD says the session to its peer is Up.
    pub fn is_up(&self) -> bool {
        self.sessions().is_ok_and(|s| {
            s.lines()
                .any(|l| l.contains(self.peer.as_str()) && l.contains("Up"))
        })
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }
}

/// Cuts the link under `router`'s session to `peer` on `iface` (everything `router`
/// receives there is dropped) and times how long until its log says the session is Down;
/// then restores the link and waits until the session is Up again.
pub fn kill_and_detect(lab: &Lab, router: &str, iface: &str, peer: &str) -> Result<Duration> {
    let who = format!("peer={peer}");
    let cut = faults::drop_ingress(lab, router, iface)?;
    let down = wait_log(lab, router, &[&who, "to=Down"], cut, Duration::from_secs(3));
    faults::forward_again(lab, router, iface)?;
    let down = down.context("the session never went down")?;
    let back = SystemTime::now();
    wait_log(lab, router, &[&who, "to=Up"], back, Duration::from_secs(10))
        .context("the session did not come back up")?;
    Ok(down.duration_since(cut).unwrap_or_default())
}

/// When `router`'s log first has a line with all of `needles` at or after `after`.
pub fn wait_log(
    lab: &Lab,
    router: &str,
    needles: &[&str],
    after: SystemTime,
    timeout: Duration,
) -> Option<SystemTime> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(t) = log_time(&lab.dataplane_log(router), needles, after) {
            return Some(t);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
