//! Per-key scopes: which models, routes and client networks a named key
//! may use. A scope can only narrow what a key may do, and a request the
//! check cannot be sure of is refused with a reason, never passed.
//!
//! - **routes**: path prefixes matched on `/` boundaries against the path
//!   the client sent ([`ClientUri`](crate::ClientUri)); a path that an
//!   upstream could resolve or split otherwise ([`check_path`]) is refused.
//!   Preflights and exempt paths are not affected (they need no key).
//! - **allowed_ips**: CIDR blocks the request must come from: the
//!   connection's address ([`ClientAddr`], or axum's `ConnectInfo` with the
//!   `axum` feature), or, when that is a trusted proxy
//!   ([`trusted_proxies`](crate::ProxyAuthLayer::trusted_proxies)), the
//!   rightmost untrusted hop of `X-Forwarded-For` / `Forwarded`. A request
//!   with no known address is refused.
//! - **models**: exact names or prefixes ending in `*`. The model is read
//!   from a Gemini or Vertex AI path (`.../models/{model}:{method}`); when
//!   the path names none, from the `model` query parameter and the request
//!   body's top-level `model` (every one present must be allowed). The
//!   body is read by a layer built with
//!   [`read_model_bodies`](crate::ProxyAuthLayer::read_model_bodies); a
//!   layer that does not read bodies refuses a request of such a key whose
//!   model could be in its body. A request that names no model (`GET
//!   /v1/models`) is a matter for routes.

pub(crate) mod judge;
pub(crate) mod model;
pub(crate) mod net;
pub(crate) mod path;

use std::sync::Arc;

pub use net::{ClientAddr, IpNet, IpNetError};
pub use path::{check_path, PathProblem};

use model::ModelPattern;
use path::Route;

/// A key's scopes; `None` is no restriction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) models: Option<Box<[ModelPattern]>>,
    pub(crate) routes: Option<Box<[Route]>>,
    pub(crate) allowed_ips: Option<Box<[IpNet]>>,
}

/// A key's scopes as written, before they are checked.
#[derive(Clone, Debug, Default)]
pub(crate) struct ScopeText {
    pub(crate) models: Option<Vec<String>>,
    pub(crate) routes: Option<Vec<String>>,
    pub(crate) allowed_ips: Option<Vec<String>>,
}

impl ScopeText {
    /// The scopes, or what is wrong with them: an empty list (which would
    /// let nothing through, and is never what was meant), a `*` inside a
    /// model pattern, a route without a leading `/`, a bad CIDR block.
    pub(crate) fn parse(&self) -> Result<Scope, String> {
        Ok(Scope {
            models: list("models", &self.models, ModelPattern::parse)?,
            routes: list("routes", &self.routes, Route::parse)?,
            allowed_ips: list("allowed_ips", &self.allowed_ips, IpNet::parse)?,
        })
    }
}

fn list<T>(
    what: &str,
    items: &Option<Vec<String>>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<Box<[T]>>, String> {
    let Some(items) = items else { return Ok(None) };
    if items.is_empty() {
        return Err(format!(
            "{what} is an empty list, which would refuse every request; leave it out for no restriction"
        ));
    }
    items
        .iter()
        .map(|item| parse(item))
        .collect::<Result<Box<[T]>, _>>()
        .map(Some)
}

impl Scope {
    pub(crate) fn is_unrestricted(&self) -> bool {
        self.models.is_none() && self.routes.is_none() && self.allowed_ips.is_none()
    }

    pub(crate) fn model_texts(&self) -> Option<Vec<&str>> {
        Some(
            self.models
                .as_ref()?
                .iter()
                .map(ModelPattern::as_str)
                .collect(),
        )
    }

    pub(crate) fn route_texts(&self) -> Option<Vec<&str>> {
        Some(self.routes.as_ref()?.iter().map(Route::as_str).collect())
    }

    pub(crate) fn ip_texts(&self) -> Option<Vec<String>> {
        Some(
            self.allowed_ips
                .as_ref()?
                .iter()
                .map(ToString::to_string)
                .collect(),
        )
    }

    pub(crate) fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|models| models.iter().any(|p| p.allows(model)))
    }
}

/// The layer's trusted proxies, shared by its clones.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trusted(pub(crate) Arc<[IpNet]>);
