//! The kernel's tables read over rtnetlink, many times over: a dump must never fail
//! because the previous one just ended (a daemon once died at start-up of EINVAL from a
//! neighbour dump, when the reply was read on another thread than the request was sent).

use x0_dataplane::netlink::Netlink;

#[test]
fn back_to_back_dumps_never_fail() {
    let nl = Netlink::connect().expect("rtnetlink socket");
    let loopback = nl
        .link_by_name("lo")
        .expect("link dump")
        .expect("every namespace has lo");
    for round in 0..3000 {
        let links = nl
            .links()
            .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        assert!(links.iter().any(|l| l.ifindex == loopback.ifindex));
        let addrs = nl
            .addresses()
            .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        assert!(
            addrs.iter().any(|a| a.addr.is_loopback()),
            "round {round}: the address dump lost 127.0.0.1/::1: {addrs:?}"
        );
        nl.neighbours()
            .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
    }
}

#[test]
fn a_refused_request_is_an_error_naming_the_kernels_reason() {
    let nl = Netlink::connect().expect("rtnetlink socket");
    let links = nl.links().expect("link dump");
    let missing = links.iter().map(|l| l.ifindex).max().unwrap() + 1_000_000;
    let err = nl
        .resolve(missing, "192.0.2.1".parse().unwrap())
        .expect_err("no interface has this ifindex");
    let text = format!("{err:#}");
    assert!(text.contains("No such device"), "{text}");
    // The socket still answers after a refusal.
    let again = nl.links().expect("link dump after an error");
    assert!(again.iter().any(|l| l.name == "lo"), "{again:?}");
}
