//! The examples' settings from the environment (the table in the
//! [server module](super)); each bad value is an error that names the
//! variable and the fix.

use std::net::SocketAddr;

use proxy_auth::scope::IpNet;
use proxy_auth::{generate_api_key, ApiKey, ProxyAuthMode, ProxySecurityConfig};

use super::cors;

pub struct Settings {
    pub listen: SocketAddr,
    pub config: ProxySecurityConfig,
    pub generated_key: bool,
    pub cors: Option<cors::CorsOrigins>,
    pub trusted_proxies: Vec<IpNet>,
}

/// Reads the settings, or says which one is wrong and how to fix it.
pub fn from_env() -> Result<Settings, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());

    let listen = var("PROXY_LISTEN")
        .map(|v| {
            v.trim().parse::<SocketAddr>().map_err(|_| {
                format!(
                    "PROXY_LISTEN={v:?} is not a socket address; use host:port, e.g. 127.0.0.1:8045"
                )
            })
        })
        .transpose()?;
    let auth_mode = match var("PROXY_AUTH_MODE") {
        None => ProxyAuthMode::default(),
        Some(v) => v.parse().map_err(|e| format!("PROXY_AUTH_MODE: {e}"))?,
    };
    let allow_lan_access = match var("PROXY_ALLOW_LAN_ACCESS").as_deref().map(str::trim) {
        None => false,
        Some("1" | "true" | "yes" | "on") => true,
        Some("0" | "false" | "no" | "off") => false,
        Some(other) => {
            return Err(format!(
                "PROXY_ALLOW_LAN_ACCESS={other:?} is not a boolean; use true or false"
            ))
        }
    };
    // An explicitly empty PROXY_API_KEY is kept (named keys may be all there
    // is; with none, the server refuses to start); only an unset variable
    // gets a generated key.
    let (api_key, generated_key) = match std::env::var("PROXY_API_KEY") {
        Ok(key) => (ApiKey::new(key), false),
        Err(std::env::VarError::NotPresent) => (generate_api_key(), true),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err("PROXY_API_KEY is not valid UTF-8; API keys are ASCII".into())
        }
    };
    let config = ProxySecurityConfig::new(auth_mode, api_key).allow_lan_access(allow_lan_access);
    // As in Antigravity, LAN access means listening on every interface.
    let listen = listen.unwrap_or_else(|| {
        let host = if allow_lan_access {
            [0, 0, 0, 0]
        } else {
            [127, 0, 0, 1]
        };
        SocketAddr::from((host, 8045))
    });
    // Not checked against `listen` here: `Server::start` does, on the config that
    // is in force once a config file (if any) was read.
    Ok(Settings {
        listen,
        config,
        generated_key,
        cors: cors::from_env()?,
        trusted_proxies: match var("PROXY_TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|net| !net.is_empty())
                .map(|net| {
                    net.parse()
                        .map_err(|e| format!("PROXY_TRUSTED_PROXIES: {e}"))
                })
                .collect::<Result<_, _>>()?,
        },
    })
}

/// Logs to stderr; `RUST_LOG` overrides the default of showing every
/// rejection (`proxy_auth=info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("proxy_auth=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// [`from_env`], or a message on stderr and exit status 2.
pub fn from_env_or_exit() -> Settings {
    from_env().unwrap_or_else(|message| {
        eprintln!("error: {message}");
        std::process::exit(2);
    })
}
