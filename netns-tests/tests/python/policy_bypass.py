#!/usr/bin/python3
"""Packets that try to get past a zero-trust policy (tests/policy_bypass.rs), sent with scapy.

usage: policy_bypass.py VARIANT COUNT SRC DST [ROUTER_MAC IFACE]

VARIANT: allowed | frag-first | frag-later | frag-overlap | frag-tiny | ip-options |
         ipv6-hop-by-hop | too-big | vlan-stacked | tcp-ack | tcp-rst
SRC and DST of the variant's family (ipv6-hop-by-hop: IPv6).
Needs Debian's python3-scapy. Prints the number of packets sent.
"""

import random
import sys

from scapy.all import (
    IP,
    TCP,
    UDP,
    Dot1Q,
    Ether,
    IPOption_RR,
    IPv6,
    IPv6ExtHdrHopByHop,
    Raw,
    conf,
    send,
    sendp,
)

conf.verb = 0
DENIED_UDP = 5001
ALLOWED_UDP = 5000


def udp_fragments(src, dst, dport, pid, payload, size):
    """The datagram cut into fragments of `size` bytes of IP payload (a multiple of 8)."""
    # The UDP checksum over the whole datagram, as the sender computes it.
    whole = bytes(IP(src=src, dst=dst) / UDP(sport=40000, dport=dport) / Raw(payload))[20:]
    out = []
    for off in range(0, len(whole), size):
        more = off + size < len(whole)
        out.append(
            IP(src=src, dst=dst, id=pid, flags="MF" if more else 0, frag=off // 8, proto=17)
            / Raw(whole[off : off + size])
        )
    return out


def packets(variant, count, src, dst, router_mac, iface):
    ids = random.sample(range(1, 65535), min(count, 65534))
    pkts = []
    for i in range(count):
        pid = ids[i % len(ids)]
        if variant == "allowed":
            pkts.append(IP(src=src, dst=dst) / UDP(sport=40000, dport=ALLOWED_UDP) / Raw(b"x" * 32))
        elif variant == "frag-first":
            pkts.append(udp_fragments(src, dst, DENIED_UDP, pid, b"y" * 64, 32)[0])
        elif variant == "frag-later":
            pkts.extend(udp_fragments(src, dst, DENIED_UDP, pid, b"y" * 64, 32)[1:2])
        elif variant == "frag-overlap":
            # A first fragment to the allowed port, then another first fragment of the same
            # datagram to the denied one (a reassembler keeping the last would see 5001).
            allowed = udp_fragments(src, dst, ALLOWED_UDP, pid, b"z" * 64, 32)[0]
            denied = udp_fragments(src, dst, DENIED_UDP, pid, b"z" * 64, 32)[0]
            pkts.extend([allowed, denied])
        elif variant == "frag-tiny":
            pkts.extend(udp_fragments(src, dst, DENIED_UDP, pid, b"t" * 16, 8))
        elif variant == "ip-options":
            pkts.append(
                IP(src=src, dst=dst, options=[IPOption_RR()])
                / UDP(sport=40000, dport=DENIED_UDP)
                / Raw(b"o" * 32)
            )
        elif variant == "ipv6-hop-by-hop":
            pkts.append(
                IPv6(src=src, dst=dst)
                / IPv6ExtHdrHopByHop()
                / UDP(sport=40000, dport=DENIED_UDP)
                / Raw(b"h" * 32)
            )
        elif variant == "too-big":
            pkts.append(
                IP(src=src, dst=dst) / UDP(sport=40000, dport=DENIED_UDP) / Raw(b"b" * 1600)
            )
        elif variant == "vlan-stacked":
            pkts.append(
                Ether(dst=router_mac)
                / Dot1Q(vlan=10)
                / Dot1Q(vlan=20)
                / IP(src=src, dst=dst)
                / UDP(sport=40000, dport=DENIED_UDP)
                / Raw(b"v" * 32)
            )
        elif variant in ("tcp-ack", "tcp-rst"):
            flags = "A" if variant == "tcp-ack" else "R"
            pkts.append(
                IP(src=src, dst=dst)
                / TCP(sport=random.randint(1024, 65000), dport=22, flags=flags, seq=i, ack=i)
            )
        else:
            sys.exit(__doc__)
    return pkts


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    variant, count, src, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    router_mac = sys.argv[5] if len(sys.argv) > 5 else None
    iface = sys.argv[6] if len(sys.argv) > 6 else None
    pkts = packets(variant, count, src, dst, router_mac, iface)
    if variant == "vlan-stacked":
        sendp(pkts, iface=iface)
    else:
        send(pkts)
    print(len(pkts))


if __name__ == "__main__":
    main()
