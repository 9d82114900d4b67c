//! The `rampart` command: run the resolver, validate a config, explain a list decision, or
//! search the query log.
//! Errors go to stderr in one plain sentence and the exit code is non-zero.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use rampart::{app, check, config::Config, policy::Snapshot, process};

/// mimalloc instead of glibc's malloc: it returns freed pages to the kernel. In the ten-minute
/// soak (benches/soak.sh: a 1M-name list replaced every 5 s, caches full and churning, a 60 s
/// upstream outage) RSS with glibc only went up, to its peak (+14 % from the end of minute 1 to
/// the end, +60 % from the end of warm-up); with mimalloc it went up and down with use and
/// ended +6.6 % above the settled start.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rampart: a DNS resolver that blocks the names on your lists.
///
/// It answers clients over UDP and TCP, resolves allowed names itself (recursively from the
/// root, or through upstream resolvers), answers blocked names with the block page address,
/// and exports Prometheus metrics on the admin port.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const DEFAULT_CONFIG: &str = "config/default.toml";

#[derive(Subcommand)]
enum Command {
    /// Start serving DNS with the given configuration (stops on Ctrl-C or SIGTERM).
    Run {
        /// Configuration file (TOML). Relative paths inside it are relative to its folder.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check a configuration file and its lists without serving; exit code 1 on any error.
    CheckConfig {
        /// Configuration file to check.
        #[arg(default_value = DEFAULT_CONFIG)]
        file: PathBuf,
    },
    /// Inspect the configured lists.
    Lists {
        #[command(subcommand)]
        command: ListsCommand,
    },
    /// Read the query log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Print the query log entries (current and rotated files, oldest first) for DOMAIN and
    /// its subdomains, a client, or a time range; the JSON lines as written, or a table.
    Search {
        /// The domain, e.g. example.com (matches its subdomains too). Absent: every domain.
        domain: Option<String>,
        /// Only entries at or after this time: a duration back from now ("1h", "30m",
        /// "2days") or a UTC time ("2026-12-06T12:00:00Z").
        #[arg(long)]
        since: Option<String>,
        /// Only entries at or before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Only entries of this client address (found also when the log truncates it, and
        /// when it hashes it with the secret of --config).
        #[arg(long)]
        client: Option<String>,
        /// Configuration file whose [query_log] path is searched.
        #[arg(short, long, default_value = DEFAULT_CONFIG, conflicts_with = "dir")]
        config: PathBuf,
        /// Search every file in this folder instead (e.g. logs copied off a server).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A readable table instead of JSON lines.
        #[arg(long)]
        table: bool,
    },
}

#[derive(Subcommand)]
enum ListsCommand {
    /// Show whether NAME would be blocked or allowed, by which list and line, and every line
    /// each list skipped when loading.
    Check {
        /// The domain name to check, e.g. ads.example.com (Unicode names are accepted).
        name: String,
        /// Configuration file naming the lists.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Check as this client address would be treated (its client group's lists).
        #[arg(long)]
        client: Option<std::net::IpAddr>,
    },
    /// Parse one list file and report what it holds: rules, distinct names, IP literals and
    /// skipped lines by reason. Exits non-zero when the file is refused as a whole (empty, an
    /// HTML page, not UTF-8).
    Stats {
        /// The list file.
        file: PathBuf,
        /// plain, hosts, adblock, wildcard, dnsmasq, rpz or csv; guessed from the first lines
        /// when not given.
        #[arg(short, long)]
        format: Option<rampart::policy::formats::Format>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,hickory_server=warn,hickory_resolver=error,hickory_net=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config: path } => {
            let config = Config::load(&path)?;
            process::refuse_world_writable(&path, &config.state_dir)?;
            // Look the user up before binding, so a typo fails fast.
            let run_as = match &config.run_as {
                Some((user, group)) => Some(process::lookup(user, group.as_deref())?),
                None => None,
            };
            let state_dir = config.state_dir.clone();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                let running = app::start(config).await?;
                if let Some(target) = &run_as
                    && let Err(e) = process::drop_privileges(target, &state_dir)
                {
                    running.shutdown().await;
                    return Err(e);
                }
                wait_for_stop(&running, &path).await;
                tracing::info!("stopping: draining queries in flight");
                running.shutdown().await;
                tracing::info!("stopped");
                Ok(())
            })
        }
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            let snapshot = Snapshot::load(&config.lists, &config.groups);
            let mut report = String::new();
            check::lists_report(&mut report, &snapshot);
            out(&report);
            if let Some(l) = snapshot
                .lists
                .iter()
                .map(|l| &l.info)
                .find(|l| l.error.is_some())
            {
                anyhow::bail!(
                    "list `{}`: {}",
                    l.name,
                    l.error.as_deref().unwrap_or_default()
                );
            }
            out(&format!("{}: OK\n", file.display()));
            Ok(())
        }
        Command::Lists {
            command:
                ListsCommand::Check {
                    name,
                    config,
                    client,
                },
        } => {
            let config = Config::load(&config)?;
            let snapshot = Snapshot::load(&config.lists, &config.groups);
            let report = check::explain(&snapshot, &config.block, &name, client)
                .map_err(anyhow::Error::msg)?;
            out(&report);
            Ok(())
        }
        Command::Log {
            command:
                LogCommand::Search {
                    domain,
                    since,
                    until,
                    client,
                    config,
                    dir,
                    table,
                },
        } => {
            use rampart::querylog::search;
            let (files, privacy, place) = match dir {
                Some(dir) => {
                    let files = search::files_in(&dir)
                        .with_context(|| format!("cannot read the folder {}", dir.display()))?;
                    (files, None, dir)
                }
                None => {
                    let loaded = Config::load(&config)?;
                    let Some(path) = loaded.query_log.path.clone() else {
                        anyhow::bail!(
                            "{}: query_log.path is empty, so there is no log file to search",
                            config.display()
                        );
                    };
                    (search::files_of(&path), Some(loaded.query_log.client), path)
                }
            };
            if files.is_empty() {
                anyhow::bail!("no query log files at {}", place.display());
            }
            let filter = search::Filter::new(
                domain.as_deref(),
                since.as_deref(),
                until.as_deref(),
                client.as_deref(),
                privacy.as_ref(),
                std::time::SystemTime::now(),
            )
            .map_err(anyhow::Error::msg)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let found = match search::search(&files, &filter, table, &mut out) {
                Ok(found) => found,
                // `rampart log search … | head` closes the pipe: not an error.
                Err(e)
                    if e.downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let _ = std::io::Write::flush(&mut out);
            drop(out);
            eprintln!(
                "{} matching entries in {} files{}",
                found.matched,
                files.len(),
                if found.unreadable > 0 {
                    format!(" ({} lines were not log entries)", found.unreadable)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Command::Lists {
            command: ListsCommand::Stats { file, format },
        } => {
            use rampart::policy::{formats, stats::ListStats};
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (format, detected) = match format {
                Some(format) => (format, false),
                None => (formats::detect(&String::from_utf8_lossy(&bytes)), true),
            };
            let parsed = formats::parse_bytes(format, &bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            out(&format!("file:            {}\n", file.display()));
            out(&ListStats::new(format, &parsed).to_string());
            if detected {
                out("(format guessed from the first lines; choose it with --format)\n");
            }
            Ok(())
        }
    }
}

/// Write to stdout, ignoring a closed pipe (`rampart lists check … | head` must not panic).
fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Wait for Ctrl-C or SIGTERM. On SIGHUP, read the config file again and apply it (a config
/// with errors is reported and the running one kept), and check every list's source now.
async fn wait_for_stop(running: &app::Running, path: &std::path::Path) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => {
                    match Config::load(path) {
                        Ok(config) => {
                            tracing::info!(config = %path.display(), "SIGHUP: config reloaded; checking every list's source now");
                            running.reload(&config);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "SIGHUP: the config has errors; keeping the running one");
                            running.feeds.trigger_all();
                        }
                    }
                    // The certificate is read again whatever became of the config (a renewed
                    // certificate must not wait on an unrelated config fix).
                    if let Err(e) = running.reload_tls() {
                        tracing::error!(error = %e, "SIGHUP: keeping the previous TLS certificate");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (running, path);
        let _ = tokio::signal::ctrl_c().await;
    }
}
