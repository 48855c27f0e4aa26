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
//! `tail -n1`. Exit status: 0 done, 1 the database refused or is unreachable,
//! 2 a usage error.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_auth::postgres::{KeyInfo, PgKeyStore};

const USAGE: &str =
    "usage: keys add <label> [--expires-in <seconds>] | keys revoke <label> | keys list
The database comes from PROXY_DATABASE_URL (e.g. postgres://proxy:secret@127.0.0.1:5432/proxy).";

enum Command {
    Add {
        label: String,
        expires_in: Option<Duration>,
    },
    Revoke {
        label: String,
    },
    List,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["add", label] => Ok(Command::Add {
            label: (*label).to_owned(),
            expires_in: None,
        }),
        ["add", label, "--expires-in", seconds] | ["add", "--expires-in", seconds, label] => {
            let seconds: u64 = seconds.parse().map_err(|_| {
                format!("--expires-in {seconds:?} is not a whole number of seconds, e.g. 86400 for a day")
            })?;
            Ok(Command::Add {
                label: (*label).to_owned(),
                expires_in: Some(Duration::from_secs(seconds)),
            })
        }
        ["revoke", label] => Ok(Command::Revoke {
            label: (*label).to_owned(),
        }),
        ["list"] => Ok(Command::List),
        [] => Err("no command given".into()),
        _ => Err(format!("cannot understand {:?}", args.join(" "))),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
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
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

async fn run(url: &str, command: Command) -> Result<(), String> {
    let store = PgKeyStore::new(url).map_err(|e| format!("PROXY_DATABASE_URL: {e}"))?;
    let admin = store.admin().await.map_err(|e| e.to_string())?;
    match command {
        Command::Add { label, expires_in } => {
            let expires_at = match expires_in {
                None => None,
                Some(after) => Some(
                    SystemTime::now()
                        .checked_add(after)
                        .ok_or("--expires-in is too far in the future")?,
                ),
            };
            let key = admin
                .add(&label, expires_at)
                .await
                .map_err(|e| e.to_string())?;
            let until = expires_at.map_or("never expires".to_owned(), |at| {
                format!("expires {}", utc(at))
            });
            println!("added {label:?} ({until}); its key, shown only now:");
            println!("{}", key.expose_secret());
        }
        Command::Revoke { label } => {
            let revoked = admin.revoke(&label).await.map_err(|e| e.to_string())?;
            if revoked {
                println!("revoked {label:?}; every replica refuses it within a second");
            } else {
                println!("{label:?} was already revoked");
            }
        }
        Command::List => print_list(&admin.list().await.map_err(|e| e.to_string())?),
    }
    Ok(())
}

fn print_list(keys: &[KeyInfo]) {
    let now = SystemTime::now();
    let width = keys.iter().map(|k| k.label.len()).max().unwrap_or(5).max(5);
    println!(
        "{:width$}  {:8}  {:20}  {:20}  {:20}",
        "LABEL", "STATE", "CREATED", "EXPIRES", "REVOKED"
    );
    for key in keys {
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
            key.label,
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
