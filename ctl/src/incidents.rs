//! `x0ctl brain incidents` and `x0ctl brain incident N`: the brain's knowledge base as an
//! operator reads it: what was found, on what evidence, what was done, and how it went.

use x0_proto::brain::v1 as pb;

/// One incident as JSON (the status, the list and the single view share it).
pub fn json(i: &pb::Incident) -> serde_json::Value {
    serde_json::json!({
        "id": i.id, "kind": i.kind, "subject": i.subject, "strategy": i.strategy,
        "detected_unix_ns": i.detected_unix_ns, "repaired_unix_ns": i.repaired_unix_ns,
        "success": i.success, "onset_unix_ns": i.onset_unix_ns,
        "restored_unix_ns": i.restored_unix_ns,
        "time_to_repair_ms": time_to_repair_ms(i),
        "causes": i.causes.iter().map(|c| serde_json::json!({
            "element": c.element, "fault": c.fault, "confidence": c.confidence})).collect::<Vec<_>>(),
        "evidence": i.evidence, "outcome": i.outcome,
    })
}

/// From the onset when known, else from the detection; None while open.
pub fn time_to_repair_ms(i: &pb::Incident) -> Option<u64> {
    let from = if i.onset_unix_ns > 0 {
        i.onset_unix_ns
    } else {
        i.detected_unix_ns
    };
    (i.repaired_unix_ns > 0).then(|| i.repaired_unix_ns.saturating_sub(from) / 1_000_000)
}

/// One line: id, kind, subject, state, strategy.
pub fn line(i: &pb::Incident) -> String {
    let state = match (time_to_repair_ms(i), i.restored_unix_ns) {
        (_, r) if r > 0 => "cleared".to_string(),
        (Some(ms), _) if i.success => format!("repaired in {ms} ms"),
        (Some(_), _) => "failed".to_string(),
        (None, _) => "open".to_string(),
    };
    format!(
        "incident {:>4} {:<18} {:<10} {:<18} ({})",
        i.id, i.kind, i.subject, state, i.strategy
    )
}

/// The whole incident, in words an operator can check.
pub fn describe(i: &pb::Incident) -> Vec<String> {
    let mut out = vec![line(i)];
    if !i.causes.is_empty() {
        out.push("causes, best first:".into());
        for (k, c) in i.causes.iter().enumerate() {
            out.push(format!(
                "  {}. {} {} (confidence {:.2})",
                k + 1,
                c.element,
                c.fault,
                c.confidence
            ));
        }
    }
    if !i.evidence.is_empty() {
        out.push("evidence (now, and before the onset):".into());
        out.extend(i.evidence.iter().map(|e| format!("  {e}")));
    }
    out.push(format!("decision: {}", i.strategy));
    out.extend(i.outcome.iter().map(|o| format!("  {o}")));
    if let Some(ms) = time_to_repair_ms(i) {
        out.push(format!("time to repair: {ms} ms from the onset"));
    }
    out
}
