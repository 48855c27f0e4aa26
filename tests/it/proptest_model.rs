//! The fuzz target's property, as a proptest that runs with `cargo test`:
//! for arbitrary methods, URIs and header lists (duplicates, odd case,
//! obs-text, non-ASCII), under every mode, with and without named keys,
//! digest keys, query keys and credential stripping, the layer never panics,
//! and both `ProxyAuthLayer::check` and the served response (status, headers,
//! what the inner service saw) agree with the reference model in
//! `tests/it/model.rs`.

use http::{HeaderName, HeaderValue};
use proptest::prelude::*;
use proxy_auth::{ProxyAuthMode, ProxySecurityConfig};

use crate::model;
use crate::model::{NamedKey, Setup};

fn configured_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(model::CONFIGURED_KEYS.to_vec()).prop_map(str::to_owned),
        1 => "[ -~]{0,12}",
        1 => any::<String>(),
    ]
}

/// Bytes from the vocabulary (index) or raw.
#[derive(Clone, Debug)]
enum Pick {
    Known(u8),
    Raw(Vec<u8>),
}

fn pick(raw_len: usize) -> impl Strategy<Value = Pick> {
    prop_oneof![
        4 => any::<u8>().prop_map(Pick::Known),
        1 => proptest::collection::vec(any::<u8>(), 0..raw_len).prop_map(Pick::Raw),
    ]
}

fn render(pick: &Pick, known: impl Fn(u8) -> Vec<u8>) -> Vec<u8> {
    match pick {
        Pick::Known(i) => known(*i),
        Pick::Raw(bytes) => bytes.clone(),
    }
}

#[derive(Clone, Debug)]
struct Case {
    key: String,
    named: u8,
    exempt: u8,
    query_key: bool,
    strip: bool,
    target: u8,
    method: Pick,
    uri: Pick,
    headers: Vec<(Pick, u8, Pick)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        configured_key(),
        any::<u8>(),
        0..3u8,
        any::<bool>(),
        any::<bool>(),
        any::<u8>(),
        pick(10),
        pick(24),
        proptest::collection::vec((pick(16), any::<u8>(), pick(24)), 0..5),
    )
        .prop_map(
            |(key, named, exempt, query_key, strip, target, method, uri, headers)| Case {
                key,
                named,
                exempt,
                query_key,
                strip,
                target,
                method,
                uri,
                headers,
            },
        )
}

fn run(case: &Case) -> Result<usize, String> {
    let target = model::presentable(case.target, &case.key);
    let method = render(&case.method, |i| {
        model::METHODS[usize::from(i) % model::METHODS.len()]
            .as_bytes()
            .to_vec()
    });
    let uri = render(&case.uri, |i| model::uri(i, &target));
    let headers: Vec<(HeaderName, HeaderValue)> = case
        .headers
        .iter()
        .filter_map(|(name, key_choice, value)| {
            let name = render(name, |i| {
                model::HEADER_NAMES[usize::from(i) % model::HEADER_NAMES.len()]
                    .as_bytes()
                    .to_vec()
            });
            let key = model::presentable(*key_choice, &case.key);
            let value = render(value, |i| model::value(i, &key));
            Some((
                HeaderName::from_bytes(&name).ok()?,
                HeaderValue::from_bytes(&value).ok()?,
            ))
        })
        .collect();
    let mut checked = 0;
    for (mode, lan) in model::MODES {
        let Some(request) = model::build_request(&method, &uri, &headers) else {
            return Ok(checked);
        };
        let config = ProxySecurityConfig::new(mode, case.key.clone()).allow_lan_access(lan);
        let mut setup = Setup::new(config).with_keys(model::named_keys(case.named, &case.key));
        setup.exempt = match case.exempt {
            0 => None,
            1 => Some(vec!["/ready", "/healthz/", "/"]),
            _ => Some(vec![]),
        };
        setup.query_key = case.query_key;
        setup.strip = case.strip;
        model::check_against_model(&setup, request)?;
        checked += 1;
    }
    Ok(checked)
}

proptest! {
    // Failing cases are kept beside this file, in
    // `proptest_model.proptest-regressions`, and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn layer_agrees_with_the_model_under_every_mode(case in case()) {
        if let Err(disagreement) = run(&case) {
            prop_assert!(false, "{}", disagreement);
        }
    }
}

/// Most generated cases must reach the layer, or the property says little.
#[test]
fn most_cases_are_valid_requests() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let (mut valid, total) = (0, 500);
    for _ in 0..total {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        valid += usize::from(run(&case).unwrap() > 0);
    }
    assert!(
        valid * 2 > total,
        "only {valid} of {total} cases were valid requests"
    );
}

/// The property must be able to fail: a model that forgets one rule (that a
/// repeated header is refused, not read for its first value) is caught on a
/// plain example, while the real model passes it.
#[test]
fn a_wrong_model_is_caught() {
    fn first_value_model(
        setup: &Setup,
        method: &http::Method,
        uri: &http::Uri,
        headers: &[(HeaderName, HeaderValue)],
    ) -> model::Expected {
        let mut seen = Vec::new();
        let first_only: Vec<_> = headers
            .iter()
            .filter(|(name, _)| {
                let first = !seen.contains(name);
                seen.push(name.clone());
                first
            })
            .cloned()
            .collect();
        model::model(setup, method, uri, &first_only)
    }
    let setup = Setup::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-test"));
    let request = || {
        let key = (
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("sk-test"),
        );
        model::build_request(b"GET", b"/v1/models", &[key.clone(), key]).unwrap()
    };
    assert_eq!(
        model::check_against(model::model, &setup, request()),
        Ok(())
    );
    let caught = model::check_against(first_value_model, &setup, request());
    assert!(
        caught.as_ref().is_err_and(|e| e.contains("Duplicate")),
        "{caught:?}"
    );
}

/// And the response side is checked too: a named key that the model does
/// not know about makes the layer's answer differ from the model's.
#[test]
fn a_model_missing_a_named_key_is_caught() {
    fn no_named_keys(
        setup: &Setup,
        method: &http::Method,
        uri: &http::Uri,
        headers: &[(HeaderName, HeaderValue)],
    ) -> model::Expected {
        let mut without = setup.clone();
        without.keys.clear();
        model::model(&without, method, uri, headers)
    }
    let setup = Setup::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-test")).with_keys([
        NamedKey {
            label: "alice",
            key: "sk-alice".into(),
            expired: false,
        },
    ]);
    let request = model::build_request(
        b"GET",
        b"/v1",
        &[(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer sk-alice"),
        )],
    )
    .unwrap();
    let caught = model::check_against(no_named_keys, &setup, request);
    assert!(caught.is_err(), "{caught:?}");
}
