//! The fuzz targets of x0tta6bl4's parsers: what arrives from the network (BFD packets,
//! link-state records), from operators (the two daemons' configs) and from API callers
//! (route and policy requests). Each takes any bytes and must neither panic nor hang; where
//! a property holds (a decoded packet encodes back the same; an error stays short whatever
//! the input's size) it is asserted. `cargo fuzz` drives them (docs/FUZZING.md); the
//! corpus under fuzz/corpus is replayed by `cargo test -p x0-fuzz`.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use prost::Message;
use x0_dataplane::bfd::packet::ControlPacket;
use x0_proto::{
    brain::v1::SignedRecord,
    dataplane::v1::{AddRouteRequest, SetPolicyRequest},
};

/// An error's text at most, whatever the input (API errors show values by their start).
const ERROR_BYTES: usize = 2048;

/// A BFD Control packet: decoding never panics, and what decodes encodes back the same
/// (the 24 bytes of the mandatory section, authentication aside).
pub fn bfd_packet(data: &[u8]) {
    let Ok(p) = ControlPacket::decode(data) else {
        return;
    };
    let again = ControlPacket::decode(&p.encode()).expect("an encoded packet decodes");
    assert_eq!(again, p);
}

/// The trust a brain checks records against: a lab CA made once per process.
fn trust() -> &'static x0_identity::Trust {
    static TRUST: OnceLock<(tempfile::TempDir, x0_identity::Identity)> = OnceLock::new();
    let (_, identity) = TRUST.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = dir.path().join("ca");
        let day = Duration::from_secs(86_400);
        x0_identity::ca::init(&ca, "fuzz.example", day).expect("lab CA");
        let req = x0_identity::ca::IssueRequest::svid("/brain/r1", dir.path(), "r1", day);
        let issued = x0_identity::ca::issue(&ca, &req).expect("SVID");
        let files = x0_identity::FileSource {
            cert: issued.cert_path,
            key: issued.key_path,
            bundle: ca.join(x0_identity::ca::BUNDLE),
            crls: vec![],
        };
        let identity = x0_identity::Identity::from_files(&files).expect("identity");
        (dir, identity)
    });
    identity.trust()
}

/// A signed link-state record as a neighbour floods it: decoded and verified (size, form,
/// the SVID chain, both signatures, age); never panics.
pub fn link_state_record(data: &[u8]) {
    let Ok(signed) = SignedRecord::decode(data) else {
        return;
    };
    let _ = x0_brain::linkstate::lsp::verify(&signed, trust(), SystemTime::now());
}

/// The dataplane's config file (TOML), its routes and its policy compiled.
pub fn dataplane_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = x0_dataplane::config::Config::parse(text) else {
        return;
    };
    let _ = config.routes();
    let _ = config.policy();
}

/// The brain's config file (TOML).
pub fn brain_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = x0_brain::config::BrainConfig::parse(text);
    }
}

/// An AddRoute or SetPolicy request (the first byte chooses), validated as the API does
/// before anything changes; a refusal's message stays short.
pub fn api_request(data: &[u8]) {
    let Some((kind, body)) = data.split_first() else {
        return;
    };
    let short = |e: String| assert!(e.len() <= ERROR_BYTES, "{} bytes: {e:.200}", e.len());
    if kind % 2 == 0 {
        let Ok(req) = AddRouteRequest::decode(body) else {
            return;
        };
        let Some(r) = req.route else { return };
        let via: Vec<(String, String)> = r
            .next_hops
            .iter()
            .map(|n| (n.gateway.clone(), n.interface.clone()))
            .collect();
        let known = |name: &str| name == "eth1" || name == "eth2";
        if let Err(e) = x0_dataplane::config::validate_route("route", &r.prefix, &via, &known) {
            short(format!("{e:#}"));
        }
    } else {
        let Ok(req) = SetPolicyRequest::decode(body) else {
            return;
        };
        let Some(p) = req.policy else { return };
        let spec = match x0_dataplane::api::service::policy_from(p) {
            Ok(s) => s,
            Err(s) => return short(s.message().to_string()),
        };
        let ifaces = [("eth1".to_string(), None), ("eth2".to_string(), None)];
        if let Err(e) = x0_dataplane::policy::compile(&spec.identities, &spec.rules, &ifaces) {
            short(format!("{e:#}"));
        }
    }
}
