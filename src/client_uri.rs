//! [`ClientUri`]: the path the client sent, when a router in front of the
//! layer has already cut it.
//!
//! A router that nests services rewrites the request's URI on the way in:
//! inside axum's `Router::new().nest("/v1", api)`, a layer on `api` sees
//! `/messages` for a request to `/v1/messages`. The layer judges exempt
//! paths, picks the API's error shape and logs by the path the client
//! sent, read in this order:
//!
//! 1. a [`ClientUri`] extension, which any server or router can insert
//!    (before the request is rewritten);
//! 2. with the `axum` feature, axum's own `OriginalUri` extension, which
//!    axum's `Router` inserts for every request;
//! 3. the request's URI.
//!
//! The key query parameter is read from the request's URI, which nesting
//! leaves as it was.

use http::{Extensions, Uri};

/// The URI the client sent, as a request extension: insert it where a
/// router will rewrite the request's URI later, and the layer judges and
/// logs `ClientUri`'s path instead of the rewritten one.
///
/// ```
/// use proxy_auth::{ClientUri, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
///
/// let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, "sk-1"))
///     .exempt_paths(["/v1/healthz"]);
/// // A router took "/v1" off the path, and kept the original in the extension.
/// let mut request = http::Request::get("/healthz").body(()).unwrap();
/// request.extensions_mut().insert(ClientUri("/v1/healthz".parse().unwrap()));
/// assert!(layer.check(&request).is_allowed());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientUri(pub Uri);

/// The path the client sent: see the module docs for the order.
pub(crate) fn client_path<'a>(extensions: &'a Extensions, uri: &'a Uri) -> &'a str {
    if let Some(ClientUri(uri)) = extensions.get::<ClientUri>() {
        return uri.path();
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(uri)) = extensions.get::<axum::extract::OriginalUri>() {
        return uri.path();
    }
    uri.path()
}
