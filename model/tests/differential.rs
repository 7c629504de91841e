//! x0_forward against the reference model on 10,000 generated frames (10 tables of 200
//! routes), through BPF_PROG_TEST_RUN on this kernel. Needs root; fails loudly without.
//! The long run: `x0-bench differential --cases 1000000`.

#[test]
fn ten_thousand_frames_match_the_model() {
    let s = x0_model::run::run(10_000, 20_261_207, |_| {}).expect("the differential run");
    eprintln!(
        "{} frames ({} too short to run), {} mismatches; by reason: {:?}",
        s.cases,
        s.too_short,
        s.mismatches.len(),
        s.by_reason
    );
    assert!(
        s.mismatches.is_empty(),
        "{} of {} frames differ from the model; the first:\n{}",
        s.mismatches.len(),
        s.cases,
        s.mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    // The generator reaches the decisions that matter: forwarded, and each kind of refusal.
    for r in [
        x0_common::Reason::ForwardedRoute,
        x0_common::Reason::PassTtlExpired,
        x0_common::Reason::PassNoNeighbour,
        x0_common::Reason::PassLocal,
        x0_common::Reason::DropMartian,
        x0_common::Reason::DropMalformedL3,
        x0_common::Reason::PassIpv4Options,
        x0_common::Reason::PassIpv6ExtHeader,
        x0_common::Reason::PassTooBig,
        x0_common::Reason::PassOtherHost,
    ] {
        let n = s
            .by_reason
            .iter()
            .find(|(x, _)| *x == r)
            .map_or(0, |(_, n)| *n);
        assert!(
            n >= 10,
            "only {n} frames under {}: {:?}",
            r.name(),
            s.by_reason
        );
    }
}
