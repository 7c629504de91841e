//! The Debian package as an operator installs it on this machine: `scripts/package.sh`
//! builds it, `dpkg -i` installs it, systemd accepts its units (and their exposure is at
//! most 5.0), the installed binaries accept the installed example configs, and
//! `dpkg --purge` leaves nothing behind: files, user, state, pins.

use std::{path::Path, process::Command};

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let (success, text) = run(cmd, args);
    assert!(success, "{cmd} {args:?} failed:\n{text}");
    text
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", "x0tta6bl4"])
        .1
        .contains("install ok installed")
}

fn user_exists() -> bool {
    run("getent", &["passwd", "x0tta6bl4"]).0 || run("getent", &["group", "x0tta6bl4"]).0
}

/// "Overall exposure level for UNIT: 2.5 OK" -> 2.5
fn exposure(unit: &str) -> f64 {
    let text = ok("systemd-analyze", &["security", "--offline=true", unit]);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level:\n{text}"));
    line.split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_package_installs_checks_and_purges_without_a_trace() {
    assert!(
        !installed(),
        "x0tta6bl4 is installed on this machine: this test would remove it"
    );
    assert!(
        !user_exists(),
        "a user or group x0tta6bl4 exists: this test would remove it"
    );
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let built = ok(&format!("{root}/scripts/package.sh"), &[]);
    let deb = built
        .lines()
        .find_map(|l| l.strip_prefix("[package] amd64: "))
        .unwrap_or_else(|| panic!("no package built:\n{built}"))
        .trim()
        .to_string();
    ok("dpkg", &["-i", &deb]);
    let files: Vec<String> = ok("dpkg", &["-L", "x0tta6bl4"])
        .lines()
        .map(String::from)
        .collect();
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", "x0tta6bl4"]);
    for f in ["/etc/x0tta6bl4/dataplane.toml", "/etc/x0tta6bl4/brain.toml"] {
        assert!(conffiles.contains(f), "{f} is not a conffile:\n{conffiles}");
    }
    assert!(user_exists(), "postinst made no user");

    let units = [
        "/lib/systemd/system/x0-dataplane.service",
        "/lib/systemd/system/x0-brain.service",
    ];
    let (verified, said) = run(
        "systemd-analyze",
        &["verify", "--man=no", units[0], units[1]],
    );
    assert!(
        verified && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
    for unit in units {
        let level = exposure(unit);
        println!("{unit}: exposure {level}");
        assert!(level <= 5.0, "{unit}: exposure {level} > 5.0");
    }
    ok(
        "/usr/bin/x0-dataplane",
        &["check", "--config", "/etc/x0tta6bl4/dataplane.toml"],
    );
    ok(
        "/usr/bin/x0-brain",
        &["check", "--config", "/etc/x0tta6bl4/brain.toml"],
    );
    ok("/usr/bin/x0ctl", &["--version"]);
    // Man pages from --help, every subcommand included.
    for (page, sub) in [
        ("x0-dataplane", "x0-dataplane check"),
        ("x0-brain", "x0-brain run"),
        ("x0ctl", "x0ctl commit confirm"),
    ] {
        let (found, text) = run("man", &["-P", "cat", page]);
        assert!(found && text.contains(sub), "man {page}:\n{text}");
    }

    // What a run leaves: the pin directory its unit makes, state in its state directory.
    ok(
        "install",
        &[
            "-d",
            "-o",
            "x0tta6bl4",
            "/sys/fs/bpf/x0tta6bl4",
            "/var/lib/x0tta6bl4/brain",
        ],
    );
    std::fs::write("/var/lib/x0tta6bl4/brain/knowledge.redb", b"state").unwrap();

    ok("dpkg", &["--purge", "x0tta6bl4"]);
    assert!(!installed());
    assert!(!user_exists(), "the user or group x0tta6bl4 is left");
    let left: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with('/') && Path::new(f).is_file())
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
    for dir in [
        "/etc/x0tta6bl4",
        "/var/lib/x0tta6bl4",
        "/sys/fs/bpf/x0tta6bl4",
        "/usr/share/x0tta6bl4",
    ] {
        assert!(!Path::new(dir).exists(), "{dir} is left");
    }
}
