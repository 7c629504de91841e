//! FRR's bfdd as a standard BFD peer inside a lab node (Debian package `frr`). It runs on
//! its own, without zebra, with peers given by address.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::{Lab, netns};

pub struct Bfdd {
    dir: PathBuf,
    ns: String,
}

const BFDD: &str = "/usr/lib/frr/bfdd";

impl Bfdd {
    /// Starts bfdd in `node` with sessions to each `(peer, local)` pair at `interval_ms` x 3.
    /// The lab stops it on teardown (its pid file is one of the lab's).
    pub fn start(lab: &Lab, node: &str, peers: &[(&str, &str)], interval_ms: u32) -> Result<Bfdd> {
        if !std::path::Path::new(BFDD).exists() {
            bail!("{BFDD} is missing: install the Debian package frr (scripts/setup.sh does)");
        }
        let dir = lab.dir.join(format!("bfdd-{node}"));
        fs::create_dir_all(&dir)?;
        let mut conf = String::from("bfd\n");
        for (peer, local) in peers {
            conf.push_str(&format!(
                " peer {peer} local-address {local}\n  receive-interval {interval_ms}\n  transmit-interval {interval_ms}\n  detect-multiplier 3\n !\n"
            ));
        }
        conf.push_str("!\n");
        fs::write(dir.join("frr.conf"), conf)?;
        netns::run(Command::new("chown").args(["-R", "frr:frr"]).arg(&dir))?;
        let d = dir.to_string_lossy().into_owned();
        let ns = lab.ns(node);
        netns::exec_ok(
            &ns,
            &[
                BFDD,
                "-d",
                "-f",
                &format!("{d}/frr.conf"),
                "-i",
                &format!("{d}/bfdd.pid"),
                "--vty_socket",
                &d,
                "-z",
                &format!("{d}/zserv.api"),
                "--log",
                &format!("file:{d}/bfdd.log"),
            ],
        )
        .context("starting bfdd")?;
        Ok(Bfdd { dir, ns })
    }

    /// `show bfd peers brief` as bfdd prints it.
    pub fn peers(&self) -> Result<String> {
        netns::exec_ok(
            &self.ns,
            &[
                "vtysh",
                "--vty_socket",
                &self.dir.to_string_lossy(),
                "-c",
                "show bfd peers brief",
            ],
        )
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("bfdd.log")).unwrap_or_default()
    }
}
