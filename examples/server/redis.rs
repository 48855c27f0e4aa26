//! Shared rate limits for the examples (feature `redis`): with
//! `PROXY_REDIS_URL` set, every replica of the example draws each key's
//! rate (`rpm`, `burst`) from one budget in that Redis, so a key's `rpm`
//! means the same whatever the replica count. `PROXY_REPLICAS` is the
//! count a Redis outage divides each rate by (each replica then spends
//! `rpm / N` locally); unset, it is learned through Redis. Without
//! `PROXY_REDIS_URL` nothing changes: limits are per process.
//!
//! ```sh
//! export PROXY_REDIS_URL=redis://127.0.0.1:6379/ PROXY_REPLICAS=2
//! PROXY_CONFIG_FILE=keys.toml PROXY_LISTEN=127.0.0.1:8045 cargo run --example axum --features redis,watch &
//! PROXY_CONFIG_FILE=keys.toml PROXY_LISTEN=127.0.0.1:8046 cargo run --example axum --features redis,watch &
//! # a key with rpm = 60, burst = 10: ten 200s in all across both ports, then 429s
//! for p in 8045 8046 8045 8046; do curl -s -o /dev/null -w '%{http_code}\n' localhost:$p/v1/models -H "Authorization: Bearer $KEY"; done
//! ```

use proxy_auth::redis::SharedRates;
use proxy_auth::{ProxyAuthLayer, ReadsBodies};

/// The shared rates `PROXY_REDIS_URL` and `PROXY_REPLICAS` ask for, or
/// `None` when the URL is unset. A bad value is a message and exit status
/// 2. Redis is not reached here: one that is down when the server starts
/// is an outage the layer logs, not a reason not to serve.
pub fn from_env_or_exit() -> Option<SharedRates> {
    let url = std::env::var("PROXY_REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    let replicas = std::env::var("PROXY_REPLICAS")
        .ok()
        .filter(|n| !n.trim().is_empty());
    let Some(url) = url else {
        if replicas.is_some() {
            eprintln!("error: PROXY_REPLICAS is set without PROXY_REDIS_URL; it divides shared rates during a Redis outage, and there are none");
            std::process::exit(2);
        }
        return None;
    };
    let mut rates = SharedRates::new(&url).unwrap_or_else(|e| {
        eprintln!("error: PROXY_REDIS_URL: {e}");
        std::process::exit(2);
    });
    if let Some(n) = replicas {
        match n.trim().parse::<u32>() {
            Ok(n) if n >= 1 => rates = rates.replicas(n),
            _ => {
                eprintln!("error: PROXY_REPLICAS={n:?}: expected the replica count, a whole number from 1");
                std::process::exit(2);
            }
        }
    }
    Some(rates)
}

/// `layer` with `rates`, if any.
pub fn apply(
    layer: ProxyAuthLayer<ReadsBodies>,
    rates: Option<&SharedRates>,
) -> ProxyAuthLayer<ReadsBodies> {
    match rates {
        Some(rates) => layer.shared_rates(rates.clone()),
        None => layer,
    }
}

/// The banner's line: where the rates are shared, without the password.
pub fn print_banner(rates: Option<&SharedRates>) {
    if let Some(rates) = rates {
        println!(
            "rate limits: shared through Redis at {} (an outage divides each rate among the replicas)",
            rates.address()
        );
    }
}
