//! Logs on stderr, as the daemon's supervisor wants them: plain lines with timestamps on a
//! terminal or in a file, without timestamps under systemd (the journal stamps each line
//! itself), or JSON lines for log shippers. RUST_LOG filters (default: info).

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `journal` when systemd connected stderr to the journal, else `text`.
    #[default]
    Auto,
    /// One line per event with its timestamp.
    Text,
    /// As `text` without the timestamp (the journal has its own).
    Journal,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// What `Auto` means here: systemd sets JOURNAL_STREAM when stderr is the journal.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journal,
            LogFormat::Auto => LogFormat::Text,
            other => other,
        }
    }
}

/// The daemons' logging option, one definition for both (`#[command(flatten)]`).
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct LogArgs {
    /// Log lines for a terminal or file (text), the journal (no timestamps: it stamps
    /// them), or log shippers (json); auto picks journal under systemd.
    #[arg(
        long,
        global = true,
        env = "X0_LOG_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    pub log_format: LogFormat,
}

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.resolve() {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Journal => builder.with_ansi(false).without_time().init(),
        _ => builder.with_ansi(ansi).init(),
    }
}
