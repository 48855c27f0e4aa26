//! Issue, revoke, change and list the keys of the PostgreSQL key store
//! that every proxy replica follows (see the `postgres` module docs).
//!
//! ```sh
//! export PROXY_DATABASE_URL=postgres://proxy:secret@127.0.0.1:5432/proxy
//! cargo run --example keys --features postgres -- add alice --expires-in 86400
//! cargo run --example keys --features postgres -- add team-a --models 'gpt-4o*,claude-3-5-*' \
//!     --routes /v1/chat/completions --allowed-ips 10.0.0.0/8 --rpm 60 --burst 10 --max-concurrent 2
//! cargo run --example keys --features postgres -- set team-a --rpm 30 --models none
//! cargo run --example keys --features postgres -- revoke alice
//! cargo run --example keys --features postgres -- list
//! ```
//!
//! `add` prints the new key alone on the last line of stdout (the only time
//! it is shown; only its digest is stored), so scripts can take it with
//! `tail -n1`. `set` changes the fields it is given and keeps the others
//! (`none` clears one); every replica applies it within a second and keeps
//! the key's rate state. Labels are plain printable text (no control,
//! zero-width or bidirectional characters, at most 256 bytes), and every
//! label and policy value is printed escaped (`\u{1b}`), also one written
//! into the table by hand. `--expires-in` is at most 100 years. Exit
//! status: 0 done, 1 the database refused or is unreachable, 2 a usage
//! error (an unknown command or option, a missing or bad value, a label
//! that is not plain text, a policy the replicas would refuse).

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_auth::postgres::{KeyInfo, KeyPolicy, PgKeyStore, PolicyChange, PolicyField, StoreError};
use proxy_auth::{KeySet, KeySetError, NewKey};

const USAGE: &str = "usage: keys add <label> [--expires-in <seconds>] [<policy>...]
       keys set <label> <policy>...
       keys revoke <label>
       keys list
<policy> (add: each a value; set: a value, or none to clear it; set keeps what it is not given):
  --models <name,...>        models the key may use: names, or prefixes ending in * (gpt-4o*)
  --routes <path,...>        path prefixes the key may call (/v1/chat/completions)
  --allowed-ips <cidr,...>   client networks the key may be used from (10.0.0.0/8, 2001:db8::/32)
  --rpm <n>                  requests per minute, sustained
  --burst <n>                requests back to back at that rate (default: rpm; needs rpm)
  --max-concurrent <n>       requests in flight at once
Limits are whole numbers from 1 to 1000000; a field left out is no restriction.
The database comes from PROXY_DATABASE_URL (e.g. postgres://proxy:secret@127.0.0.1:5432/proxy).
Labels are plain printable text (no control, zero-width or bidirectional characters), at most 256 bytes.";

/// 100 years: an expiry further away is a typo (and the table stops at the
/// year 9999).
const MAX_EXPIRES_IN: u64 = 100 * 365 * 24 * 60 * 60;

enum Command {
    Add {
        label: String,
        expires_in: Option<Duration>,
        policy: KeyPolicy,
    },
    Set {
        label: String,
        change: PolicyChange,
    },
    Revoke {
        label: String,
    },
    List,
    Help,
}

/// The policy options, their field, and whether each takes a list.
const POLICY_OPTIONS: [(&str, PolicyField); 6] = [
    ("--models", PolicyField::Models),
    ("--routes", PolicyField::Routes),
    ("--allowed-ips", PolicyField::AllowedIps),
    ("--rpm", PolicyField::Rpm),
    ("--burst", PolicyField::Burst),
    ("--max-concurrent", PolicyField::MaxConcurrent),
];

/// Every argument is checked: an unknown option, a missing or bad value or
/// a stray argument is an error that names it, never a guess or a panic.
fn parse(args: &[String]) -> Result<Command, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("no command given".into());
    };
    match command.as_str() {
        "add" => parse_add(rest),
        "set" => parse_set(rest),
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
            "unknown command {:?}; the commands are add, set, revoke and list",
            shown(other)
        )),
    }
}

/// A command's `--option value` (or `--option=value`) pairs, in order.
type Given = Vec<(&'static str, String)>;

/// A command's label and its options, each at most once and among `known`.
fn options(
    command: &str,
    args: &[String],
    known: &[&'static str],
) -> Result<(String, Given), String> {
    let mut label = None;
    let mut given: Given = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if !arg.starts_with('-') {
            if let Some(first) = label.take() {
                return Err(format!(
                    "{command} takes one label, not {}",
                    shown_args(&[first, arg.clone()])
                ));
            }
            label = Some(arg.clone());
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let Some(name) = known.iter().copied().find(|k| *k == name) else {
            return Err(format!(
                "unknown option {:?}; {command} takes {}",
                shown(arg),
                known.join(", ")
            ));
        };
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value ({})", what(name)))?,
        };
        if given.iter().any(|(n, _)| *n == name) {
            return Err(format!("{name} is given twice"));
        }
        given.push((name, value));
    }
    let label = label
        .ok_or_else(|| format!("{command} needs a label for the key, e.g. keys {command} alice"))?;
    Ok((label, given))
}

/// What an option's value is, for messages.
fn what(option: &str) -> &'static str {
    match option {
        "--expires-in" => "a whole number of seconds, e.g. 86400 for a day",
        "--models" => "model names or prefixes ending in *, separated by commas",
        "--routes" => "path prefixes starting with /, separated by commas",
        "--allowed-ips" => "CIDR blocks or addresses, separated by commas",
        _ => "a whole number from 1 to 1000000",
    }
}

fn parse_add(args: &[String]) -> Result<Command, String> {
    let mut known = vec!["--expires-in"];
    known.extend(POLICY_OPTIONS.map(|(name, _)| name));
    let (label, given) = options("add", args, &known)?;
    let mut expires_in = None;
    let mut policy = KeyPolicy::new();
    for (name, value) in given {
        if name == "--expires-in" {
            expires_in = Some(expiry(&value)?);
            continue;
        }
        if value == "none" {
            return Err(format!(
                "{name} none: a new key has no restriction for what it is not given; leave {name} out"
            ));
        }
        policy = match field(name) {
            PolicyField::Models => policy.models(list(name, &value)?),
            PolicyField::Routes => policy.routes(list(name, &value)?),
            PolicyField::AllowedIps => policy.allowed_ips(list(name, &value)?),
            PolicyField::Rpm => policy.rpm(limit(name, &value)?),
            PolicyField::Burst => policy.burst(limit(name, &value)?),
            _ => policy.max_concurrent(limit(name, &value)?),
        };
    }
    scopes_check(&label, &policy)?;
    policy.limits().map_err(|e| e.to_string())?;
    Ok(Command::Add {
        label,
        expires_in,
        policy,
    })
}

/// What the replicas would refuse in `policy`'s scopes (a bad CIDR block,
/// a `*` inside a model pattern, a route without its `/`), found before
/// the database is asked: the checks of `KeySet::add`, on a key set of one
/// made for this check alone.
fn scopes_check(label: &str, policy: &KeyPolicy) -> Result<(), String> {
    let mut key = NewKey::new(label, "sk-argument-check-only");
    if let Some(models) = &policy.models {
        key = key.models(models.clone());
    }
    if let Some(routes) = &policy.routes {
        key = key.routes(routes.clone());
    }
    if let Some(nets) = &policy.allowed_ips {
        key = key.allowed_ips(nets.clone());
    }
    match KeySet::new().add(key) {
        // The label's own rules are the admin API's, with its messages.
        Err(e @ KeySetError::BadScope { .. }) => Err(shown(&e.to_string())),
        _ => Ok(()),
    }
}

fn parse_set(args: &[String]) -> Result<Command, String> {
    let known = POLICY_OPTIONS.map(|(name, _)| name);
    let (label, given) = options("set", args, &known)?;
    if given.is_empty() {
        return Err(format!(
            "set needs at least one field to change: {}",
            known.join(", ")
        ));
    }
    let mut change = PolicyChange::new();
    // The lists it sets, checked as `add` checks them (whether a burst is
    // left without rpm depends on the row: the table says).
    let mut lists = KeyPolicy::new();
    for (name, value) in given {
        let field = field(name);
        change = if value == "none" {
            change.clear(field)
        } else {
            match field {
                PolicyField::Models => {
                    lists = lists.models(list(name, &value)?);
                    change.models(list(name, &value)?)
                }
                PolicyField::Routes => {
                    lists = lists.routes(list(name, &value)?);
                    change.routes(list(name, &value)?)
                }
                PolicyField::AllowedIps => {
                    lists = lists.allowed_ips(list(name, &value)?);
                    change.allowed_ips(list(name, &value)?)
                }
                PolicyField::Rpm => change.rpm(limit(name, &value)?),
                PolicyField::Burst => change.burst(limit(name, &value)?),
                _ => change.max_concurrent(limit(name, &value)?),
            }
        };
    }
    scopes_check(&label, &lists)?;
    Ok(Command::Set { label, change })
}

fn field(option: &str) -> PolicyField {
    POLICY_OPTIONS
        .iter()
        .find(|(name, _)| *name == option)
        .map(|(_, field)| *field)
        .expect("only policy options reach here")
}

/// A comma-separated list; an empty item (`a,,b`, a trailing comma) is an
/// error rather than something dropped.
fn list(option: &str, value: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = value
        .split(',')
        .map(|item| item.trim().to_owned())
        .collect();
    if items.iter().any(String::is_empty) {
        return Err(format!(
            "{option} {:?} has an empty item; give {}",
            shown(value),
            what(option)
        ));
    }
    Ok(items)
}

fn limit(option: &str, value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if (1..=proxy_auth::limit::MAX).contains(&n) => Ok(n),
        Ok(0) => Err(format!(
            "{option} 0 would refuse every request; leave it out (add) or give none (set) for no limit"
        )),
        _ => Err(format!(
            "{option} {:?} is not {}",
            shown(value),
            what(option)
        )),
    }
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
/// an expiry, a policy), 1 for what the database said.
fn failed(e: StoreError) -> (u8, String) {
    let code = match e {
        StoreError::InvalidLabel { .. }
        | StoreError::InvalidPolicy { .. }
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
        Command::Add {
            label,
            expires_in,
            policy,
        } => {
            let expires_at = match expires_in {
                None => None,
                Some(after) => Some(
                    SystemTime::now()
                        .checked_add(after)
                        .ok_or((2, "--expires-in is too far in the future".to_owned()))?,
                ),
            };
            let key = admin
                .add_with_policy(&label, expires_at, &policy)
                .await
                .map_err(failed)?;
            let until = expires_at.map_or("never expires".to_owned(), |at| {
                format!("expires {}", utc(at))
            });
            println!("added {label:?} ({until}; {})", policy_text(&policy));
            println!("its key, shown only now:");
            println!("{}", key.expose_secret());
        }
        Command::Set { label, change } => {
            let policy = admin.set(&label, &change).await.map_err(failed)?;
            println!(
                "{label:?} now has {}; every replica applies it within a second",
                policy_text(&policy)
            );
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

/// `models=gpt-4o*,claude-3-5-* rpm=60 ...`, the fields that are set, in
/// the options' order and spelling (escaped: rows may be written by hand);
/// `no policy` when none is.
fn policy_text(policy: &KeyPolicy) -> String {
    let list = |items: &Option<Vec<String>>| {
        items
            .as_ref()
            .map(|items| items.iter().map(|i| shown(i)).collect::<Vec<_>>().join(","))
    };
    let number = |n: Option<u32>| n.map(|n| n.to_string());
    let fields = [
        ("models", list(&policy.models)),
        ("routes", list(&policy.routes)),
        ("allowed-ips", list(&policy.allowed_ips)),
        ("rpm", number(policy.rpm)),
        ("burst", number(policy.burst)),
        ("max-concurrent", number(policy.max_concurrent)),
    ];
    let set: Vec<String> = fields
        .into_iter()
        .filter_map(|(name, value)| Some(format!("{name}={}", value?)))
        .collect();
    if set.is_empty() {
        "no policy".to_owned()
    } else {
        set.join(" ")
    }
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
        "{:width$}  {:8}  {:20}  {:20}  {:20}  POLICY",
        "LABEL", "STATE", "CREATED", "EXPIRES", "REVOKED"
    );
    for (key, label) in keys.iter().zip(&labels) {
        let state = if key.revoked_at.is_some() {
            "revoked"
        } else if key.policy_problem.is_some() {
            "invalid"
        } else if key.is_active(now) {
            "active"
        } else {
            "expired"
        };
        let or_dash = |at: Option<SystemTime>| at.map_or("-".to_owned(), utc);
        println!(
            "{:width$}  {:8}  {:20}  {:20}  {:20}  {}",
            label,
            state,
            utc(key.created_at),
            or_dash(key.expires_at),
            or_dash(key.revoked_at),
            policy_text(&key.policy)
        );
        if let Some(problem) = &key.policy_problem {
            println!(
                "{:width$}  the replicas refuse this key: {}",
                "",
                shown(problem)
            );
        }
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
