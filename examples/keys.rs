//! Issue, revoke and list the keys of the PostgreSQL key store that every
//! proxy replica follows (see the `postgres` module docs).
//!
//! ```sh
//! export PROXY_DATABASE_URL=postgres://proxy:secret@127.0.0.1:5432/proxy
//! cargo run --example keys --features postgres -- add alice --expires-in 86400
//! cargo run --example keys --features postgres -- revoke alice
//! cargo run --example keys --features postgres -- list
//! ```
//!
//! `add` prints the new key alone on the last line of stdout (the only time
//! it is shown; only its digest is stored), so scripts can take it with
//! `tail -n1`. Labels are plain printable text (no control, zero-width or
//! bidirectional characters, at most 256 bytes), and every label is
//! printed escaped (`\u{1b}`), also one written into the table by hand.
//! `--expires-in` is at most 100 years. Exit status: 0 done, 1 the
//! database refused or is unreachable, 2 a usage error (an unknown command
//! or option, a missing or bad value, a label that is not plain text).

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_auth::postgres::{KeyInfo, PgKeyStore, StoreError};

const USAGE: &str =
    "usage: keys add <label> [--expires-in <seconds>] | keys revoke <label> | keys list
The database comes from PROXY_DATABASE_URL (e.g. postgres://proxy:secret@127.0.0.1:5432/proxy).
Labels are plain printable text (no control, zero-width or bidirectional characters), at most 256 bytes.";

/// 100 years: an expiry further away is a typo (and the table stops at the
/// year 9999).
const MAX_EXPIRES_IN: u64 = 100 * 365 * 24 * 60 * 60;

enum Command {
    Add {
        label: String,
        expires_in: Option<Duration>,
    },
    Revoke {
        label: String,
    },
    List,
    Help,
}

/// Every argument is checked: an unknown option, a missing or bad value or
/// a stray argument is an error that names it, never a guess or a panic.
fn parse(args: &[String]) -> Result<Command, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("no command given".into());
    };
    match command.as_str() {
        "add" => parse_add(rest),
        "revoke" => match rest {
            [label] if !label.starts_with('-') => Ok(Command::Revoke {
                label: label.clone(),
            }),
            [] => Err("revoke needs the label of the key to revoke".into()),
            _ => Err(format!(
                "revoke takes one label and no options, not {}",
                shown_args(rest)
            )),
        },
        "list" if rest.is_empty() => Ok(Command::List),
        "list" => Err(format!("list takes no arguments, not {}", shown_args(rest))),
        "help" | "-h" | "--help" => Ok(Command::Help),
        other => Err(format!(
            "unknown command {other:?}; the commands are add, revoke and list"
        )),
    }
}

fn parse_add(args: &[String]) -> Result<Command, String> {
    let mut label = None;
    let mut expires_in = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.split_once('=') {
            Some(("--expires-in", value)) => Some(value.to_owned()),
            _ if arg == "--expires-in" => Some(args.next().cloned().ok_or(
                "--expires-in needs a value: a whole number of seconds, e.g. 86400 for a day",
            )?),
            _ => None,
        };
        if let Some(value) = value {
            if expires_in.is_some() {
                return Err("--expires-in is given twice".into());
            }
            expires_in = Some(expiry(&value)?);
        } else if arg.starts_with('-') {
            return Err(format!(
                "unknown option {arg:?}; add takes --expires-in <seconds>"
            ));
        } else if label.is_some() {
            return Err(format!(
                "add takes one label, not {}",
                shown_args(&[label.take().unwrap_or_default(), arg.clone()])
            ));
        } else {
            label = Some(arg.clone());
        }
    }
    let label = label.ok_or("add needs a label for the new key, e.g. keys add alice")?;
    Ok(Command::Add { label, expires_in })
}

fn expiry(value: &str) -> Result<Duration, String> {
    let seconds: u64 = value.parse().map_err(|_| {
        format!(
            "--expires-in {:?} is not a whole number of seconds, e.g. 86400 for a day",
            shown(value)
        )
    })?;
    if seconds > MAX_EXPIRES_IN {
        return Err(format!(
            "--expires-in {seconds} is more than 100 years ({MAX_EXPIRES_IN} seconds); give a shorter expiry, or none for a key that never expires"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// Arguments as the user typed them, each escaped and quoted.
fn shown_args(args: &[String]) -> String {
    args.iter()
        .map(|a| format!("{:?}", shown(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` with every character that would not show as itself (control,
/// zero-width, bidirectional, other invisible characters) written as
/// `\u{..}`: a label from the table reaches a terminal, where an escape
/// sequence would act and look-alikes would deceive.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if matches!(c, ' ' | '"' | '\'' | '\\') || c.escape_debug().nth(1).is_none() {
                c.to_string()
            } else {
                c.escape_unicode().to_string()
            }
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let url = match std::env::var("PROXY_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            eprintln!("error: PROXY_DATABASE_URL is not set\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&url, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// The exit status for a store error: 2 for what the user gave (a label,
/// an expiry), 1 for what the database said.
fn failed(e: StoreError) -> (u8, String) {
    let code = match e {
        StoreError::InvalidLabel { .. }
        | StoreError::ExpiryOutOfRange
        | StoreError::InvalidUrl { .. } => 2,
        _ => 1,
    };
    (code, e.to_string())
}

async fn run(url: &str, command: Command) -> Result<(), (u8, String)> {
    let store = PgKeyStore::new(url).map_err(|e| (2, format!("PROXY_DATABASE_URL: {e}")))?;
    let admin = store.admin().await.map_err(failed)?;
    match command {
        Command::Add { label, expires_in } => {
            let expires_at = match expires_in {
                None => None,
                Some(after) => Some(
                    SystemTime::now()
                        .checked_add(after)
                        .ok_or((2, "--expires-in is too far in the future".to_owned()))?,
                ),
            };
            let key = admin.add(&label, expires_at).await.map_err(failed)?;
            let until = expires_at.map_or("never expires".to_owned(), |at| {
                format!("expires {}", utc(at))
            });
            println!("added {label:?} ({until}); its key, shown only now:");
            println!("{}", key.expose_secret());
        }
        Command::Revoke { label } => {
            let revoked = admin.revoke(&label).await.map_err(failed)?;
            if revoked {
                println!("revoked {label:?}; every replica refuses it within a second");
            } else {
                println!("{label:?} was already revoked");
            }
        }
        Command::List => print_list(&admin.list().await.map_err(failed)?),
        Command::Help => {}
    }
    Ok(())
}

fn print_list(keys: &[KeyInfo]) {
    let now = SystemTime::now();
    // Rows may have been written by hand: every label is shown escaped.
    let labels: Vec<String> = keys.iter().map(|k| shown(&k.label)).collect();
    let width = labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:width$}  {:8}  {:20}  {:20}  {:20}",
        "LABEL", "STATE", "CREATED", "EXPIRES", "REVOKED"
    );
    for (key, label) in keys.iter().zip(&labels) {
        let state = if key.revoked_at.is_some() {
            "revoked"
        } else if key.is_active(now) {
            "active"
        } else {
            "expired"
        };
        let or_dash = |at: Option<SystemTime>| at.map_or("-".to_owned(), utc);
        println!(
            "{:width$}  {:8}  {:20}  {:20}  {:20}",
            label,
            state,
            utc(key.created_at),
            or_dash(key.expires_at),
            or_dash(key.revoked_at)
        );
    }
    println!("{} keys", keys.len());
}

/// `YYYY-MM-DDTHH:MM:SSZ`, without a date crate (days to civil date after
/// Howard Hinnant's algorithm).
fn utc(at: SystemTime) -> String {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
