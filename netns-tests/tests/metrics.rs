//! The metrics endpoints as an operator's monitoring sees them, in the six-router lab with
//! brains: a real Prometheus scrapes r1's dataplane and brain, the forwarded-packets
//! counter grows with the traffic sent through r1, promtool accepts what both serve, and
//! every query of the Grafana dashboard parses and names only metrics the daemons export.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::six::six_with_brains;
use x0_lab::{
    Lab,
    lab::{BRAIN_METRICS, DATAPLANE_METRICS},
    netns,
    prometheus::{Prometheus, scrape},
    traffic,
};

const FORWARDED: &str = r#"sum(x0_dataplane_packets_total{job="dataplane",verdict="forwarded"})"#;

#[test]
fn prometheus_scrapes_both_daemons_and_sees_forwarding_grow() {
    let lab = six_with_brains();
    let h2 = common::addr(&lab, "h2", false);
    traffic::wait_reply(&lab, "h1", h2, Duration::from_secs(30)).unwrap();
    let prom = Prometheus::start(&lab, "r1").unwrap();
    for job in ["dataplane", "brain"] {
        let up = format!(r#"up{{job="{job}"}}"#);
        prom.wait_for(&up, |v| v == 1.0, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("{e}\n{}", prom.log()));
    }
    let before = prom
        .wait_for(FORWARDED, |_| true, Duration::from_secs(10))
        .unwrap();
    let sent = 5_000;
    let r = traffic::udp_stream(&lab, "h1", "h2", h2, 9000, sent, 5_000).unwrap();
    assert!(r.received > sent * 9 / 10, "the stream crossed: {r:?}");
    // r1 forwards every datagram that arrived (and a few others: pings, the brains').
    let after = prom
        .wait_for(
            FORWARDED,
            |v| v >= before + r.received as f64,
            Duration::from_secs(10),
        )
        .unwrap();
    println!(
        "r1 forwarded {before} -> {after} packets while {} arrived",
        r.received
    );
    // The brain's view made it too: the mesh has six routers.
    let routers = prom.value(r#"x0_brain_mesh_routers{job="brain"}"#).unwrap();
    assert_eq!(routers, Some(6.0));
}

#[test]
fn promtool_accepts_both_endpoints_and_openmetrics_is_served_on_request() {
    let lab = six_with_brains();
    // The brain serves its metrics once it runs: wait for its endpoint.
    let brain = wait_scrape(&lab, BRAIN_METRICS);
    for (what, text) in [
        ("dataplane", scrape(&lab, "r1", DATAPLANE_METRICS).unwrap()),
        ("brain", brain),
    ] {
        assert!(
            text.contains("x0_build_info{"),
            "{what}: no build info:\n{text}"
        );
        let out = promtool_check(&text);
        assert!(
            out.is_empty(),
            "promtool check metrics on the {what}'s endpoint:\n{out}"
        );
    }
    let open = netns::exec_ok(
        &lab.ns("r1"),
        &[
            "curl",
            "-sS",
            "--fail",
            "-H",
            "Accept: application/openmetrics-text; version=1.0.0",
            &format!("http://{DATAPLANE_METRICS}/metrics"),
        ],
    )
    .unwrap();
    assert!(open.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(open.contains("# TYPE x0_dataplane_packets counter"));
}

fn wait_scrape(lab: &Lab, endpoint: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        match scrape(lab, "r1", endpoint) {
            Ok(t) => return t,
            Err(e) if start.elapsed() > Duration::from_secs(15) => panic!("{endpoint}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// promtool's complaints (empty: none); it fails loudly if promtool is missing.
fn promtool_check(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        said.trim().to_string()
    } else {
        format!("failed: {said}")
    }
}

/// Metric names a scrape's `# TYPE` lines declare, with a histogram's series names.
fn declared(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.to_string());
        }
    }
    names
}

/// The metric names in a PromQL expression: identifiers outside strings, label matchers,
/// ranges and grouping lists that are neither calls nor keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Keywords, and aggregations (which may take `by (...)` before their parenthesis).
    const OPERATORS: [&str; 16] = [
        "and", "or", "unless", "bool", "offset", "sum", "avg", "min", "max", "count", "group",
        "stddev", "stdvar", "topk", "bottomk", "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let skip_to = |from: usize, end: char| {
        (from + 1..chars.len())
            .find(|&k| chars[k] == end)
            .unwrap_or(chars.len())
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '"' => i = skip_to(i, '"'),
            '{' => i = skip_to(i, '}'),
            '[' => i = skip_to(i, ']'),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || matches!(chars[i + 1], '_' | ':'))
                {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                let next = chars[i + 1..].iter().position(|c| !c.is_whitespace());
                let call = next.is_some_and(|k| chars[i + 1 + k] == '(');
                if GROUPING.contains(&word.as_str()) {
                    // by (le, rpc): label names, not metrics.
                    i = skip_to(i, ')');
                } else if !call && !OPERATORS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => {}
        }
        i += 1;
    }
    names
}

#[test]
fn promql_names_are_found_and_labels_are_not() {
    let got = metric_names(
        r#"histogram_quantile(0.99, sum by (le, rpc) (rate(x0_a_bucket{rpc="x"}[30s]))) / on(instance) max by (a) (x0_b) > 0"#,
    );
    assert_eq!(
        got,
        BTreeSet::from(["x0_a_bucket".to_string(), "x0_b".to_string()])
    );
}

#[test]
fn every_dashboard_query_parses_and_names_only_exported_metrics() {
    let lab = six_with_brains();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana/x0tta6bl4-mesh.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let brain = wait_scrape(&lab, BRAIN_METRICS);
    // The API's request metrics appear with the first call.
    lab.x0ctl("r1", &["info"]).unwrap();
    let mut exported = declared(&scrape(&lab, "r1", DATAPLANE_METRICS).unwrap());
    exported.extend(declared(&brain));
    exported.insert("up".into()); // Prometheus's own, per target
    let prom = Prometheus::start(&lab, "r1").unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let concrete = expr
                .replace("$__rate_interval", "30s")
                .replace("$instance", ".*");
            prom.query(&concrete)
                .unwrap_or_else(|e| panic!("panel {:?}: {e}", panel["title"]));
            for name in metric_names(&concrete) {
                assert!(
                    exported.contains(&name),
                    "panel {:?} uses {name}, which neither daemon exports",
                    panel["title"]
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
    // The checker catches a name the daemons do not export.
    assert!(!metric_names("rate(x0_dataplane_made_up_total[1m])").is_subset(&exported));
}
