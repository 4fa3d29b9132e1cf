//! The entry point every service binary's `main` is: parse, load, `--check-config`,
//! tracing, run until a signal, exit code.

use std::future::Future;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

use crate::{logging, memory, shutdown, ConfigError, EffectiveConfig, LogFormat, RenderError};

/// Exit code after a clean shutdown (or a successful `--check-config`).
pub const EXIT_OK: u8 = 0;
/// Exit code when the service failed while running.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for an invalid configuration (one line on stderr names the setting), also
/// clap's for a malformed command line.
pub const EXIT_INVALID_CONFIG: u8 = 2;

/// Flags every service binary has. Flatten it into the binary's parser.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// Validate the configuration, print the effective settings (secrets redacted) and exit.
    #[arg(long, global = true)]
    pub check_config: bool,
}

/// What a service binary supplies; [`main`] does the rest.
pub trait Service {
    /// The binary's command line. It flattens [`CommonArgs`].
    type Args: Parser + Send + 'static;
    /// The validated configuration.
    type Config: Send + 'static;

    /// The [`CommonArgs`] inside `args`.
    fn common(args: &Self::Args) -> &CommonArgs;

    /// Layer and validate the configuration ([`crate::Layers`]). Nothing may connect
    /// anywhere here: `--check-config` calls it too.
    fn load(args: &Self::Args) -> Result<Self::Config, ConfigError>;

    /// The effective settings for `--check-config`: one table per table of the binary's
    /// file, added with [`EffectiveConfig::table`] (which redacts them).
    fn effective(config: &Self::Config) -> Result<EffectiveConfig, RenderError>;

    /// The log format the configuration asks for.
    fn log_format(config: &Self::Config) -> LogFormat;

    /// Run until `stop` is cancelled (first SIGINT/SIGTERM) and return after a clean
    /// shutdown. A [`ConfigError`] anywhere in the returned error's chain (a setting only
    /// found bad when used, such as an unreadable certificate) exits with 2, any other
    /// error with 1.
    fn run(
        args: Self::Args,
        config: Self::Config,
        stop: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The whole `main` of a service binary:
///
/// 1. cap glibc's malloc arenas ([`memory::cap_arenas`]);
/// 2. parse the command line; a malformed one exits with 2 and one line naming the flag
///    (and its TOML key when the flag belongs to a table: see [`CommonArgs`]);
/// 3. [`Service::load`]; an invalid setting exits with 2 and one line naming it;
/// 4. `--check-config`: print [`Service::effective`] as TOML to stdout and exit 0;
/// 5. install tracing ([`logging::init_tracing`]) and a Tokio runtime;
/// 6. [`Service::run`] with a token cancelled by the first SIGINT/SIGTERM; a second one
///    ends the process at once with 130/143 ([`shutdown::signal_token`]);
/// 7. exit 0 after a clean shutdown, 1 when running failed, 2 for a [`ConfigError`].
pub fn main<S: Service>() -> ExitCode {
    memory::cap_arenas();
    let args = match S::Args::try_parse() {
        Ok(a) => a,
        Err(e) => return usage_error::<S::Args>(&e),
    };
    let config = match S::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    if S::common(&args).check_config {
        return match S::effective(&config) {
            Ok(effective) => {
                print!("{}", effective.to_toml());
                ExitCode::from(EXIT_OK)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_FAILED)
            }
        };
    }
    logging::init_tracing(S::log_format(&config));
    let name = S::Args::command().get_name().to_owned();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = runtime.block_on(async move {
        let stop = shutdown::signal_token();
        S::run(args, config, stop).await
    });
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            if let Some(c) = e.chain().find_map(|c| c.downcast_ref::<ConfigError>()) {
                tracing::error!(error = %c, "{name}: invalid configuration");
                eprintln!("error: {c}");
                return ExitCode::from(EXIT_INVALID_CONFIG);
            }
            tracing::error!(error = format!("{e:#}"), "{name} failed");
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `--help` and `--version` print as clap does (exit 0); any other parse error becomes
/// one line, exit 2.
fn usage_error<A: CommandFactory>(e: &clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_INVALID_CONFIG));
    }
    eprintln!("{}", usage_line(&A::command(), e));
    ExitCode::from(EXIT_INVALID_CONFIG)
}

/// One line for a parse error: clap's first line, the possible values, and the setting
/// the flag sets when it belongs to a flattened struct whose group is named after a TOML
/// table (`#[group(id = "redis")]`; derived groups keep their CamelCase struct name and
/// their flags name bare settings).
fn usage_line(cmd: &clap::Command, e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut line = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        line.push_str(&format!(" (possible values: {})", valid.join(", ")));
    }
    let setting = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => setting_of(cmd, arg),
        _ => None,
    };
    match setting {
        Some(s) => format!("error: {}", ConfigError::new(s, line)),
        None => format!("error: {line}"),
    }
}

/// `--redis-mode <MODE>` → `redis.mode`; `--batch-max-events <N>` → `batch_max_events`.
fn setting_of(cmd: &clap::Command, arg: &str) -> Option<String> {
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let found = cmd.get_arguments().find(|a| a.get_long() == Some(long))?;
    let id = found.get_id().as_str();
    let table = cmd.get_groups().find(|g| {
        let name = g.get_id().as_str();
        name.chars().all(|c| c.is_ascii_lowercase() || c == '_') && g.get_args().any(|a| a == id)
    });
    Some(match table {
        Some(t) => format!("{}.{id}", t.get_id()),
        None => id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Args)]
    #[group(id = "redis")]
    struct RedisFlags {
        #[arg(long = "redis-mode", value_parser = ["invalidate", "refresh"])]
        mode: Option<String>,
    }

    #[derive(Debug, clap::Args)]
    struct RuntimeFlags {
        #[arg(long)]
        batch_max_events: Option<usize>,
    }

    #[derive(Debug, Parser)]
    #[command(name = "t")]
    struct Args {
        #[command(flatten)]
        redis: RedisFlags,
        #[command(flatten)]
        runtime: RuntimeFlags,
    }

    fn line(argv: &[&str]) -> String {
        match Args::try_parse_from(std::iter::once("t").chain(argv.iter().copied())) {
            Ok(a) => format!("parsed {a:?}"),
            Err(e) => usage_line(&Args::command(), &e),
        }
    }

    #[test]
    fn parse_errors_are_one_line_naming_the_setting() {
        let l = line(&["--redis-mode", "write"]);
        assert!(
            l.starts_with("error: invalid setting `redis.mode`: "),
            "{l}"
        );
        assert!(l.contains("invalidate, refresh"), "{l}");
        assert_eq!(l.lines().count(), 1, "{l}");
        let l = line(&["--batch-max-events", "x"]);
        assert!(
            l.starts_with("error: invalid setting `batch_max_events`: "),
            "{l}"
        );
        let l = line(&["--nope"]);
        assert!(l.starts_with("error: ") && l.contains("--nope"), "{l}");
        assert_eq!(l.lines().count(), 1, "{l}");
    }
}
