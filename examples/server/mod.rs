//! The server behind the `axum`, `hyper` and `forward` examples: every
//! environment variable they read and every optional integration, in one
//! place, so that each example file shows only how the layer is wired.
//!
//! | variable | what it sets | default |
//! |---|---|---|
//! | `PROXY_LISTEN` | the address to listen on | `127.0.0.1:8045`, or `0.0.0.0:8045` with LAN access |
//! | `PROXY_AUTH_MODE` | `off`, `strict`, `all_except_health`, `auto` | `auto` |
//! | `PROXY_API_KEY` | the proxy's key | a generated key, printed once |
//! | `PROXY_ALLOW_LAN_ACCESS` | `true`/`false`: what `auto` resolves to, and the default listen address | `false` |
//! | `PROXY_CORS_ORIGINS` | origins whose pages may call the proxy with `fetch`, or `*` ([`cors`]; axum and hyper only: `forward` passes the upstream's CORS headers) | no CORS headers |
//! | `PROXY_TRUSTED_PROXIES` | comma-separated CIDR blocks whose `X-Forwarded-For` is believed for keys with `allowed_ips` | none |
//! | `PROXY_CONFIG_FILE` | a JSON or TOML file followed for changes, whose mode, key and LAN access replace the three auth variables' (which must still parse; `PROXY_ALLOW_LAN_ACCESS` alone picks the default listen address) (feature `watch`; [`config_file`]) | unset |
//! | `PROXY_DATABASE_URL` | a PostgreSQL key store (feature `postgres`; [`key_store`]) | unset |
//! | `PROXY_REDIS_URL` | one rate budget per key for every replica, in Redis (feature `redis`; [`redis`]) | unset: limits per process |
//! | `PROXY_REPLICAS` | the replica count a Redis outage divides each rate by (feature `redis`; [`redis`]) | learned through Redis |
//! | `RUST_LOG` | the log filter (`tracing-subscriber`'s syntax) | `proxy_auth=info` |
//! | `PROXY_UPSTREAM`, `PROXY_UPSTREAM_KEY` | where the `forward` example sends requests, and with which key ([`upstream`]) | required by `forward` |
//!
//! With feature `metrics`, the axum example also serves `GET /metrics`
//! behind the same key ([`metrics`]).
//!
//! [`Server::start`] reads them all before anything is served: a bad value,
//! a config file that cannot be read, a store that cannot be reached, a
//! config under which `auto` would leave a network listener open
//! ([`SharedSecurityConfig::guard_listen_addr`]; an explicit `off` is taken
//! at its word)
//! or that can let nobody in ([`SharedSecurityConfig::check_keys`]) is a
//! message on stderr and a non-zero exit, never a server that does
//! something else than it was told. The banner it prints says what is in
//! force.
//!
//! The layer every example wraps ([`Server::layer`]) reads model bodies
//! (for keys limited to some models), trusts `PROXY_TRUSTED_PROXIES` and,
//! with `PROXY_REDIS_URL`, shares each key's rate with the other replicas.
//! Each example passes the connection's address to it (axum's
//! `ConnectInfo`, or [`ClientAddr`] in a hyper accept loop), so keys with
//! `allowed_ips` work.

pub mod config_file;
pub mod cors;
#[cfg(feature = "postgres")]
pub mod key_store;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "redis")]
pub mod redis;
pub mod settings;
pub mod upstream;

use std::net::SocketAddr;

use http::Request;
use proxy_auth::scope::IpNet;
use proxy_auth::{
    ClientAddr, ProxyAuthLayer, ProxyAuthMode, ReadsBodies, SharedSecurityConfig,
    DEFAULT_BODY_LIMIT,
};
use tokio::net::TcpListener;
use tower::util::{MapRequest, MapRequestLayer};

pub use settings::Settings;

/// What the examples serve with: the settings, the shared config every
/// source writes to, the bound listener, and what keeps the config file
/// and the key store followed.
pub struct Server {
    pub settings: Settings,
    pub shared: SharedSecurityConfig,
    pub listener: TcpListener,
    _config_file: Option<config_file::Following>,
    #[cfg(feature = "postgres")]
    _key_store: Option<proxy_auth::postgres::KeyStoreHandle>,
    /// `PROXY_REDIS_URL`'s shared rates, put on [`Server::layer`].
    #[cfg(feature = "redis")]
    rates: Option<proxy_auth::redis::SharedRates>,
}

impl Server {
    /// Logging, the settings, the config file and the key store, the
    /// checks, the listener and the banner; a message and exit status 2 on
    /// a bad setting (1 when the address cannot be bound or the store
    /// cannot be reached).
    pub async fn start(example: &str) -> Server {
        settings::init_logging();
        let settings = settings::from_env_or_exit();
        Server::start_with(example, settings).await
    }

    /// [`start`](Self::start) with logging set up and the settings read
    /// (the forward example reads its upstream's first).
    pub async fn start_with(example: &str, settings: Settings) -> Server {
        let shared = SharedSecurityConfig::new(settings.config.clone());
        let config_file = config_file::follow_from_env(&shared);
        #[cfg(feature = "postgres")]
        let key_store = key_store::follow(&shared).await;
        #[cfg(feature = "redis")]
        let rates = redis::from_env_or_exit();
        // After every source was read: the checks judge the config in
        // force, and the guard every write from then on.
        guard_or_exit(&shared, &settings);
        if let Err(e) = shared.check_keys() {
            eprintln!(
                "error: {e} (set PROXY_API_KEY, add keys to the PROXY_CONFIG_FILE or the key store, or set PROXY_AUTH_MODE=off)"
            );
            std::process::exit(2);
        }
        let listener = bind_or_exit(&settings).await;
        print_banner(example, &settings, &shared, &listener);
        #[cfg(feature = "redis")]
        redis::print_banner(rates.as_ref());
        Server {
            settings,
            shared,
            listener,
            _config_file: config_file,
            #[cfg(feature = "postgres")]
            _key_store: key_store,
            #[cfg(feature = "redis")]
            rates,
        }
    }

    /// The layer every example wraps: the shared config, bodies read for
    /// keys limited to some models, `PROXY_TRUSTED_PROXIES` believed.
    /// With `PROXY_REDIS_URL`, each key's rate is shared by every replica.
    pub fn layer(&self) -> ProxyAuthLayer<ReadsBodies> {
        let layer = layer(&self.shared, &self.settings.trusted_proxies);
        #[cfg(feature = "redis")]
        let layer = redis::apply(layer, self.rates.as_ref());
        layer
    }
}

/// [`Server::layer`] without a server (the tests start the examples'
/// services in process with it).
pub fn layer(shared: &SharedSecurityConfig, trusted: &[IpNet]) -> ProxyAuthLayer<ReadsBodies> {
    ProxyAuthLayer::from_shared(shared.clone())
        .trusted_proxies(trusted.iter().copied())
        .read_model_bodies(DEFAULT_BODY_LIMIT)
}

/// Marks each request of the connection from `peer` with its address, for
/// keys with `allowed_ips` (what axum's `ConnectInfo` does for a router).
pub fn with_client_addr<S, B>(
    peer: SocketAddr,
    service: S,
) -> MapRequest<S, impl FnMut(Request<B>) -> Request<B> + Clone> {
    MapRequest::new(service, move |mut request: Request<B>| {
        request.extensions_mut().insert(ClientAddr(peer));
        request
    })
}

/// Copies axum's `ConnectInfo` into [`ClientAddr`] (for a router served
/// with `into_make_service_with_connect_info::<SocketAddr>()`). The
/// crate's `axum` feature reads `ConnectInfo` itself; this keeps the
/// example right without it.
pub fn client_addr_from_connect_info<B>() -> MapRequestLayer<fn(Request<B>) -> Request<B>> {
    MapRequestLayer::new(|mut request: Request<B>| {
        let info = request
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>();
        if let Some(&axum::extract::ConnectInfo(peer)) = info {
            request.extensions_mut().insert(ClientAddr(peer));
        }
        request
    })
}

/// Resolves on Ctrl-C.
pub async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Guards `settings.listen` on `shared`: refused, a message and exit
/// status 2; from then on every write to `shared`, a config file's reloads
/// included, is checked the same way.
fn guard_or_exit(shared: &SharedSecurityConfig, settings: &Settings) {
    if let Err(e) = shared.guard_listen_addr(settings.listen) {
        eprintln!(
            "error: {e} (PROXY_ALLOW_LAN_ACCESS=true, PROXY_AUTH_MODE=strict, or PROXY_AUTH_MODE=off; in a PROXY_CONFIG_FILE, allow_lan_access = true or another auth_mode)"
        );
        std::process::exit(2);
    }
}

/// The listening socket, or a message and exit status 1.
async fn bind_or_exit(settings: &Settings) -> TcpListener {
    match TcpListener::bind(settings.listen).await {
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

/// What is in force, so nobody has to guess; the key only if it was
/// generated here (the user does not know it otherwise).
fn print_banner(
    example: &str,
    settings: &Settings,
    shared: &SharedSecurityConfig,
    listener: &TcpListener,
) {
    let config = shared.load();
    let listen = listener.local_addr().unwrap_or(settings.listen);
    let effective = config.effective_auth_mode();
    println!("proxy-auth {example} example listening on http://{listen}");
    println!(
        "auth_mode={} allow_lan_access={} -> effective mode: {effective}",
        config.auth_mode, config.allow_lan_access,
    );
    // `auto` never looks at the client's address: LAN access turns auth on
    // for every client, the local ones included, even when the LAN cannot
    // reach this listener at all.
    if config.auth_mode == ProxyAuthMode::Auto
        && config.allow_lan_access
        && listen.ip().is_loopback()
    {
        println!(
            "warning: auth is on only because allow_lan_access=true, but {listen} is loopback-only: \
             no LAN client can reach it, and local clients need the key; \
             set PROXY_LISTEN=0.0.0.0:{} to serve the LAN, or PROXY_ALLOW_LAN_ACCESS=false",
            listen.port()
        );
    }
    if config.api_key != settings.config.api_key {
        println!("api key: from the config file (not printed)");
    } else if settings.generated_key {
        println!(
            "PROXY_API_KEY not set; generated key: {}",
            config.api_key.expose_secret()
        );
    } else if config.api_key.is_blank() {
        println!("api key: none (named keys only)");
    } else {
        println!("api key: from PROXY_API_KEY (not printed)");
    }
    if !settings.trusted_proxies.is_empty() {
        let nets: Vec<String> = settings
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        println!("trusted proxies: {}", nets.join(", "));
    }
    // The forward example applies no CORS of its own (it passes the
    // upstream's headers), so a CORS line would not be true there.
    if example != "forward" {
        cors::print_banner(settings.cors.as_ref(), effective);
    }
}
