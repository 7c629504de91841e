//! A running lab: namespaces, veth links, addresses, and an `x0-dataplane` per router.
//! Everything it creates is listed in its directory, so `Lab::down` (or `x0-lab down`)
//! removes it even after a crash; dropping a `Lab` tears it down too.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use x0_dataplane::host::Action;
use x0_dataplane::{
    api::config::{AllowConfig, ApiConfig, TlsConfig},
    config::{BfdOverride, Config, InterfaceConfig},
    counters::{CounterMaps, Counters},
};
use x0_identity::PqMode;

use crate::{
    netns::{exec_ok, ip, run},
    pki::{OPERATOR, Pki, TRUST_DOMAIN},
    topology::Topology,
};

/// Where each router's dataplane listens for mutual-TLS API clients (its own loopback).
pub const API_ADDR: &str = "127.0.0.1:7443";
/// Where a router's API listens: every address of the router (dual stack), so that an
/// orchestrator anywhere in the mesh reaches it (mutual TLS guards it); API_ADDR is one.
pub const API_LISTEN: &str = "[::]:7443";
/// The API's port, for addresses across the mesh.
pub const API_PORT: u16 = 7443;
/// Where each router's dataplane and brain serve their metrics, in its namespace.
pub const DATAPLANE_METRICS: &str = "127.0.0.1:9464";
pub const BRAIN_METRICS: &str = "127.0.0.1:9465";

/// Where labs keep their state (config files, logs, pids, the bpffs with the pins).
pub const LAB_ROOT: &str = "/run/x0lab";

pub struct Lab {
    pub name: String,
    pub topo: Topology,
    pub dir: PathBuf,
    pub(crate) dataplane_bin: PathBuf,
    /// Tear down on drop (false once `keep()` was called, as `x0-lab up` does).
    teardown_on_drop: bool,
}

/// The x0-dataplane binary next to the running executable (cargo puts test binaries one
/// level deeper, in deps/), or $X0_DATAPLANE_BIN.
pub fn default_dataplane_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("X0_DATAPLANE_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("x0-dataplane");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "x0-dataplane binary not found next to {} (build it, or set X0_DATAPLANE_BIN)",
        exe.display()
    )
}

impl Lab {
    /// Builds the topology under the lab name `name` and starts every router's dataplane.
    pub fn up(name: &str, topo: Topology, dataplane_bin: PathBuf) -> Result<Lab> {
        if !nix::unistd::Uid::effective().is_root() {
            bail!("the namespace lab needs root (network namespaces, veth, XDP)");
        }
        let dir = Path::new(LAB_ROOT).join(name);
        if dir.exists() {
            Lab::down_by_name(name)?;
        }
        fs::create_dir_all(dir.join("bpf"))?;
        fs::write(dir.join("topology.toml"), toml::to_string(&topo)?)?;
        fs::write(
            dir.join("dataplane-bin"),
            dataplane_bin.as_os_str().as_encoded_bytes(),
        )?;
        let lab = Lab {
            name: name.into(),
            topo,
            dir,
            dataplane_bin,
            teardown_on_drop: true,
        };
        // From here on, a failure tears down what exists (Drop).
        run(Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(lab.dir.join("bpf")))?;
        lab.build()?;
        let pki = Pki::create(&lab.dir.join("pki"))?;
        for r in &lab.topo.routers {
            pki.issue_router(&r.name, Duration::from_secs(86_400))?;
        }
        for r in lab.topo.routers.clone() {
            lab.start_dataplane(&r.name)?;
        }
        // They all start at once: on two cores 40 of them take a while (aya parses the
        // kernel's BTF for each).
        let within = Duration::from_secs(15 + lab.topo.routers.len() as u64);
        for r in &lab.topo.routers {
            lab.wait_ready(&r.name, within)?;
        }
        Ok(lab)
    }

    /// A lab that `up` left running (for the CLI's later commands); not torn down on drop.
    pub fn open(name: &str) -> Result<Lab> {
        let dir = Path::new(LAB_ROOT).join(name);
        let text = fs::read_to_string(dir.join("topology.toml"))
            .with_context(|| format!("no lab named {name} is running (x0-lab up first)"))?;
        let topo: Topology = toml::from_str(&text)?;
        let dataplane_bin = fs::read_to_string(dir.join("dataplane-bin"))?.into();
        Ok(Lab {
            name: name.into(),
            topo,
            dir,
            dataplane_bin,
            teardown_on_drop: false,
        })
    }

    /// Leaves everything running when this value is dropped.
    pub fn keep(mut self) {
        self.teardown_on_drop = false;
    }

    /// The network namespace of a node.
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    fn record_ns(&self, ns: &str) -> Result<()> {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("namespaces"))?;
        writeln!(f, "{ns}")?;
        Ok(())
    }

    fn build(&self) -> Result<()> {
        let nodes: Vec<String> = self
            .topo
            .hosts
            .iter()
            .map(|h| h.name.clone())
            .chain(self.topo.routers.iter().map(|r| r.name.clone()))
            .collect();
        for node in &nodes {
            let ns = self.ns(node);
            self.record_ns(&ns)?;
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // No duplicate address detection: addresses, link-local ones included, are
            // usable at once, so neighbour discovery works from the first packet.
            // And IPv6 addresses survive a link going down (the kernel flushes them by
            // default), as a router's configured addresses would.
            for key in ["all", "default"] {
                for setting in ["accept_dad=0", "keep_addr_on_down=1"] {
                    exec_ok(
                        &ns,
                        &["sysctl", "-qw", &format!("net.ipv6.conf.{key}.{setting}")],
                    )?;
                }
            }
        }
        for r in &self.topo.routers {
            let ns = self.ns(&r.name);
            let fwd = if r.kernel_forwarding { "1" } else { "0" };
            exec_ok(
                &ns,
                &["sysctl", "-qw", &format!("net.ipv4.ip_forward={fwd}")],
            )?;
            exec_ok(
                &ns,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.all.forwarding={fwd}"),
                ],
            )?;
        }
        for l in &self.topo.links {
            let (na, nb) = (self.ns(&l.a.node), self.ns(&l.b.node));
            ip(&[
                "-n", &na, "link", "add", &l.a.iface, "type", "veth", "peer", "name", &l.b.iface,
                "netns", &nb,
            ])?;
            for (ns, end) in [(&na, &l.a), (&nb, &l.b)] {
                for a in &end.addrs {
                    let a = a.to_string();
                    let mut args = vec!["-n", ns, "addr", "add", &a, "dev", &end.iface];
                    if end
                        .addrs
                        .iter()
                        .any(|x| x.to_string() == a && x.addr().is_ipv6())
                    {
                        args.push("nodad");
                    }
                    ip(&args)?;
                }
                // veth hands locally sent packets over with the checksum still to be filled in
                // (CHECKSUM_PARTIAL); once XDP redirects such a frame nobody fills it in and
                // the receiver drops it. Real NICs compute it in hardware; here the sender must.
                exec_ok(ns, &["ethtool", "-K", &end.iface, "tx", "off"])?;
                ip(&["-n", ns, "link", "set", &end.iface, "up"])?;
            }
        }
        for h in &self.topo.hosts {
            let ns = self.ns(&h.name);
            for end in self.topo.ifaces_of(&h.name) {
                // Frames that XDP redirects into a veth are only taken by a peer with NAPI,
                // which GRO turns on (or an XDP program; hosts have none).
                exec_ok(&ns, &["ethtool", "-K", &end.iface, "gro", "on"])?;
            }
            for gw in &h.gateway {
                let family = if gw.is_ipv6() { "-6" } else { "-4" };
                ip(&[
                    "-n",
                    &ns,
                    family,
                    "route",
                    "add",
                    "default",
                    "via",
                    &gw.to_string(),
                ])?;
            }
        }
        for r in &self.topo.routers {
            let ns = self.ns(&r.name);
            for route in &r.kernel_routes {
                let mut args = vec!["-n", ns.as_str(), "route", "add"];
                args.extend(route.split_whitespace());
                ip(&args)?;
            }
        }
        Ok(())
    }

    pub fn pin_root(&self, router: &str) -> PathBuf {
        self.dir.join("bpf").join(router)
    }

    /// The lab's file `<stem>.<ext>`: a daemon's pid, log or config.
    pub fn file(&self, router: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{router}.{ext}"))
    }

    /// The dataplane config the lab gives a router.
    pub fn dataplane_config(&self, router: &str) -> Result<Config> {
        let r = self
            .topo
            .router(router)
            .with_context(|| format!("no router {router}"))?;
        Ok(Config {
            pin_root: self.pin_root(router),
            fib_fallback: r.fib_fallback,
            xdp_mode: r.xdp_mode,
            ipv4_direct_table: r.ipv4_direct_table,
            maps: r.maps.clone(),
            interfaces: self
                .topo
                .ifaces_of(router)
                .iter()
                .map(|e| InterfaceConfig {
                    name: e.iface.clone(),
                    bfd: (r.bfd.is_some()
                        && self
                            .topo
                            .peer_of(router, &e.iface)
                            .is_some_and(|p| self.topo.is_router(&p.node)))
                    .then(BfdOverride::default),
                    policy: r.zero_trust.contains(&e.iface).then(|| "deny".to_string()),
                })
                .collect(),
            routes: r.routes.clone(),
            failover: r.failover.clone(),
            bfd: r.bfd.clone().unwrap_or_default(),
            bfd_peers: r.bfd_peers.clone(),
            identities: r.identities.clone(),
            rules: r.rules.clone(),
            api: Some(self.api_config(router)?),
            // Every router serves its metrics in its own namespace, on loopback.
            metrics: Some(x0_dataplane::metrics::MetricsConfig {
                listen: DATAPLANE_METRICS.parse().expect("constant"),
                max_nexthops: 64,
            }),
            kernel_fib: Default::default(),
            // A router the topology runs without kernel forwarding keeps it off.
            host: r.host.clone().unwrap_or(x0_dataplane::host::HostConfig {
                forwarding: if r.kernel_forwarding {
                    Action::Fix
                } else {
                    Action::Leave
                },
                ..Default::default()
            }),
        })
    }

    /// The lab's trust domain.
    pub fn pki(&self) -> Pki {
        Pki::at(&self.dir.join("pki"))
    }

    /// The router's Unix API socket (in the shared mount namespace: usable from anywhere).
    pub fn api_socket(&self, router: &str) -> PathBuf {
        self.file(router, "sock")
    }

    /// The API config a router gets: both listeners (TCP on all its addresses), its SVID
    /// files, the operator allowed everything and brains routes; or the override a test
    /// wrote with `set_api_config`.
    pub fn api_config(&self, router: &str) -> Result<ApiConfig> {
        let custom = self.file(router, "api.toml");
        if custom.exists() {
            return Ok(toml::from_str(&fs::read_to_string(custom)?)?);
        }
        let files = self.pki().files(router);
        Ok(ApiConfig {
            unix_socket: Some(self.api_socket(router)),
            unix_mode: "0600".into(),
            listen: Some(API_LISTEN.parse().expect("valid")),
            pq: PqMode::Required,
            tls: Some(TlsConfig {
                cert: Some(files.cert),
                key: Some(files.key),
                bundle: Some(files.bundle),
                crls: files.crls,
                workload_api: None,
                reload_ms: 100,
            }),
            allow: vec![
                AllowConfig {
                    spiffe_id: format!("spiffe://{TRUST_DOMAIN}/orchestrator/*"),
                    rpcs: vec!["*".into()],
                },
                AllowConfig {
                    spiffe_id: format!("spiffe://{TRUST_DOMAIN}/brain/*"),
                    rpcs: vec!["routes".into(), "read".into()],
                },
            ],
            max_message_bytes: 16 << 20,
            requests_per_sec: 1000,
            request_burst: 2000,
            state_dir: self.dir.join("state").join(router),
        })
    }

    /// Replaces the API config of the router's next start.
    pub fn set_api_config(&self, router: &str, api: &ApiConfig) -> Result<()> {
        fs::write(self.file(router, "api.toml"), toml::to_string(api)?)?;
        Ok(())
    }

    /// How x0ctl (the library) reaches the router over mutual TLS as SVID `svid` (use it
    /// inside the router's namespace: the listener is on its loopback).
    pub fn api_target(&self, svid: &str) -> x0ctl::client::Target {
        x0ctl::client::Target {
            addr: format!("https://{API_ADDR}"),
            svid: Some(self.pki().files(svid)),
            pq: PqMode::Required,
            server_id: None,
        }
    }

    /// Runs `x0ctl <args>` in the router's namespace against its TLS listener, as the
    /// lab's operator. Returns stdout; a failure carries x0ctl's message.
    pub fn x0ctl(&self, router: &str, args: &[&str]) -> Result<String> {
        self.x0ctl_at(router, &format!("https://{API_ADDR}"), args)
    }

    /// `x0ctl` in the router's namespace against another server (a brain: `https://127.0.0.1:7444`).
    pub fn x0ctl_at(&self, router: &str, addr: &str, args: &[&str]) -> Result<String> {
        self.x0ctl_as(router, OPERATOR, addr, args)
    }

    /// `x0ctl` in `node`'s namespace as the lab SVID `svid` (`brain-r1`: as r1's brain).
    pub fn x0ctl_as(&self, node: &str, svid: &str, addr: &str, args: &[&str]) -> Result<String> {
        let bin = self
            .dataplane_bin
            .parent()
            .map(|d| d.join("x0ctl"))
            .filter(|p| p.is_file())
            .context("x0ctl binary not found next to x0-dataplane (cargo build)")?;
        let files = self.pki().files(svid);
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .arg(bin)
            .arg("--addr")
            .arg(addr)
            .args(crate::pki::tls_args(&files))
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "x0ctl {} on {node}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts (or restarts) the router's x0-dataplane with its generated config.
    pub fn start_dataplane(&self, router: &str) -> Result<()> {
        self.start_dataplane_with(router, &[])
    }

    /// Writes a new config for the router's running dataplane and sends it SIGHUP, which
    /// applies its policy without a restart.
    pub fn reload_dataplane(&self, router: &str, config: &Config) -> Result<()> {
        fs::write(self.file(router, "toml"), toml::to_string(config)?)?;
        let pid = self
            .pid(router)
            .with_context(|| format!("{router} is not running"))?;
        kill(pid, Signal::SIGHUP).with_context(|| format!("SIGHUP to {router}"))?;
        Ok(())
    }

    /// `x0-dataplane detach` for the router: programs off its interfaces, pins removed.
    pub fn detach_dataplane(&self, router: &str) -> Result<()> {
        let bin = self.dataplane_bin.to_string_lossy().into_owned();
        let pins = self.pin_root(router).to_string_lossy().into_owned();
        exec_ok(&self.ns(router), &[&bin, "detach", "--pin-root", &pins]).map(|_| ())
    }

    /// Like `start_dataplane`, with extra arguments for `x0-dataplane run`.
    pub fn start_dataplane_with(&self, router: &str, extra: &[&str]) -> Result<()> {
        self.start_dataplane_env(router, extra, &[])
    }

    /// Starts the router's dataplane with `config` (written next to the lab's own) through
    /// `wrapper`, a command that runs the rest of its arguments (setpriv with fewer
    /// privileges); it creates `ready` once forwarding.
    pub fn start_dataplane_wrapped(
        &self,
        router: &str,
        config: &Config,
        wrapper: &[&str],
        ready: &Path,
    ) -> Result<()> {
        let config_path = self.file(&format!("{router}-wrapped"), "toml");
        fs::write(&config_path, toml::to_string(config)?)?;
        let mut args: Vec<std::ffi::OsString> = wrapper[1..].iter().map(Into::into).collect();
        args.push(self.dataplane_bin.clone().into());
        for a in ["run", "--config"] {
            args.push(a.into());
        }
        args.push(config_path.into());
        args.push("--ready-file".into());
        args.push(ready.into());
        self.spawn_daemon(router, router, Path::new(wrapper[0]), &args)
    }

    /// Like `start_dataplane_with`, with extra environment (a supervisor's NOTIFY_SOCKET).
    pub fn start_dataplane_env(
        &self,
        router: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<()> {
        let config = self.dataplane_config(router)?;
        let config_path = self.file(router, "toml");
        fs::write(&config_path, toml::to_string(&config)?)?;
        let _ = fs::remove_file(self.file(router, "ready"));
        let mut args: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--config".into(),
            config_path.into(),
            "--ready-file".into(),
            self.file(router, "ready").into(),
        ];
        args.extend(extra.iter().map(Into::into));
        self.spawn_daemon_env(router, router, &self.dataplane_bin, &args, envs)
    }

    /// Starts `bin args` in the router's namespace as a daemon of the lab: output to
    /// `<stem>.log`, pid in `<stem>.pid` (which `down` stops), reaped when it exits.
    pub(crate) fn spawn_daemon(
        &self,
        router: &str,
        stem: &str,
        bin: &Path,
        args: &[std::ffi::OsString],
    ) -> Result<()> {
        self.spawn_daemon_env(router, stem, bin, args, &[])
    }

    fn spawn_daemon_env(
        &self,
        router: &str,
        stem: &str,
        bin: &Path,
        args: &[std::ffi::OsString],
        envs: &[(&str, &str)],
    ) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file(stem, "log"))?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new("ip")
                .args(["netns", "exec", &self.ns(router)])
                .arg(bin)
                .args(args)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .envs(envs.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0) // outlives `x0-lab up`, and a Ctrl-C meant for it
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?
        };
        fs::write(self.file(stem, "pid"), child.id().to_string())?;
        // Reap it in the background so that it never lingers as a zombie.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(())
    }

    pub fn wait_ready(&self, router: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while !self.file(router, "ready").exists() {
            if start.elapsed() > timeout || !self.dataplane_running(router) {
                bail!(
                    "x0-dataplane on {router} did not become ready; its log:\n{}",
                    fs::read_to_string(self.file(router, "log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The pid of the router's dataplane, from its pid file.
    pub fn pid(&self, router: &str) -> Option<Pid> {
        fs::read_to_string(self.file(router, "pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
            .map(Pid::from_raw)
    }

    pub fn dataplane_running(&self, router: &str) -> bool {
        self.pid(router)
            .is_some_and(|p| kill(p, None).is_ok() && !is_zombie(p))
    }

    /// Sends SIGTERM and waits for the daemon to exit.
    pub fn stop_dataplane(&self, router: &str) -> Result<()> {
        stop_pid_file(&self.file(router, "pid"), Signal::SIGTERM)
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill_dataplane(&self, router: &str) -> Result<()> {
        stop_pid_file(&self.file(router, "pid"), Signal::SIGKILL)
    }

    pub fn dataplane_log(&self, router: &str) -> String {
        fs::read_to_string(self.file(router, "log")).unwrap_or_default()
    }

    /// What an engineer would look at when traffic does not cross a router: its kernel's
    /// routes and neighbours (both families), its fast path's routes, and its log's tail.
    pub fn router_state(&self, router: &str) -> String {
        let ns = self.ns(router);
        let mut out = format!("== {router}\n");
        for cmd in [
            &["ip", "-4", "route"][..],
            &["ip", "-6", "route"],
            &["ip", "neigh"],
        ] {
            let text = exec_ok(&ns, cmd).unwrap_or_else(|e| e.to_string());
            out += &format!("$ {}\n{text}", cmd.join(" "));
        }
        let routes = self.x0ctl(router, &["route", "list"]);
        out += &format!(
            "$ x0ctl route list\n{}\n",
            routes.unwrap_or_else(|e| e.to_string())
        );
        let log = self.dataplane_log(router);
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        out += "$ tail of the log\n";
        for line in tail.into_iter().rev() {
            out += line;
            out += "\n";
        }
        out
    }

    /// The router's counters, read from its pinned maps.
    pub fn counters(&self, router: &str) -> Result<Counters> {
        CounterMaps::from_pins(&self.pin_root(router))?.read()
    }

    /// ifindex of an interface inside a node.
    pub fn ifindex(&self, node: &str, iface: &str) -> Result<u32> {
        let out = exec_ok(
            &self.ns(node),
            &["cat", &format!("/sys/class/net/{iface}/ifindex")],
        )?;
        Ok(out.trim().parse()?)
    }

    /// Removes everything the lab called `name` created.
    pub fn down_by_name(name: &str) -> Result<()> {
        let dir = Path::new(LAB_ROOT).join(name);
        // Daemons' pid files: in the lab directory, and one level down (bfdd's own dir).
        let mut pid_files = Vec::new();
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.path().is_dir() && e.file_name() != "bpf" {
                pid_files.extend(
                    fs::read_dir(e.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|x| x.path()),
                );
            } else {
                pid_files.push(e.path());
            }
        }
        for p in pid_files
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "pid"))
        {
            let _ = stop_pid_file(p, Signal::SIGTERM);
        }
        if let Ok(list) = fs::read_to_string(dir.join("namespaces")) {
            for ns in list.lines().filter(|l| !l.is_empty()) {
                let _ = ip(&["netns", "del", ns]);
            }
        }
        let bpf = dir.join("bpf");
        if bpf.exists() {
            let _ = run(Command::new("umount").arg(&bpf));
        }
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.teardown_on_drop
            && let Err(e) = Lab::down_by_name(&self.name)
        {
            eprintln!("x0-lab: teardown of {}: {e:#}", self.name);
        }
    }
}

fn is_zombie(pid: Pid) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

pub(crate) fn stop_pid_file(path: &Path, signal: Signal) -> Result<()> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(());
    };
    let pid = Pid::from_raw(text.trim().parse().context("pid file")?);
    let _ = fs::remove_file(path);
    if kill(pid, signal).is_err() {
        return Ok(());
    }
    let start = Instant::now();
    while kill(pid, None).is_ok() && !is_zombie(pid) {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = kill(pid, Signal::SIGKILL);
            bail!("pid {pid} ignored {signal}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
