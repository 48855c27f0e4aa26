//! The PostgreSQL key store for the examples (feature `postgres`): with
//! `PROXY_DATABASE_URL` set, the example's key set follows the store's table
//! (issue keys with the `keys` example); `PROXY_API_KEY` still works as the
//! operator's key. Without the variable nothing changes.
//!
//! ```sh
//! export PROXY_DATABASE_URL=postgres://proxy:secret@127.0.0.1:5432/proxy
//! PROXY_AUTH_MODE=strict PROXY_API_KEY=sk-operator cargo run --example axum --features postgres
//! KEY=$(cargo run -q --example keys --features postgres -- add alice | tail -n1)
//! curl -i localhost:8045/v1/models -H "Authorization: Bearer $KEY"   # 200 within a second
//! cargo run -q --example keys --features postgres -- revoke alice
//! curl -i localhost:8045/v1/models -H "Authorization: Bearer $KEY"   # 401
//! ```

use proxy_auth::postgres::{KeyStoreHandle, PgKeyStore};
use proxy_auth::SharedSecurityConfig;

/// Starts following the store if `PROXY_DATABASE_URL` is set; keep the
/// handle alive for as long as the server runs. Exits with a message if the
/// database cannot be reached: an example should not silently serve without
/// the keys it was told to use.
pub async fn follow(shared: &SharedSecurityConfig) -> Option<KeyStoreHandle> {
    let url = std::env::var("PROXY_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())?;
    let store = PgKeyStore::new(&url).unwrap_or_else(|e| {
        eprintln!("error: PROXY_DATABASE_URL: {e}");
        std::process::exit(2);
    });
    match store.start(shared.clone()).await {
        Ok(handle) => {
            println!(
                "keys: {} from PostgreSQL at {}, following changes",
                handle.status().keys,
                store.address()
            );
            Some(handle)
        }
        Err(e) => {
            eprintln!("error: {e}; unset PROXY_DATABASE_URL to run without the key store");
            std::process::exit(1);
        }
    }
}
