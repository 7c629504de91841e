//! SPIFFE identities and mutual TLS for the control connections (gRPC) of x0tta6bl4's daemons:
//! the dataplane's gRPC server, the `x0ctl` client and, later, the brain.
//!
//! # Model
//!
//! Every daemon holds an X.509-SVID: a certificate whose only URI SAN is its SPIFFE ID
//! (`spiffe://<trust domain>/<path>`, e.g. `spiffe://mesh.example/router/r1`), signed by a CA
//! of the trust domain. The trust bundle (the trust domain's CA certificates) and CRLs decide
//! whom it trusts. Both ends of a connection present their SVID and check the other's with the
//! same function ([`verify_peer`]): chain to the bundle, not expired, not revoked, the SVID
//! leaf rules, same trust domain; a client may further pin the server's ID ([`IdPattern`]).
//! Authorization by ID (who may call which RPC) is left to the server, which reads the
//! client's ID from the connection ([`peer_spiffe_id`]).
//!
//! TLS is 1.3 only, rustls with aws-lc-rs, key exchange X25519MLKEM768 (hybrid post-quantum)
//! by default ([`PqMode`]). DNS names play no part: SVIDs carry none.
//!
//! SVIDs come from files ([`FileSource`], polled) or a SPIRE agent's Workload API, and rotate
//! without restarts ([`IdentityWatcher`]). TLS configurations are built from one
//! [`Identity`] and must be rebuilt when it changes. [`ca`] is a lab CA (rcgen) so that test
//! benches need no SPIRE; the `workload-server` feature adds a Workload API server for tests.

pub mod ca;
#[cfg(feature = "grpc-server")]
mod cut;
#[cfg(feature = "grpc-server")]
pub mod listen;
pub mod mldsa;
mod pattern;
mod pq;
mod source;
mod svid;
mod tls;
mod verify;
#[cfg(feature = "workload-server")]
mod workload_server;

pub use pattern::{IdPattern, PatternError};
pub use pq::{PqMode, crypto_provider};
pub use source::{IdentityWatcher, SourceConfig};
pub use spiffe::{SpiffeId, TrustDomain};
pub use svid::{FileSource, Identity, IdentityError};
pub use tls::{
    client_config, client_config_without_cert, negotiated_group_name, peer_spiffe_id, server_config,
};
pub use verify::{PeerError, Side, Trust, TrustError, verify_peer};
#[cfg(feature = "workload-server")]
pub use workload_server::WorkloadServer;

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC), for messages.
pub(crate) fn fmt_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// A serial number's DER content bytes as lower-case hex without leading zero bytes.
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let hex: String = raw[start..].iter().map(|b| format!("{b:02x}")).collect();
    if hex.is_empty() { "00".into() } else { hex }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fmt_unix_dates() {
        assert_eq!(super::fmt_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::fmt_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::fmt_unix(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn serial_hex_strips_sign_and_padding() {
        assert_eq!(super::serial_hex(&[0, 0, 0x02]), "02");
        assert_eq!(super::serial_hex(&[0x00, 0xc8]), "c8");
        assert_eq!(super::serial_hex(&[0, 0]), "00");
        assert_eq!(super::serial_hex(&[0x01, 0x00]), "0100");
    }
}
