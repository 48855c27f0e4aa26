//! Key material is wiped before its memory is returned: the binary's global
//! allocator (see `main.rs`), while armed, searches every block being freed
//! for the configured keys and their SHA-256 digests.
//!
//! Everything the test itself hands the crate is static (header values,
//! URIs, the JSON it parses), so a key found in a freed block is a copy the
//! crate made and did not wipe: the configured key's buffer, a config an
//! update replaced, a `load()` copy, a key set's digests after its maps
//! grew, the file a reload read. A control (a plain `String` with the key,
//! dropped) proves the search finds what is there.

#![cfg(all(feature = "serde", feature = "key-set"))]

use std::convert::Infallible;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use proxy_auth::{
    KeySet, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig,
};
use tower::{service_fn, Layer, ServiceExt};

use crate::{arm, found, look_for};

/// The keys, as literals so requests can carry them in static memory.
macro_rules! key {
    () => {
        "sk-zeroize-first-0123456789abcdef012"
    };
}
macro_rules! rotated {
    () => {
        "sk-zeroize-rotated-0123456789abcdef0"
    };
}
macro_rules! named {
    () => {
        "sk-zeroize-named-0123456789abcdef012"
    };
}
const KEY: &str = key!();
const ROTATED: &str = rotated!();
const NAMED: &str = named!();
const DIGESTED: &str = "sk-zeroize-digested-0123456789abcdef";

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The raw 32-byte digest and the `sha256:<hex>` text of `key`, leaked so
/// they can be needles.
fn digests_of(key: &str) -> (&'static [u8], &'static str) {
    let text: &'static str = proxy_auth::key_digest(key).leak();
    let raw: &'static [u8] = hex_to_bytes(&text["sha256:".len()..]).leak();
    (raw, text)
}

fn request(method: Method, uri: &'static str, header: Option<(&str, &'static str)>) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = Uri::from_static(uri);
    if let Some((name, value)) = header {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static(value),
        );
    }
    request
}

async fn status(layer: &ProxyAuthLayer, request: Request<()>) -> StatusCode {
    let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    layer.layer(inner).oneshot(request).await.unwrap().status()
}

/// Requests that take every path: accepted through each header and the
/// query, stripped and identified, refused for a wrong, missing or
/// repeated key, preflight.
async fn exercise(layer: &ProxyAuthLayer, bearer: &'static str, bare: &'static str) {
    let ok = [
        request(Method::POST, "/v1", Some(("authorization", bearer))),
        request(Method::POST, "/v1", Some(("x-api-key", bare))),
        request(Method::POST, "/v1", Some(("x-goog-api-key", bare))),
    ];
    for r in ok {
        assert_eq!(status(layer, r).await, StatusCode::OK);
    }
    let refused = [
        request(Method::POST, "/v1", None),
        request(Method::POST, "/v1", Some(("x-api-key", "sk-wrong"))),
        request(Method::POST, "/v1", Some(("authorization", "Bearer"))),
    ];
    for r in refused {
        assert_eq!(status(layer, r).await, StatusCode::UNAUTHORIZED);
    }
    let preflight = request(Method::OPTIONS, "/v1", None);
    assert_eq!(status(layer, preflight).await, StatusCode::OK);
    let checked = request(Method::POST, "/v1", Some(("x-api-key", bare)));
    assert!(format!("{:?}", layer.check(&checked)).contains("Allow"));
}

#[tokio::test(flavor = "current_thread")]
async fn key_material_is_wiped_before_its_memory_is_freed() {
    let (named_raw, named_text) = digests_of(NAMED);
    let (digested_raw, digested_text) = digests_of(DIGESTED);
    let (key_raw, _) = digests_of(KEY);
    let names = look_for(&[
        ("the configured key", KEY.as_bytes()),
        ("the rotated key", ROTATED.as_bytes()),
        ("a named key", NAMED.as_bytes()),
        ("a named key's digest", named_raw),
        ("a named key's digest text", named_text.as_bytes()),
        ("a configured digest", digested_raw),
        ("a configured digest's text", digested_text.as_bytes()),
        ("the configured key's digest", key_raw),
    ]);
    arm(true);

    // The control: an ordinary String holding the key is found when freed.
    drop(String::from(KEY));
    let control = found();
    assert_eq!(control[0], 1, "the search must find an unwiped key");

    // A layer with a plaintext key, its clones, every request path.
    let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY))
        .insert_identity(true)
        .strip_credentials(true)
        .query_key(true);
    exercise(&layer, concat!("Bearer ", key!()), KEY).await;
    let query = request(Method::POST, concat!("/v1?alt=sse&key=", key!()), None);
    assert_eq!(status(&layer, query).await, StatusCode::OK);
    drop(layer.clone());
    drop(layer);

    // Hot reload: the replaced config, the copies handed out and edited.
    let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY));
    let layer = ProxyAuthLayer::from_shared(shared.clone());
    exercise(&layer, concat!("Bearer ", key!()), KEY).await;
    drop(shared.load());
    shared
        .update(|config| config.api_key = ROTATED.into())
        .unwrap();
    exercise(&layer, concat!("Bearer ", rotated!()), ROTATED).await;
    shared
        .store(ProxySecurityConfig::new(
            ProxyAuthMode::Strict,
            proxy_auth::key_digest(DIGESTED),
        ))
        .unwrap();
    assert_eq!(
        status(
            &layer,
            request(Method::POST, "/v1", Some(("x-api-key", DIGESTED)))
        )
        .await,
        StatusCode::OK
    );

    // A key set that grows (its maps reallocate), is cloned, written out and
    // read back, and loses the key again.
    let mut keys = KeySet::new();
    keys.insert("named", NAMED).unwrap();
    for i in 0..200 {
        keys.insert(format!("other-{i}"), &format!("sk-other-{i:04}"))
            .unwrap();
    }
    shared.store_keys(keys.clone());
    exercise(&layer, concat!("Bearer ", named!()), NAMED).await;
    let mut json = zeroize::Zeroizing::new(Vec::with_capacity(64 * 1024));
    serde_json::to_writer(&mut *json, &keys).unwrap();
    let again: KeySet = serde_json::from_slice(&json).unwrap();
    drop(json);
    drop(again);
    drop(keys);
    shared
        .update_keys(|keys| {
            keys.remove("named");
            Ok(())
        })
        .unwrap();
    drop(shared.keys());
    drop(layer);
    drop(shared);

    // A config read from JSON text.
    let parsed: ProxySecurityConfig = serde_json::from_str(concat!(
        r#"{"auth_mode":"strict","api_key":""#,
        key!(),
        r#""}"#
    ))
    .unwrap();
    drop(format!("{parsed:?}"));
    drop(parsed);

    #[cfg(feature = "watch")]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let content = concat!(
            r#"{"auth_mode":"strict","api_key":""#,
            key!(),
            r#"","keys":[{"label":"n","key":""#,
            named!(),
            r#""}]}"#
        );
        std::fs::write(&path, content).unwrap();
        let (config, keys) = proxy_auth::watch::load_file(&path).unwrap();
        drop(ProxyAuthLayer::with_keys(config, keys));
        drop(dir);
    }

    arm(false);
    let left: Vec<String> = found()
        .into_iter()
        .zip(&names)
        .filter(|(count, _)| *count > 0)
        .map(|(count, name)| format!("{name}: in {count} freed block(s)"))
        .collect();
    assert!(
        left.is_empty(),
        "key material freed without being wiped: {left:?}"
    );
}
