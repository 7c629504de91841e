//! Martian sources are never forwarded (RFC 1812 5.3.7, RFC 4291): h1 sends UDP frames to
//! h2's address with each kind of martian source, written whole onto its link (AF_PACKET,
//! from Python's standard library), and r1 drops and counts every one of them.

mod common;

use std::process::Command;

use x0_common::Reason;
use x0_lab::netns;

/// Sends COUNT UDP frames from h1's eth0 to r1's MAC: IPv4 or IPv6 by the source's family.
const SEND: &str = r#"
import ipaddress, socket, struct, sys
iface, dst_mac, src, dst, count = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), \
    ipaddress.ip_address(sys.argv[3]), ipaddress.ip_address(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
src_mac = s.getsockname()[4]
udp = struct.pack("!HHHH", 4000, 4000, 8 + 4, 0) + b"mars"
def csum(b):
    b += b"\0" * (len(b) % 2)
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
if src.version == 4:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src.packed, dst.packed)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    frame = dst_mac + src_mac + b"\x08\x00" + h + udp
else:
    h = struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64, src.packed, dst.packed)
    frame = dst_mac + src_mac + b"\x86\xdd" + h + udp
for _ in range(count):
    s.send(frame)
"#;

fn mac(lab: &x0_lab::Lab, node: &str, iface: &str) -> String {
    let out = netns::exec_ok(
        &lab.ns(node),
        &["cat", &format!("/sys/class/net/{iface}/address")],
    );
    out.unwrap().trim().to_string()
}

#[test]
fn every_martian_source_is_dropped_and_counted_by_r1() {
    let lab = common::lab("line.toml", |_| {});
    let r1_mac = mac(&lab, "r1", "eth1");
    let h2_v4 = common::addr(&lab, "h2", false).to_string();
    let h2_v6 = common::addr(&lab, "h2", true).to_string();
    let martians = [
        ("0.0.0.1", &h2_v4),
        ("127.0.0.1", &h2_v4),
        ("224.0.0.5", &h2_v4),
        ("240.0.0.1", &h2_v4),
        ("255.255.255.255", &h2_v4),
        ("::1", &h2_v6),
        ("::", &h2_v6),
        ("ff02::1", &h2_v6),
        ("::ffff:198.18.1.2", &h2_v6),
    ];
    const COUNT: u64 = 100;
    for (src, dst) in martians {
        let before = lab.counters("r1").unwrap();
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns("h1"),
                "python3",
                "-c",
                SEND,
                "eth0",
                &r1_mac,
            ])
            .args([src, dst.as_str(), &COUNT.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // r1's XDP runs in its NAPI poll, after the send returned: wait for the count.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let after = loop {
            let now = lab.counters("r1").unwrap();
            let done = now.get(Reason::DropMartian) - before.get(Reason::DropMartian) >= COUNT;
            if done || std::time::Instant::now() > deadline {
                break now;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let d = |r: Reason| after.get(r) - before.get(r);
        assert_eq!(d(Reason::DropMartian), COUNT, "source {src}: drop_martian");
        assert_eq!(
            d(Reason::ForwardedRoute) + d(Reason::ForwardedFib),
            0,
            "source {src}: forwarded"
        );
    }
}
