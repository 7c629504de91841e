//! systemd's notification protocol (Type=notify): ready once the daemon does its job,
//! reloading and ready again around a reload, stopping, and a watchdog ping that only goes
//! out while the daemon's own liveness check passes. Without NOTIFY_SOCKET (not under
//! systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "systemd notification not sent");
    }
}

/// READY=1 with a status line for `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    send(&[
        NotifyState::Reloading,
        NotifyState::Status("reloading the config"),
    ]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// If systemd asked for a watchdog (WatchdogSec=), a thread pings it at half the period
/// whenever `alive` answers true: a daemon whose state is wedged (a lock never released)
/// stops pinging and is restarted. Returns the period, if any.
pub fn start_watchdog(alive: impl Fn() -> bool + Send + 'static) -> Option<Duration> {
    let period = sd_notify::watchdog_enabled()?;
    let every = period / 2;
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            loop {
                if alive() {
                    send(&[NotifyState::Watchdog]);
                }
                std::thread::sleep(every);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "watchdog thread not started");
        return None;
    }
    Some(period)
}
