//! `GET /metrics` for the examples (feature `metrics`): the Prometheus
//! exporter as the process's recorder, rendered by a route that sits behind
//! the auth layer like every other route.

use std::sync::OnceLock;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process's Prometheus recorder, installed on first use. The layer binds
/// its counters at its first request, so this runs while the router is built.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .unwrap_or_else(|e| {
                eprintln!("error: cannot install the Prometheus recorder: {e}");
                std::process::exit(1);
            })
    })
}

/// Adds `GET /metrics` (Prometheus text format) to `router`; add the auth
/// layer after this so scrapes need the key too.
pub fn route<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let handle = handle();
    router.route(
        "/metrics",
        get(move || async move {
            (
                [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
        }),
    )
}
