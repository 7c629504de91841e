#!/usr/bin/env bash
# The x0tta6bl4 demo: a small mesh in network namespaces (h1 - r1 - {r2, r3} - r4 - h2),
# x0-dataplane forwarding in every router with XDP, traffic from h1 to h2, the primary
# link failing in the middle of a stream (carrier loss, then a silent black-hole caught by
# BFD) with the measured outage, and the counters that show who forwarded what.
# Tears everything down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "demo.sh: needs root (network namespaces, XDP)" >&2; exit 1; }

./scripts/setup.sh
echo "== building (release)"
cargo build --release --workspace --bins --quiet
# Where cargo put them (CARGO_TARGET_DIR or a config may move target/).
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release"
LAB="$BIN/x0-lab"
NAME=x0demo
MESH=x0brains
trap '$LAB down --name $NAME; $LAB down --name $MESH' EXIT

echo
echo "== topology: netns-tests/topologies/diamond.toml"
cat <<'PIC'
            +-- r2 --+
   h1 -- r1          r4 -- h2        r2: primary path, r3: precomputed backup
            +-- r3 --+
PIC
$LAB up netns-tests/topologies/diamond.toml --name $NAME --dataplane-bin "$BIN/x0-dataplane"

echo
echo "== ping h1 -> h2 over IPv4 and IPv6"
$LAB ping --name $NAME --from h1 --to h2 --count 10
$LAB ping --name $NAME --from h1 --to h2 --count 10 --ipv6

echo
echo "== the kernel holds the fast path's routes too (proto 250): traceroute, fragments and"
echo "   the routers' own traffic follow the mesh"
ip -n $NAME-r1 route show proto 250 | sed 's/^/   r1: /'
ip netns exec $NAME-h1 traceroute -n -q 1 -w 1 198.18.2.2 | sed 's/^/   /'
ip netns exec $NAME-h1 ping -c 3 -s 3000 198.18.2.2 | tail -2 | sed 's/^/   /'
ip netns exec $NAME-r1 ping -c 3 198.18.2.2 | tail -2 | sed 's/^/   r1 -> h2: /'

echo
echo "== the control API: x0ctl over mutual TLS (SPIFFE SVIDs from the lab CA, X25519MLKEM768)"
$LAB ctl --name $NAME r1 -- health | sed 's/^/   /'
echo "   routes are programmed through the API: make r3 the primary for h2's subnet ..."
$LAB ctl --name $NAME r1 -- route replace 198.18.2.0/24 --via 198.18.13.3@eth2 --via 198.18.12.2@eth1 | sed 's/^/   /'
$LAB ctl --name $NAME r1 -- route list --origin api | sed 's/^/   /'
$LAB ping --name $NAME --from h1 --to h2 --count 5
echo "   r1's next hops (the pings went out through r3, 198.18.13.3):"
$LAB ctl --name $NAME r1 -- nexthop list | sed 's/^/   /'
echo "   ... and back to r2 first, as the config has it"
$LAB ctl --name $NAME r1 -- route replace 198.18.2.0/24 --via 198.18.12.2@eth1 --via 198.18.13.3@eth2 | sed 's/^/   /'
echo "   BFD sessions of r1:"
$LAB ctl --name $NAME r1 -- bfd list | sed 's/^/   /'

echo
echo "== UDP streams h1 -> h2 (10,000 packets at 10,000/s each)"
$LAB traffic --name $NAME --from h1 --to h2 --count 10000 --rate 10000
$LAB traffic --name $NAME --from h1 --to h2 --count 10000 --rate 10000 --ipv6

for failure in carrier blackhole; do
  echo
  case $failure in
    carrier) echo "== failure: carrier loss on r1-r2 (ip link set down on r2's side) in the middle of a stream" ;;
    blackhole) echo "== failure: silent black-hole on r1-r2 (both ends stay UP, drop everything; BFD 10 ms x 3)" ;;
  esac
  $LAB traffic --name $NAME --from h1 --to h2 --count 20000 --rate 10000 --fail r1-r2 --failure $failure --fail-after-ms 800
  echo "   r1's next hops after the failure:"
  $LAB stats r1 --name $NAME | sed -n '/next hop/,$p' | sed 's/^/   /'
  echo "   r1's kernel followed the fast path (its log, and its route for h2 now):"
  { grep "followed the fast path" /run/x0lab/$NAME/r1.log || true; } | tail -1 | sed "s/^.*daemon: /   /"
  ip -n $NAME-r1 route show proto 250 198.18.2.0/24 | sed 's/^/   /'
  echo "   repairing r1-r2; traffic returns to r2 after BFD is up again and the 2 s hold-down"
  $LAB repair --name $NAME r1-r2 --failure $failure
  sleep 5
done

echo
echo "== counters of every router (x0-lab stats)"
$LAB stats --name $NAME
echo
echo "== r1 in full (x0-dataplane stats, from its pinned maps)"
$LAB stats r1 --name $NAME

echo
echo "== brains: six routers, one x0-brain each, signed link state over mTLS (ECDSA + ML-DSA-65)"
cat <<'PIC'
        r2 ----- r4
      / |  \   / |  \
  h1-r1 |   \ /  |   r6-h2      the brains compute up to 3 disjoint, loop-free next hops
      \ |   / \  |  /           per prefix and push them into each dataplane over gRPC
        r3 ----- r5
PIC
$LAB down --name $NAME
$LAB up netns-tests/topologies/six.toml --name $MESH --dataplane-bin "$BIN/x0-dataplane" --brains | tail -1
$LAB ctl --name $MESH r1 --brain -- brain status | sed 's/^/   /'
echo "   a remote link fails (r4-r6, on the h1 -> h2 path, not r1's) in the middle of a stream:"
$LAB traffic --name $MESH --from h1 --to h2 --count 20000 --rate 10000 --fail r4-r6 --failure carrier --fail-after-ms 800
sleep 1
echo "   r1's brain after the failure (the incident and its time to repair are in its knowledge base):"
$LAB ctl --name $MESH r1 --brain -- brain status | sed 's/^/   /'

echo
echo "== done; tearing the labs down"
