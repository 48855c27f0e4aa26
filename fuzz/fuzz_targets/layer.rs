//! Fuzzes the whole layer: builds a request from arbitrary method, URI and
//! header bytes (duplicates, odd case, obs-text and non-ASCII included), runs
//! it through `ProxyAuthLayer` under every mode, with and without named keys,
//! digest keys, query keys and credential stripping, and checks that the
//! layer neither panics nor disagrees with the reference model in
//! `tests/it/model.rs` (shared with the proptest in
//! `tests/it/proptest_model.rs`).
//!
//! Run: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run layer -- -max_total_time=600`
//! (see the README's Security section).

#![no_main]

use http::{HeaderName, HeaderValue};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use proxy_auth::ProxySecurityConfig;

#[path = "../../tests/it/model.rs"]
mod model;

use model::Setup;

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

/// One of the vocabulary's entries (mostly) or raw bytes.
fn pick(u: &mut Unstructured<'_>, known: impl Fn(u8) -> Vec<u8>) -> Result<Vec<u8>> {
    Ok(if u.ratio(4, 5)? {
        known(u.arbitrary()?)
    } else {
        u.arbitrary::<&[u8]>()?.to_vec()
    })
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let configured: String = if u.ratio(4, 5)? {
        model::CONFIGURED_KEYS[u.choose_index(model::CONFIGURED_KEYS.len())?].to_owned()
    } else {
        u.arbitrary()?
    };
    let named = model::named_keys(u.arbitrary()?, &configured);
    let exempt = match u.int_in_range(0..=2u8)? {
        0 => None,
        1 => Some(vec!["/ready", "/healthz/", "/"]),
        _ => Some(vec![]),
    };
    let (query_key, strip) = (u.arbitrary()?, u.arbitrary()?);
    let target = model::presentable(u.arbitrary()?, &configured);
    let method = pick(u, |i| {
        model::METHODS[usize::from(i) % model::METHODS.len()]
            .as_bytes()
            .to_vec()
    })?;
    let uri = pick(u, |i| model::uri(i, &target))?;
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=6u8)? {
        let name = pick(u, |i| {
            model::HEADER_NAMES[usize::from(i) % model::HEADER_NAMES.len()]
                .as_bytes()
                .to_vec()
        })?;
        let key = model::presentable(u.arbitrary()?, &configured);
        let value = pick(u, |i| model::value(i, &key))?;
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&name),
            HeaderValue::from_bytes(&value),
        ) {
            headers.push((name, value));
        }
    }
    for (mode, lan) in model::MODES {
        // Requests `http` cannot represent never reach a layer.
        let Some(request) = model::build_request(&method, &uri, &headers) else {
            return Ok(());
        };
        let config = ProxySecurityConfig::new(mode, configured.clone()).allow_lan_access(lan);
        let mut setup = Setup::new(config).with_keys(named.clone());
        setup.exempt = exempt.clone();
        setup.query_key = query_key;
        setup.strip = strip;
        if let Err(disagreement) = model::check_against_model(&setup, request) {
            panic!("{disagreement}");
        }
    }
    Ok(())
}
