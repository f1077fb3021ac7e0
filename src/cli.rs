//! The command-line definition, and the commands that only print something: the default
//! config, shell completions and the man page (all generated from this one definition).

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Log filter when RUST_LOG is unset: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// Operational log lines as text or as one JSON object each; they go to stderr, so stdout
    /// carries only the access log.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How operational log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Run(RunArgs),
    /// Validate a config and print a summary; exit 1 listing every problem if invalid.
    Check(CheckArgs),
    /// Start three demo upstreams and the proxy on 127.0.0.1:8080 (conf/demo.toml).
    Demo(WorkerArg),
    /// Keep one service instance registered in a Redis registry until stopped (SIGTERM or
    /// SIGINT deregister it).
    Register(RegisterArgs),
    /// Print configuration: with --defaults, every option at its default value, as TOML; with
    /// --schema, a JSON Schema of the config file.
    Config(ConfigPrint),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The config file, as `nginx -t -c FILE` users type it (the same as --config).
    #[arg(value_name = "FILE", conflicts_with = "diff")]
    pub file: Option<PathBuf>,
    /// Instead, print (as JSON) what reloading NEW over OLD would change, having checked both.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    pub diff: Option<Vec<PathBuf>>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The registry, as a redis:// URL.
    #[arg(long, value_name = "URL")]
    pub redis: String,
    /// The service the instance belongs to (a pool's `discovery.service`).
    #[arg(long)]
    pub service: String,
    /// Where the proxy reaches the instance, host:port.
    #[arg(long)]
    pub address: String,
    /// Relative share of traffic, 1 to 256.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub weight: u32,
    /// How long the registration outlives the last heartbeat (sent every third of it).
    #[arg(long, default_value = "10s", value_parser = switchyard::config::parse_duration)]
    pub ttl: std::time::Duration,
    /// A metadata label stored with the instance, KEY=VALUE; repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = key_value)]
    pub metadata: Vec<(String, String)>,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ConfigPrint {
    /// Print the effective default config.
    #[arg(long)]
    defaults: bool,
    /// Print a JSON Schema of the config file, for editors (Taplo, Even Better TOML).
    #[arg(long)]
    schema: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, short, default_value = "conf/switchyard.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct WorkerArg {
    /// Runtime worker threads (default: one per CPU core).
    #[arg(long)]
    pub workers: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub workers: WorkerArg,
}

pub fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// `switchyard config --defaults` or `--schema`.
pub fn config(args: &ConfigPrint) -> ExitCode {
    if args.schema {
        let mut schema = switchyard::config::schema();
        schema.push('\n');
        return emit(schema.as_bytes());
    }
    emit(switchyard::config::DEFAULTS.as_bytes())
}

/// `switchyard completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "switchyard", &mut script);
    emit(&script)
}

/// `switchyard man`.
pub fn man() -> ExitCode {
    match man_page() {
        Ok(page) => emit(&page),
        Err(err) => {
            eprintln!("cannot render the man page: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One page, commands included: clap's own subcommand section points to per-command pages,
/// which nothing installs.
fn man_page() -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    writeln!(page, ".SH COMMANDS")?;
    for sub in command.get_subcommands() {
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        writeln!(
            page,
            ".TP\n\\fBswitchyard {}\\fR\n{} (\\fBswitchyard {} \\-\\-help\\fR lists its options.)",
            sub.get_name(),
            about.replace('-', "\\-"),
            sub.get_name()
        )?;
    }
    page.extend_from_slice(MAN_SECTIONS.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// The man page's sections clap does not make.
const MAN_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
Invalid config: every problem is printed as PATH:LINE:COL: message (also an admin API reachable
from the network without a token).
.TP
\fB2\fR
Bad command line.
.TP
\fB3\fR
The proxy could not start (an address already in use, a file it cannot open).
.TP
\fB4\fR
The control plane stopped unexpectedly; the proxy drained and exited so that a supervisor restarts it.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, let requests in flight finish for timeouts.shutdown, then exit; with
timeouts.shutdown_delay, first answer /healthz with 503 that long. A second signal exits at once.
.TP
\fBSIGHUP\fR
Reload the config file; a rejected one leaves the running config in force.
.TP
\fBSIGUSR1\fR
Reopen the access log file (after logrotate moved it).
.SH FILES
.TP
\fIconf/switchyard.toml\fR
The default config file (\fB\-\-config\fR names another); every option is in
\fBswitchyard config \-\-defaults\fR.
.TP
\fI/etc/systemd/system/switchyard.service\fR
Where the shipped unit (conf/systemd/) goes: ExecReload sends SIGHUP, Restart=on\-failure.
.SH EXAMPLES
.TP
\fBswitchyard check /etc/switchyard/switchyard.toml\fR
Validate a config and print a summary, as \fBnginx \-t\fR does.
.TP
\fBswitchyard check \-\-diff old.toml new.toml\fR
Print what reloading new.toml over old.toml would change.
.TP
\fBswitchyard \-\-config /etc/switchyard/switchyard.toml\fR
Run the proxy.
.TP
\fBswitchyard demo\fR
Run the built\-in demo on 127.0.0.1:8080 and https://localhost:8443.
.TP
\fBcurl \-X POST 'http://127.0.0.1:9901/api/pools/web/backends/web\-1/drain?deadline=30s'\fR
Drain a backend through the admin API; its remaining requests are closed after 30 s.
"#;

/// Writes `bytes` to stdout; a reader that goes away early (`| head`) is not an error.
fn emit(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cannot write to stdout: {err}");
            ExitCode::FAILURE
        }
    }
}
