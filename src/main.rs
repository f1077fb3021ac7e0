//! The `switchyard` command: run the proxy, check a config, or start the demo (the command-line
//! definition and the commands that only print are in `cli.rs`, `check` in `check.rs`).

mod check;
mod cli;
mod register;

use clap::Parser;
use cli::{Cli, Command, RunArgs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchyard::config::{self, Config};
use switchyard::gateway::{ConfigSource, Gateway};
use tokio_util::sync::CancellationToken;

/// mimalloc rather than the system allocator: a proxied request makes a dozen short-lived
/// allocations (hyper's messages, timers, the pooled client's bookkeeping), and glibc's malloc
/// spends several times more instructions on each. Built as mimalloc v2 (its v3 took a slower
/// path for the over-aligned allocations tokio makes per task) and with `no_thp`: with
/// transparent huge pages its eagerly committed arenas grew each idle client connection from
/// ~21 KiB to ~33 KiB of resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid config.
const EXIT_INVALID_CONFIG: u8 = 1;
/// Exit code when the proxy cannot start (bind failure, runtime failure).
const EXIT_START_FAILED: u8 = 3;
/// Exit code after the control plane stopped unexpectedly and the proxy drained.
const EXIT_CONTROL_FAILED: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log_level, cli.log_format);
    match cli.command {
        Some(Command::Check(args)) => match &args.diff {
            Some(files) => check::diff(&files[0], &files[1]),
            None => check::check(args.file.as_ref().unwrap_or(&args.config.config)),
        },
        Some(Command::Config(args)) => cli::config(&args),
        Some(Command::Register(args)) => register::register(args),
        Some(Command::Completions { shell }) => cli::completions(shell),
        Some(Command::Man) => cli::man(),
        Some(Command::Demo(workers)) => match load_demo_config() {
            Ok((config, source)) => run(&config, source, workers.workers, true),
            Err(err) => invalid(&err),
        },
        Some(Command::Run(args)) => run_file(&args),
        None => run_file(&cli.run),
    }
}

fn invalid(err: &config::ConfigError) -> ExitCode {
    eprintln!("{err}");
    ExitCode::from(EXIT_INVALID_CONFIG)
}

fn run_file(args: &RunArgs) -> ExitCode {
    match load_with_source(&args.config.config) {
        Ok((config, source)) => run(&config, Some(source), args.workers.workers, false),
        Err(err) => invalid(&err),
    }
}

/// Loads a config file, keeping its text so reloads can tell whether it changed.
fn load_with_source(path: &Path) -> Result<(Config, ConfigSource), config::ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| config::ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let config = config::parse(&text, &path.display().to_string())?;
    let source = ConfigSource {
        path: path.to_owned(),
        text,
    };
    Ok((config, source))
}

/// The demo reads `conf/demo.toml` when run from the repository (so edits show), else the
/// compiled-in copy, written with its certificates to a temporary directory.
fn load_demo_config() -> Result<(Config, Option<ConfigSource>), config::ConfigError> {
    let mut path = PathBuf::from("conf/demo.toml");
    if !path.exists() {
        let dir = std::env::temp_dir().join(format!("switchyard-demo-{}", std::process::id()));
        path =
            switchyard::demo::write_built_in(&dir).map_err(|source| config::ConfigError::Read {
                path: dir.display().to_string(),
                source,
            })?;
    }
    load_with_source(&path).map(|(config, source)| (config, Some(source)))
}

fn run(
    config: &Config,
    source: Option<ConfigSource>,
    workers: Option<usize>,
    demo: bool,
) -> ExitCode {
    // One worker: a current-thread runtime, with no work-stealing machinery to pay for.
    let mut runtime = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers.max(1));
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all();
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_START_FAILED);
        }
    };
    block_on(
        &runtime,
        Box::pin(async {
            // From the start: a signal sent while the proxy starts, or between two waits,
            // is not lost.
            let mut stops = switchyard::shutdown::StopSignals::listen();
            let upstreams = CancellationToken::new();
            if demo {
                if let Err(err) = switchyard::demo::start_upstreams(upstreams.clone()).await {
                    eprintln!("{err}");
                    return ExitCode::from(EXIT_START_FAILED);
                }
            }
            let gateway = match Gateway::start_with(config, source).await {
                Ok(gateway) => gateway,
                Err(err) => {
                    eprintln!("{err}");
                    return ExitCode::from(if err.is_config() {
                        EXIT_INVALID_CONFIG
                    } else {
                        EXIT_START_FAILED
                    });
                }
            };
            if demo {
                print_demo_help(gateway.first_addr(), gateway.addr_of("demo-tls"));
            }
            let control_failed = tokio::select! {
                () = stops.next() => false,
                () = gateway.control_failed() => true,
            };
            // Lame duck first: /healthz answers 503 while requests are still served, so a balancer
            // in front stops sending new connections before this one stops accepting them.
            gateway.enter_lame_duck();
            let delay = gateway.shutdown_delay();
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "lame duck: /healthz answers 503; still serving until the delay ends (a second signal ends it now)"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stops.next() => {}
                }
            }
            let grace = gateway.shutdown_timeout();
            tracing::info!(
                ?grace,
                "shutting down: no new connections; a second signal exits at once"
            );
            tokio::select! {
                _ = gateway.shutdown(grace) => tracing::info!("shut down"),
                () = stops.next() => tracing::warn!("second signal: exiting now"),
            }
            upstreams.cancel();
            if control_failed {
                ExitCode::from(EXIT_CONTROL_FAILED)
            } else {
                ExitCode::SUCCESS
            }
        }),
    )
}

/// The binary's one `block_on`, over a boxed future: every `Runtime::block_on` instance also
/// instantiates the current-thread scheduler's loop, and with two of them (the proxy's and
/// `register`'s) the compiler stopped inlining that loop, at ~160 instructions per request.
fn block_on(
    runtime: &tokio::runtime::Runtime,
    work: std::pin::Pin<Box<dyn Future<Output = ExitCode> + '_>>,
) -> ExitCode {
    runtime.block_on(work)
}

fn print_demo_help(addr: std::net::SocketAddr, tls: Option<std::net::SocketAddr>) {
    let port = tls.map_or(8443, |a| a.port());
    println!(
        "\nSwitchyard demo is running on http://{addr} and https://localhost:{port}

  Smooth weighted round-robin (alpha 5, beta 1, gamma 1):
    for i in $(seq 7); do curl -s http://{addr}/; done

  Least-connections (gamma is slow, so it gets fewer concurrent requests):
    for i in $(seq 12); do curl -s http://{addr}/api/x & done; wait

  HTTP/2 without TLS (prior knowledge):
    curl -s --http2-prior-knowledge http://{addr}/

  HTTPS with the development CA (run from the repository), HTTP/2 by ALPN; SNI picks a.test's
  certificate:
    curl -s --cacert certs/ca.pem https://localhost:{port}/
    curl -sv --cacert certs/ca.pem --resolve a.test:{port}:127.0.0.1 https://a.test:{port}/ 2>&1 | grep -E 'subject:|HTTP/2 200'

  Health checks probe each backend every second. Make beta fail, watch it leave the rotation
  (unhealthy after two failed probes) and come back; the status page shows it too:
    curl -sN http://127.0.0.1:9901/api/events &       # the event stream (Ctrl-C or kill %1)
    curl -s -X POST http://127.0.0.1:9102/fail
    curl -s -X POST http://127.0.0.1:9102/recover
    open http://127.0.0.1:9901/                        # the status page

  Admin API and metrics (drain a backend and watch the rotation change):
    curl -s http://127.0.0.1:9901/api/pools/web
    curl -s -X POST http://127.0.0.1:9901/api/pools/web/backends/alpha/drain
    curl -s http://127.0.0.1:9901/metrics | grep switchyard_requests_total

  Any host reaches the default route; a bad request gets 400:
    curl -s -H 'Host: other.example' http://{addr}/
    curl -si -H 'Host:' http://{addr}/ | head -1             # 400: HTTP/1.1 without Host

Press Ctrl-C to stop.\n"
    );
}
