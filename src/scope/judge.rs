//! Applies a matched key's scopes to a request.

use std::sync::Arc;

use http::Request;

use super::model::{in_path, in_query, Named};
use super::net::{origin, Origin};
use super::path::Facts;
use super::{PathProblem, Scope};
use crate::client_uri::client_path;
use crate::RejectReason;

/// What a key's scopes say of a request, as far as its head shows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Judged {
    /// In scope; the model the request names, if the key has models and it
    /// names one.
    Pass { model: Option<Arc<str>> },
    /// In scope so far, but the key has models and the path names none:
    /// the body's model (if the request has a body) must be allowed too.
    /// The query's model, if any, is allowed.
    ReadBody { model: Option<Arc<str>> },
    /// Out of scope, or not certain to be in it.
    Refuse(Refusal),
}

/// A scope's refusal: why, what, and how sure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: RejectReason,
    pub(crate) detail: Option<Arc<str>>,
    pub(crate) note: Option<&'static str>,
}

impl Refusal {
    pub(crate) fn new(
        reason: RejectReason,
        detail: Option<&str>,
        note: Option<&'static str>,
    ) -> Self {
        Refusal {
            reason,
            detail: detail.map(Arc::from),
            note,
        }
    }
}

const NO_ADDRESS: &str = "the server does not pass the connection's address to the layer (insert proxy_auth::ClientAddr per connection, or serve axum with into_make_service_with_connect_info)";

/// Client network first (it needs nothing from the request's content),
/// then the route, then the model of the path and the query.
pub(crate) fn judge<B>(
    scope: &Scope,
    request: &Request<B>,
    trusted: &[super::net::IpNet],
    keep_model: bool,
) -> Judged {
    if let Some(nets) = &scope.allowed_ips {
        let refusal = match origin(request.extensions(), request.headers(), trusted) {
            Origin::Known(ip) if nets.iter().any(|net| net.contains(ip)) => None,
            Origin::Known(ip) => Some(Refusal::new(
                RejectReason::IpNotAllowed,
                Some(&ip.to_string()),
                None,
            )),
            Origin::NoConnection => Some(Refusal::new(
                RejectReason::IpNotAllowed,
                None,
                Some(NO_ADDRESS),
            )),
            Origin::Unreadable(why) => {
                Some(Refusal::new(RejectReason::IpNotAllowed, None, Some(why)))
            }
        };
        if let Some(refusal) = refusal {
            return Judged::Refuse(refusal);
        }
    }
    let path = client_path(request.extensions(), request.uri());
    if scope.routes.is_none() && scope.models.is_none() {
        return Judged::Pass { model: None };
    }
    let facts = Facts::of(path);
    // A path an upstream could resolve, decode or collapse into another
    // can be matched against neither routes nor models.
    let unclean = facts.check(path).err().map(|problem| match problem {
        PathProblem::DotSegment => "the path has a `.` or `..` segment (as sent or percent-encoded), which an upstream may resolve to another path",
        PathProblem::EncodedSeparator => "the path has an encoded `/` or `\\`, which an upstream may decode into another segment",
    });
    if let Some(routes) = &scope.routes {
        if let Some(note) = unclean {
            return Judged::Refuse(Refusal::new(
                RejectReason::RouteNotAllowed,
                Some(path),
                Some(note),
            ));
        }
        if !routes.iter().any(|route| route.allows(path)) {
            return Judged::Refuse(Refusal::new(
                RejectReason::RouteNotAllowed,
                Some(path),
                None,
            ));
        }
    }
    if scope.models.is_none() {
        return Judged::Pass { model: None };
    }
    let unclean = unclean.or(facts
        .empty_segment
        .then_some("the path has an empty segment (`//`), which an upstream may collapse"));
    if let Some(note) = unclean {
        return Judged::Refuse(Refusal::new(
            RejectReason::ModelUnreadable,
            None,
            Some(note),
        ));
    }
    // The model is kept for the identity only when the layer hands it on:
    // a check that passes allocates nothing otherwise.
    let check = |model: std::borrow::Cow<'_, str>| -> Result<Option<Arc<str>>, Judged> {
        if scope.allows_model(&model) {
            Ok(keep_model.then(|| Arc::from(&*model)))
        } else {
            Err(Judged::Refuse(Refusal::new(
                RejectReason::ModelNotAllowed,
                Some(&model),
                None,
            )))
        }
    };
    // A path that names the model is what the upstream serves; a body
    // model beside it is not read by Gemini, Vertex AI, Azure or Bedrock.
    match in_path(path) {
        Named::Model(model) => {
            return check(model).map_or_else(|refused| refused, |model| Judged::Pass { model })
        }
        Named::Unreadable(why) => {
            return Judged::Refuse(Refusal::new(RejectReason::ModelUnreadable, None, Some(why)))
        }
        Named::None => {}
    }
    match in_query(request.uri().query()) {
        Named::Model(model) => {
            check(model).map_or_else(|refused| refused, |model| Judged::ReadBody { model })
        }
        Named::Unreadable(why) => {
            Judged::Refuse(Refusal::new(RejectReason::ModelUnreadable, None, Some(why)))
        }
        Named::None => Judged::ReadBody { model: None },
    }
}
