//! Named keys: identity, rotation through the shared handle, expiry, and
//! keys held as digests.

use std::time::{Duration, SystemTime};

use http::{Request, StatusCode};
use proxy_auth::{
    key_digest, Allowed, Authenticated, Decision, KeyProblem, KeySet, KeySource, ProxyAuthLayer,
    ProxyAuthMode, ProxySecurityConfig, RejectReason, SharedSecurityConfig,
};

use crate::common::{self, get};

/// `GET /v1/chat/completions` with `headers` through `layer`, with the
/// identity extension on: the status, the reason and the identity the
/// inner service saw.
async fn send(
    layer: &ProxyAuthLayer,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, Option<Authenticated>) {
    let request = get("/v1/chat/completions", headers);
    let sent = common::send(layer.clone().insert_identity(true), request).await;
    let reason = sent.reason().map(str::to_owned);
    (sent.status, reason, sent.identity().cloned())
}

fn keys(entries: &[(&str, &str)]) -> KeySet {
    let mut set = KeySet::new();
    for (label, key) in entries {
        set.insert(*label, key).unwrap();
    }
    set
}

#[tokio::test]
async fn each_named_key_authenticates_with_its_label() {
    let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-default");
    let layer =
        ProxyAuthLayer::with_keys(config, keys(&[("alice", "sk-alice"), ("ci-bot", "sk-ci")]));

    let (status, _, identity) = send(&layer, &[("authorization", "Bearer sk-alice")]).await;
    assert_eq!(status, StatusCode::OK);
    let identity = identity.unwrap();
    assert_eq!(identity.source, KeySource::Authorization);
    assert_eq!(identity.label.as_deref(), Some("alice"));

    let (_, _, identity) = send(&layer, &[("x-goog-api-key", "sk-ci")]).await;
    assert_eq!(identity.unwrap().label.as_deref(), Some("ci-bot"));

    // The default key still works and has no label.
    let (status, _, identity) = send(&layer, &[("x-api-key", "sk-default")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(identity.unwrap().label, None);

    let (status, reason, _) = send(&layer, &[("x-api-key", "sk-nobody")]).await;
    assert_eq!(
        (status, reason.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("invalid_key"))
    );
}

#[tokio::test]
async fn check_reports_the_label() {
    let layer = ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-default"),
        keys(&[("alice", "sk-alice")]),
    );
    let request = Request::get("/")
        .header("x-api-key", "sk-alice")
        .body(())
        .unwrap();
    match layer.check(&request) {
        Decision::Allow(Allowed::Key(who)) => {
            assert_eq!(who.source, KeySource::XApiKey);
            assert_eq!(who.label.as_deref(), Some("alice"));
        }
        other => panic!("expected a named key, got {other:?}"),
    }
}

#[tokio::test]
async fn named_keys_work_without_a_default_key() {
    // An empty api_key with named keys: only the named keys open the door.
    let layer = ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, ""),
        keys(&[("alice", "sk-alice")]),
    );
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-alice")]).await.0,
        StatusCode::OK
    );
    for bad in ["", "sk-nobody"] {
        let (status, reason, _) = send(&layer, &[("x-api-key", bad)]).await;
        assert_eq!(
            (status, reason.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("invalid_key"))
        );
    }
    // Without any key at all, the empty-config rule still holds.
    let none = ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, ""),
        KeySet::new(),
    );
    assert_eq!(
        send(&none, &[("x-api-key", "x")]).await.1.as_deref(),
        Some("no_key_configured")
    );
}

#[tokio::test]
async fn rotation_through_the_shared_handle_has_no_gap() {
    let shared =
        SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"));
    let layer = ProxyAuthLayer::from_shared(shared.clone());
    shared
        .update_keys(|k| k.insert("ci-old", "sk-old"))
        .unwrap();
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-old")]).await.0,
        StatusCode::OK
    );

    // Overlap: both work.
    shared
        .update_keys(|k| k.insert("ci-new", "sk-new"))
        .unwrap();
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-old")]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-new")]).await.0,
        StatusCode::OK
    );

    // The old key's deadline passes: refused, and told why.
    shared
        .update_keys(|k| {
            k.insert_expiring(
                "ci-old",
                "sk-old",
                SystemTime::now() - Duration::from_secs(1),
            )
        })
        .unwrap();
    let request = Request::get("/")
        .header("x-api-key", "sk-old")
        .body(())
        .unwrap();
    match layer.check(&request) {
        Decision::Reject(r) => {
            assert_eq!(r.reason, RejectReason::InvalidKey);
            assert_eq!(r.problem, Some(KeyProblem::Expired));
        }
        other => panic!("an expired key must be refused, got {other:?}"),
    }
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-new")]).await.0,
        StatusCode::OK
    );

    // Removal.
    let mut removed = false;
    shared
        .update_keys(|k| {
            removed = k.remove("ci-new");
            Ok(())
        })
        .unwrap();
    assert!(removed);
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-new")]).await.1.as_deref(),
        Some("invalid_key")
    );
    // A key whose deadline is still ahead works until then.
    shared
        .update_keys(|k| {
            k.insert_expiring(
                "soon",
                "sk-soon",
                SystemTime::now() + Duration::from_secs(3600),
            )
        })
        .unwrap();
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-soon")]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn keys_at_rest_as_digests() {
    let digest = key_digest("sk-plain-never-written");
    // As the default key...
    let config: ProxySecurityConfig =
        serde_json::from_value(serde_json::json!({ "auth_mode": "strict", "api_key": digest }))
            .unwrap();
    let layer = ProxyAuthLayer::new(config);
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-plain-never-written")])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(&layer, &[("x-api-key", &digest)]).await.0,
        StatusCode::UNAUTHORIZED,
        "the digest is not the key"
    );

    // ...and in a key set loaded from config.
    let set: KeySet = serde_json::from_value(serde_json::json!([
        { "label": "alice", "key": key_digest("sk-alice") },
        { "label": "bob", "key": "sk-bob" },
    ]))
    .unwrap();
    let layer = ProxyAuthLayer::with_keys(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""), set);
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-alice")])
            .await
            .2
            .unwrap()
            .label
            .as_deref(),
        Some("alice")
    );
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-bob")])
            .await
            .2
            .unwrap()
            .label
            .as_deref(),
        Some("bob")
    );
}

#[tokio::test]
async fn a_large_key_set_matches_every_key() {
    let mut set = KeySet::new();
    for i in 0..10_000 {
        set.insert(format!("user-{i}"), &format!("sk-user-{i:05}"))
            .unwrap();
    }
    let layer = ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-default"),
        set,
    );
    for i in [0, 1, 4_999, 9_999] {
        let (status, _, identity) =
            send(&layer, &[("x-api-key", &format!("sk-user-{i:05}"))]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            identity.unwrap().label.as_deref(),
            Some(format!("user-{i}").as_str())
        );
    }
    assert_eq!(
        send(&layer, &[("x-api-key", "sk-user-10000")]).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_key_set_entry_equal_to_api_key_governs_it() {
    // The operator expired the entry: its expiry must apply even though
    // the same key is also the default api_key.
    let mut set = KeySet::new();
    set.insert_expiring(
        "legacy",
        "sk-shared",
        SystemTime::now() - Duration::from_secs(1),
    )
    .unwrap();
    let layer = ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-shared"),
        set,
    );
    let (status, reason, _) = send(&layer, &[("x-api-key", "sk-shared")]).await;
    assert_eq!(
        (status, reason.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("invalid_key"))
    );

    let layer = ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-shared"),
        keys(&[("legacy", "sk-shared")]),
    );
    let (status, _, identity) = send(&layer, &[("x-api-key", "sk-shared")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(identity.unwrap().label.as_deref(), Some("legacy"));
}

#[test]
fn debug_of_keys_and_handle_shows_labels_not_keys() {
    let shared = SharedSecurityConfig::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-default-secret"),
        keys(&[("alice", "sk-alice-secret")]),
    );
    let debug = format!("{shared:?} {:?}", shared.keys());
    assert!(debug.contains("alice"), "{debug}");
    assert!(!debug.contains("secret"), "{debug}");
}
