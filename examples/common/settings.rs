//! Settings shared by the examples, read from the environment:
//! `PROXY_LISTEN` (default `127.0.0.1:8045`, or `0.0.0.0:8045` with LAN
//! access), `PROXY_AUTH_MODE`, `PROXY_API_KEY`, `PROXY_ALLOW_LAN_ACCESS`,
//! `PROXY_CORS_ORIGINS` (in [`cors`]).
//!
//! A non-loopback `PROXY_LISTEN` while `auto` resolves to `off` is refused
//! (exit status 2): set `PROXY_AUTH_MODE=off` to mean it. The check is the
//! shared config's listen-address guard
//! (`SharedSecurityConfig::guard_listen_addr`), set before binding, so it
//! also judges a `PROXY_CONFIG_FILE` (axum example) at start and on every
//! reload: a reload it refuses is rejected like a bad edit.

#[path = "cors.rs"]
pub mod cors;

use std::net::SocketAddr;

use proxy_auth::{
    generate_api_key, ApiKey, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig,
};

pub struct Settings {
    pub listen: SocketAddr,
    pub config: ProxySecurityConfig,
    pub generated_key: bool,
    pub cors: Option<cors::CorsOrigins>,
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
    // An explicitly empty PROXY_API_KEY is kept, to show what the layer does
    // with auth on and no key; only an unset variable gets a generated key.
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
    // Not checked against `listen` here: `guard` does, on the config that
    // is in force once a config file (if any) was read.
    Ok(Settings {
        listen,
        config,
        generated_key,
        cors: cors::from_env()?,
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

/// Logging and the settings, or a message and exit status 2.
pub fn start() -> Settings {
    init_logging();
    from_env_or_exit()
}

/// Guards `settings.listen` on `shared` (call it after every source of
/// config was read into `shared`, before binding): refused, a message and
/// exit status 2; from then on every write to `shared`, a config file's
/// reloads included, is checked the same way.
pub fn guard_or_exit(shared: &SharedSecurityConfig, settings: &Settings) {
    if let Err(e) = shared.guard_listen_addr(settings.listen) {
        eprintln!(
            "error: {e} (PROXY_ALLOW_LAN_ACCESS=true, PROXY_AUTH_MODE=strict, or PROXY_AUTH_MODE=off; in a PROXY_CONFIG_FILE, allow_lan_access = true or another auth_mode)"
        );
        std::process::exit(2);
    }
}

/// The listening socket, or a message and exit status 1.
pub async fn bind_or_exit(settings: &Settings) -> tokio::net::TcpListener {
    match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {} ({e}); set PROXY_LISTEN to a free address",
                settings.listen
            );
            std::process::exit(1);
        }
    }
}

/// What is in force (`shared`, after every source of config was read), so
/// nobody has to guess; the key only if it was generated here (the user
/// does not know it otherwise).
pub fn print_banner(
    example: &str,
    settings: &Settings,
    shared: &SharedSecurityConfig,
    listener: &tokio::net::TcpListener,
) {
    let config = shared.load();
    let listen = listener.local_addr().unwrap_or(settings.listen);
    println!("proxy-auth {example} example listening on http://{listen}");
    println!(
        "auth_mode={} allow_lan_access={} -> effective mode: {}",
        config.auth_mode,
        config.allow_lan_access,
        config.effective_auth_mode()
    );
    if config.api_key != settings.config.api_key {
        println!("api key: from the config file (not printed)");
    } else if settings.generated_key {
        println!(
            "PROXY_API_KEY not set; generated key: {}",
            config.api_key.expose_secret()
        );
    } else if config.api_key.is_blank() {
        println!("PROXY_API_KEY is empty: every request that needs a key will be refused");
    } else {
        println!("api key: from PROXY_API_KEY (not printed)");
    }
    cors::print_banner(settings.cors.as_ref(), config.effective_auth_mode());
}
