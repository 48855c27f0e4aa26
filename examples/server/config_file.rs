//! `PROXY_CONFIG_FILE`: the examples' auth settings from a JSON or TOML file
//! that is followed for changes (feature `watch`), instead of the
//! `PROXY_AUTH_MODE` / `PROXY_API_KEY` / `PROXY_ALLOW_LAN_ACCESS` variables.
//!
//! ```sh
//! printf 'auth_mode = "strict"\napi_key = "sk-test"\n' > /tmp/auth.toml
//! PROXY_CONFIG_FILE=/tmp/auth.toml cargo run --example axum --features watch
//! sed -i 's/sk-test/sk-new/' /tmp/auth.toml   # in force for the next request
//! ```

use proxy_auth::SharedSecurityConfig;

/// What keeps the file followed; drop it to stop.
#[cfg(feature = "watch")]
pub type Following = proxy_auth::watch::WatchHandle;
#[cfg(not(feature = "watch"))]
pub type Following = std::convert::Infallible;

/// Makes `shared` follow `PROXY_CONFIG_FILE` if it is set; `None` if it is
/// not. A bad file (or a build without the `watch` feature) is a message
/// on stderr and exit status 2: the proxy does not start on a config it
/// could not read.
pub fn follow_from_env(shared: &SharedSecurityConfig) -> Option<Following> {
    let path = std::env::var_os("PROXY_CONFIG_FILE").filter(|p| !p.is_empty())?;
    #[cfg(feature = "watch")]
    match proxy_auth::watch::watch_file(shared.clone(), &path) {
        Ok(handle) => {
            println!(
                "config: from {} (followed for changes; it overrides the auth settings above) -> effective mode: {}",
                handle.path().display(),
                shared.effective_auth_mode()
            );
            Some(handle)
        }
        Err(e) => {
            eprintln!("error: PROXY_CONFIG_FILE: {e}");
            std::process::exit(2);
        }
    }
    #[cfg(not(feature = "watch"))]
    {
        let _ = shared;
        eprintln!(
            "error: PROXY_CONFIG_FILE={} needs the `watch` feature; run with --features watch",
            std::path::Path::new(&path).display()
        );
        std::process::exit(2);
    }
}
