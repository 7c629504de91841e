//! Test traffic between lab nodes: ping, and a UDP stream with sequence numbers that
//! reports what arrived, what was lost and the largest gap between arrivals.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{lab::Lab, netns};

/// Pings `to` from `from`; returns how many replies came back.
pub fn ping(lab: &Lab, from: &str, to: IpAddr, count: u32) -> Result<u32> {
    let out = netns::exec(
        &lab.ns(from),
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.01",
            "-W",
            "1",
            &to.to_string(),
        ],
    )?;
    ping_received(&String::from_utf8_lossy(&out.stdout))
}

/// The replies ping's summary counts: "20 packets transmitted, 20 received, 0% packet
/// loss, time 190ms" -> 20.
pub fn ping_received(text: &str) -> Result<u32> {
    text.lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected ping output: {text}"))
}

/// Pings `to` from `from` once at a time until a reply comes back: a routing stack has
/// converged both ways (the far router's route back, not only the near one's route out).
pub fn wait_reply(lab: &Lab, from: &str, to: IpAddr, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while ping(lab, from, to, 1)? == 0 {
        if Instant::now() > deadline {
            bail!("{from} got no reply from {to} within {within:?}");
        }
    }
    Ok(())
}

/// What a UDP stream measured at the receiver.
#[derive(Clone, Debug)]
pub struct StreamReport {
    pub sent: u64,
    pub received: u64,
    /// Sequence numbers never received.
    pub lost: u64,
    pub interval: Duration,
    /// The largest time between two consecutive arrivals.
    pub max_gap: Duration,
    /// The sequence numbers never received, in order.
    pub missing: Vec<u64>,
}

impl StreamReport {
    /// Outage estimated as lost packets times the send interval.
    pub fn outage(&self) -> Duration {
        self.interval * self.lost as u32
    }

    /// When, after sequence `from`, the stream's loss fell under `share` for good: the
    /// time from `from` to the end of the last run of `window` packets that lost more than
    /// `share` of them (zero when none did). None when that is within the stream's last
    /// `window` packets (whether it settled cannot be told).
    pub fn settled_after(&self, from: u64, share: f64, window: u64) -> Option<Duration> {
        let lost: Vec<u64> = self
            .missing
            .iter()
            .copied()
            .filter(|&m| m >= from)
            .collect();
        let allowed = share * window as f64;
        // The last loss whose window (it and the `window` - 1 packets before it) lost too much.
        let last_bad = lost.iter().enumerate().rev().find(|&(i, &m)| {
            let first = m.saturating_sub(window - 1);
            let in_window = lost[..=i].iter().rev().take_while(|&&x| x >= first).count();
            in_window as f64 > allowed
        });
        match last_bad {
            None => Some(Duration::ZERO),
            Some((_, &m)) if m + window > self.sent => None,
            Some((_, &m)) => Some(self.interval * (m + 1 - from) as u32),
        }
    }
}

/// Sends `count` datagrams from `from` to `to` (a node's address, received in node
/// `to_node`) at `rate` packets per second, and reports what arrived.
pub fn udp_stream(
    lab: &Lab,
    from: &str,
    to_node: &str,
    to: IpAddr,
    port: u16,
    count: u64,
    rate: u64,
) -> Result<StreamReport> {
    let dst = SocketAddr::new(to, port);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // The receiver stops 500 ms after the sender is done (not after 500 ms of silence: a
    // stream may start out blocked).
    let sender_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = sender_done.clone();
    let receiver = netns::spawn_in_netns(
        &lab.ns(to_node),
        move || -> Result<(u64, Vec<u64>, Duration)> {
            let sock = UdpSocket::bind(dst).with_context(|| format!("bind {dst}"))?;
            // A deep receive buffer, so a descheduled receiver thread does not count as loss.
            nix::sys::socket::setsockopt(
                &sock,
                nix::sys::socket::sockopt::RcvBufForce,
                &(16 << 20),
            )?;
            sock.set_read_timeout(Some(Duration::from_millis(500)))?;
            let _ = ready_tx.send(());
            let mut seen = vec![false; count as usize];
            let (mut received, mut max_gap, mut last) = (0u64, Duration::ZERO, None::<Instant>);
            let mut buf = [0u8; 64];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) if n >= 8 => {
                        let now = Instant::now();
                        if let Some(l) = last {
                            max_gap = max_gap.max(now - l);
                        }
                        last = Some(now);
                        let seq = u64::from_be_bytes(buf[..8].try_into().unwrap());
                        if seq < count && !seen[seq as usize] {
                            seen[seq as usize] = true;
                            received += 1;
                        }
                        if received == count {
                            break;
                        }
                    }
                    Ok(_) => {}
                    // A signal to the process (a daemon beside it ending) is no error.
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if done.load(std::sync::atomic::Ordering::Acquire) {
                            break;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let missing: Vec<u64> = (0..count).filter(|&i| !seen[i as usize]).collect();
            Ok((received, missing, max_gap))
        },
    )?;
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("receiver did not start")?;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let sent = netns::in_netns(&lab.ns(from), move || -> Result<u64> {
        let bind: SocketAddr = if to.is_ipv6() {
            "[::]:0".parse()?
        } else {
            "0.0.0.0:0".parse()?
        };
        let sock = UdpSocket::bind(bind)?;
        let start = Instant::now();
        let mut payload = [0u8; 32];
        for seq in 0..count {
            // Paced against the start time, so a late wake-up does not slow the stream.
            let due = start + interval * seq as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            loop {
                match sock.send_to(&payload, dst) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => {
                        r.with_context(|| format!("send to {dst}"))?;
                        break;
                    }
                }
            }
        }
        Ok(count)
    });
    sender_done.store(true, std::sync::atomic::Ordering::Release);
    let sent = sent?;
    let (received, missing, max_gap) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    let lost = missing.len() as u64;
    if received + lost != count {
        bail!("stream accounting: {received} received + {lost} lost != {count}");
    }
    Ok(StreamReport {
        sent,
        received,
        lost,
        interval,
        max_gap,
        missing,
    })
}

/// Opens a TCP connection from `from` to `to` (node `to_node`) on `port`, sends "hello"
/// and reads "world" back: proves both directions of a connection cross the path.
pub fn tcp_exchange(
    lab: &Lab,
    from: &str,
    to_node: &str,
    to: IpAddr,
    port: u16,
    timeout: Duration,
) -> Result<()> {
    use std::io::{Read, Write};
    let addr = SocketAddr::new(to, port);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = netns::spawn_in_netns(&lab.ns(to_node), move || -> Result<()> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let _ = ready_tx.send(());
        let start = Instant::now();
        let (mut conn, _) = loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && start.elapsed() < timeout =>
                {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(e.into()),
            }
        };
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(timeout))?;
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf)?;
        conn.write_all(b"world")?;
        Ok(())
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("listener did not start")?;
    let client = netns::in_netns(&lab.ns(from), move || -> Result<()> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"hello")?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        if &buf != b"world" {
            bail!("unexpected reply {buf:?}");
        }
        Ok(())
    });
    let served = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    client?;
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sent: u64, missing: Vec<u64>) -> StreamReport {
        StreamReport {
            sent,
            received: sent - missing.len() as u64,
            lost: missing.len() as u64,
            interval: Duration::from_millis(1),
            max_gap: Duration::ZERO,
            missing,
        }
    }

    #[test]
    fn a_stream_settles_after_its_last_burst_of_loss() {
        // 10 % lost from 1000 to 2000, then clean to 10,000: settled 1 s after the onset.
        let r = report(10_000, (1000..2000).step_by(10).collect());
        assert_eq!(
            r.settled_after(1000, 0.001, 1000),
            Some(Duration::from_millis(991))
        );
        // Loss to the end never settles; none at all settles at once.
        let r = report(10_000, (1000..10_000).step_by(10).collect());
        assert_eq!(r.settled_after(1000, 0.001, 1000), None);
        assert_eq!(
            report(10_000, vec![]).settled_after(1000, 0.001, 1000),
            Some(Duration::ZERO)
        );
        // One stray loss later on is not more than 0.1 % of its second.
        let mut m: Vec<u64> = (1000..2000).step_by(10).collect();
        m.push(5000);
        assert_eq!(
            report(10_000, m).settled_after(1000, 0.001, 1000),
            Some(Duration::from_millis(991))
        );
    }
}
