//! Hostile and odd requests, each with the answer the layer must give.
//!
//! Every row goes through the real service (status, `x-proxy-auth-error`,
//! `WWW-Authenticate`, whether the inner service ran) and through
//! `ProxyAuthLayer::check` (which header was read and what was wrong with
//! it). The decisions tested here are listed in CHANGELOG.md.

use http::{HeaderName, HeaderValue, Method, Request, Uri};
use proxy_auth::{
    Allowed, Decision, KeyProblem, KeySource, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig,
    RejectReason,
};

use KeyProblem::{Duplicate, Empty, NotAscii};
use KeySource::{Authorization as Auth, QueryKey, XApiKey, XGoogApiKey};
use ProxyAuthMode::{AllExceptHealth as Aeh, Off, Strict};

use crate::model;

const KEY: &str = "sk-test-0123456789";

/// The answer a row expects.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Want {
    /// 200 from the inner service, authenticated by this header.
    Ok(KeySource),
    /// 200 from the inner service, no key needed.
    Pass(Allowed),
    /// 401 for a key that was wrong (compared, no problem).
    Wrong(KeySource),
    /// 401 for a key that could not be compared.
    Bad(KeySource, KeyProblem),
    /// 401, no key header.
    Missing,
    /// 401, auth on and no key configured.
    NoKey,
}

struct Row {
    what: &'static str,
    mode: ProxyAuthMode,
    configured: &'static str,
    method: &'static str,
    uri: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    /// Whether the layer reads `?key=` (off by default).
    query_key: bool,
    want: Want,
}

fn row(
    what: &'static str,
    mode: ProxyAuthMode,
    method: &'static str,
    uri: &'static str,
    headers: &[(&'static str, &[u8])],
    want: Want,
) -> Row {
    Row {
        what,
        mode,
        configured: KEY,
        method,
        uri,
        headers: headers.iter().map(|(n, v)| (*n, v.to_vec())).collect(),
        query_key: false,
        want,
    }
}

fn bearer(key: &str) -> Vec<u8> {
    format!("Bearer {key}").into_bytes()
}

// One row a line reads as a table; rustfmt would spread each over ten.
#[rustfmt::skip]
fn table() -> Vec<Row> {
    let k = KEY.as_bytes();
    let big = vec![b'a'; 64 * 1024];
    let big_bearer = [b"Bearer ".as_slice(), &big].concat();
    let right = bearer(KEY);
    let wrong = bearer("sk-test-0123456780");
    let mut rows = vec![
        // Baselines.
        row("right bearer key", Strict, "GET", "/v1/models", &[("authorization", &right)], Want::Ok(Auth)),
        row("right x-api-key", Strict, "GET", "/v1/models", &[("x-api-key", k)], Want::Ok(XApiKey)),
        row("right x-goog-api-key", Strict, "GET", "/v1/models", &[("x-goog-api-key", k)], Want::Ok(XGoogApiKey)),
        row("no key", Strict, "GET", "/v1/models", &[], Want::Missing),
        row("wrong last byte", Strict, "GET", "/v1/models", &[("authorization", &wrong)], Want::Wrong(Auth)),
        row("prefix of the key", Strict, "GET", "/v1/models", &[("x-api-key", &k[..k.len() - 1])], Want::Wrong(XApiKey)),
        row("key plus one byte", Strict, "GET", "/v1/models", &[("x-api-key", format!("{KEY}0").as_bytes())], Want::Wrong(XApiKey)),
        // Empty values.
        row("empty authorization", Strict, "GET", "/v1", &[("authorization", b"")], Want::Bad(Auth, Empty)),
        row("empty x-api-key", Strict, "GET", "/v1", &[("x-api-key", b"")], Want::Bad(XApiKey, Empty)),
        row("empty x-goog-api-key", Strict, "GET", "/v1", &[("x-goog-api-key", b"")], Want::Bad(XGoogApiKey, Empty)),
        row("`Bearer ` and nothing", Strict, "GET", "/v1", &[("authorization", b"Bearer ")], Want::Bad(Auth, Empty)),
        row("bare `Bearer` (a parser trimmed the space) is an empty key", Strict, "GET", "/v1", &[("authorization", b"Bearer")], Want::Bad(Auth, Empty)),
        row("bare lowercase `bearer` is an empty key", Strict, "GET", "/v1", &[("authorization", b"bearer")], Want::Bad(Auth, Empty)),
        row("`Bearerx` is a key, and wrong", Strict, "GET", "/v1", &[("authorization", b"Bearerx")], Want::Bad(Auth, KeyProblem::MalformedBearer)),
        row("empty authorization does not fall through to a right x-api-key", Strict, "GET", "/v1", &[("authorization", b""), ("x-api-key", k)], Want::Bad(Auth, Empty)),
        // Surrounding spaces and tabs are not part of a field value (RFC 9110
        // §5.5): HTTP/1 parsers drop them and HTTP/2 delivers them, so the
        // layer trims them and both protocols give the same verdict.
        row("space before x-api-key", Strict, "GET", "/v1", &[("x-api-key", format!(" {KEY}").as_bytes())], Want::Ok(XApiKey)),
        row("space after x-api-key", Strict, "GET", "/v1", &[("x-api-key", format!("{KEY} ").as_bytes())], Want::Ok(XApiKey)),
        row("two spaces after x-api-key", Strict, "GET", "/v1", &[("x-api-key", format!("{KEY}  ").as_bytes())], Want::Ok(XApiKey)),
        row("tab after x-api-key", Strict, "GET", "/v1", &[("x-api-key", format!("{KEY}\t").as_bytes())], Want::Ok(XApiKey)),
        row("space after bearer key", Strict, "GET", "/v1", &[("authorization", format!("Bearer {KEY} ").as_bytes())], Want::Ok(Auth)),
        row("space before Bearer", Strict, "GET", "/v1", &[("authorization", format!(" Bearer {KEY}").as_bytes())], Want::Ok(Auth)),
        row("only spaces in x-goog-api-key", Strict, "GET", "/v1", &[("x-goog-api-key", b"   ")], Want::Bad(XGoogApiKey, Empty)),
        // Bearer variants.
        row("lowercase bearer", Strict, "GET", "/v1", &[("authorization", format!("bearer {KEY}").as_bytes())], Want::Ok(Auth)),
        row("uppercase BEARER", Strict, "GET", "/v1", &[("authorization", format!("BEARER {KEY}").as_bytes())], Want::Ok(Auth)),
        row("mixed-case bEaReR", Strict, "GET", "/v1", &[("authorization", format!("bEaReR {KEY}").as_bytes())], Want::Ok(Auth)),
        row("Bearer with two spaces", Strict, "GET", "/v1", &[("authorization", format!("Bearer  {KEY}").as_bytes())], Want::Bad(Auth, KeyProblem::MalformedBearer)),
        row("Bearer with a tab", Strict, "GET", "/v1", &[("authorization", format!("Bearer\t{KEY}").as_bytes())], Want::Bad(Auth, KeyProblem::MalformedBearer)),
        row("Bearer twice", Strict, "GET", "/v1", &[("authorization", format!("Bearer Bearer {KEY}").as_bytes())], Want::Wrong(Auth)),
        row("Bearer glued to the key", Strict, "GET", "/v1", &[("authorization", format!("Bearer{KEY}").as_bytes())], Want::Bad(Auth, KeyProblem::MalformedBearer)),
        row("bare key in authorization", Strict, "GET", "/v1", &[("authorization", k)], Want::Ok(Auth)),
        row("Basic scheme", Strict, "GET", "/v1", &[("authorization", format!("Basic {KEY}").as_bytes())], Want::Bad(Auth, KeyProblem::OtherScheme)),
        row("Basic base64 user:key", Strict, "GET", "/v1", &[("authorization", b"Basic dXNlcjpzay10ZXN0LTAxMjM0NTY3ODk=")], Want::Bad(Auth, KeyProblem::OtherScheme)),
        row("Bearer in x-api-key is not stripped", Strict, "GET", "/v1", &[("x-api-key", &right)], Want::Wrong(XApiKey)),
        // Non-ASCII, obs-text, control bytes: refused, never skipped.
        row("UTF-8 key", Strict, "GET", "/v1", &[("x-api-key", "sk-тест".as_bytes())], Want::Bad(XApiKey, NotAscii)),
        row("obs-text byte 0x80", Strict, "GET", "/v1", &[("x-api-key", &[k, b"\x80"].concat())], Want::Bad(XApiKey, NotAscii)),
        row("obs-text byte 0xff in bearer", Strict, "GET", "/v1", &[("authorization", &[&right[..], b"\xff"].concat())], Want::Bad(Auth, NotAscii)),
        row("Latin-1 in the scheme", Strict, "GET", "/v1", &[("authorization", b"B\xe9arer x")], Want::Bad(Auth, NotAscii)),
        row("non-ASCII authorization does not fall through to a right x-api-key", Strict, "GET", "/v1", &[("authorization", "ключ".as_bytes()), ("x-api-key", k)], Want::Bad(Auth, NotAscii)),
        row("tab inside is visible ASCII for the check, and wrong", Strict, "GET", "/v1", &[("x-api-key", b"sk-\ttest")], Want::Wrong(XApiKey)),
        // Huge values.
        row("64 KiB x-api-key", Strict, "GET", "/v1", &[("x-api-key", &big)], Want::Wrong(XApiKey)),
        row("64 KiB bearer", Strict, "GET", "/v1", &[("authorization", &big_bearer)], Want::Wrong(Auth)),
        row("64 KiB of obs-text", Strict, "GET", "/v1", &[("x-goog-api-key", &vec![0xa0; 64 * 1024])], Want::Bad(XGoogApiKey, NotAscii)),
        // Repetition: refused, whatever order the right and wrong values come in.
        row("authorization twice, right first", Strict, "GET", "/v1", &[("authorization", &right), ("authorization", &wrong)], Want::Bad(Auth, Duplicate)),
        row("authorization twice, right second", Strict, "GET", "/v1", &[("authorization", &wrong), ("authorization", &right)], Want::Bad(Auth, Duplicate)),
        row("authorization twice, both right", Strict, "GET", "/v1", &[("authorization", &right), ("authorization", &right)], Want::Bad(Auth, Duplicate)),
        row("authorization twice, differently cased names", Strict, "GET", "/v1", &[("Authorization", &right), ("AUTHORIZATION", &right)], Want::Bad(Auth, Duplicate)),
        row("x-api-key twice", Strict, "GET", "/v1", &[("x-api-key", k), ("x-api-key", k)], Want::Bad(XApiKey, Duplicate)),
        row("x-goog-api-key three times", Strict, "GET", "/v1", &[("x-goog-api-key", k), ("x-goog-api-key", b"x"), ("x-goog-api-key", k)], Want::Bad(XGoogApiKey, Duplicate)),
        row("repeated later header is never read", Strict, "GET", "/v1", &[("authorization", &right), ("x-api-key", b"a"), ("x-api-key", b"b")], Want::Ok(Auth)),
        row("wrong authorization beats a right x-api-key", Strict, "GET", "/v1", &[("x-api-key", k), ("authorization", &wrong)], Want::Wrong(Auth)),
        row("wrong x-api-key beats a right x-goog-api-key", Strict, "GET", "/v1", &[("x-goog-api-key", k), ("x-api-key", b"nope")], Want::Wrong(XApiKey)),
        // Proxy-Authorization is addressed to a proxy, never read as a key.
        row("right key in proxy-authorization is not a key", Strict, "GET", "/v1", &[("proxy-authorization", &right)], Want::Missing),
        row("bare right key in proxy-authorization is not a key", Strict, "GET", "/v1", &[("proxy-authorization", k)], Want::Missing),
        row("wrong proxy-authorization does not spoil a right x-api-key", Strict, "GET", "/v1", &[("proxy-authorization", &wrong), ("x-api-key", k)], Want::Ok(XApiKey)),
        // Paths in all_except_health: exact match on the path only.
        row("/healthz exempt", Aeh, "GET", "/healthz", &[], Want::Pass(Allowed::ExemptPath)),
        row("/healthz exempt with a wrong key", Aeh, "GET", "/healthz", &[("authorization", &wrong)], Want::Pass(Allowed::ExemptPath)),
        row("/healthz?x=1 exempt (query ignored)", Aeh, "GET", "/healthz?x=1", &[], Want::Pass(Allowed::ExemptPath)),
        row("absolute-form http://h/healthz exempt", Aeh, "GET", "http://h/healthz", &[], Want::Pass(Allowed::ExemptPath)),
        row("absolute-form with port and query exempt", Aeh, "GET", "https://h:8443/healthz?probe=1", &[], Want::Pass(Allowed::ExemptPath)),
        row("HEAD /healthz exempt", Aeh, "HEAD", "/healthz", &[], Want::Pass(Allowed::ExemptPath)),
        row("POST /healthz exempt", Aeh, "POST", "/healthz", &[], Want::Pass(Allowed::ExemptPath)),
        row("/healthz/ needs the key", Aeh, "GET", "/healthz/", &[], Want::Missing),
        row("//healthz needs the key", Aeh, "GET", "//healthz", &[], Want::Missing),
        row("/HEALTHZ needs the key", Aeh, "GET", "/HEALTHZ", &[], Want::Missing),
        row("/%68ealthz needs the key", Aeh, "GET", "/%68ealthz", &[], Want::Missing),
        row("/healthz/.. needs the key", Aeh, "GET", "/healthz/..", &[], Want::Missing),
        row("/./healthz needs the key", Aeh, "GET", "/./healthz", &[], Want::Missing),
        row("/healthz%3Fx needs the key", Aeh, "GET", "/healthz%3Fx", &[], Want::Missing),
        row("/healthz#frag exempt (http drops the fragment)", Aeh, "GET", "/healthz#frag", &[], Want::Pass(Allowed::ExemptPath)),
        row("/healthz;x (path parameter) needs the key", Aeh, "GET", "/healthz;x", &[], Want::Missing),
        // Dot segments and separators an upstream may decode (issue 18): none
        // is the exempt path, so each needs the key.
        row("/healthz/..%2fv1/models needs the key", Aeh, "GET", "/healthz/..%2fv1/models", &[], Want::Missing),
        row("/healthz/%2e%2e%2fv1 needs the key", Aeh, "GET", "/healthz/%2e%2e%2fv1", &[], Want::Missing),
        row("/healthz/..;/v1 needs the key", Aeh, "GET", "/healthz/..;/v1", &[], Want::Missing),
        row("/healthz\\..\\v1 needs the key", Aeh, "GET", "/healthz\\..\\v1", &[], Want::Missing),
        row("/healthz/..%5cv1 needs the key", Aeh, "GET", "/healthz/..%5cv1", &[], Want::Missing),
        row("/healthz/%252e%252e/v1 needs the key", Aeh, "GET", "/healthz/%252e%252e/v1", &[], Want::Missing),
        row("/v1/%252e%252e/healthz needs the key", Aeh, "GET", "/v1/%252e%252e/healthz", &[], Want::Missing),
        row("/healthz%2f needs the key", Aeh, "GET", "/healthz%2f", &[], Want::Missing),
        row("absolute-form other path needs the key", Aeh, "GET", "http://h/v1/models", &[], Want::Missing),
        row("absolute-form with right key", Aeh, "GET", "http://healthz/v1", &[("x-api-key", k)], Want::Ok(XApiKey)),
        row("authority-form CONNECT needs the key", Aeh, "CONNECT", "h:443", &[], Want::Missing),
        row("strict: /healthz needs the key", Strict, "GET", "/healthz", &[], Want::Missing),
        row("strict: absolute-form /healthz needs the key", Strict, "GET", "http://h/healthz", &[], Want::Missing),
        // Methods.
        row("OPTIONS passes without a key", Strict, "OPTIONS", "/v1", &[], Want::Pass(Allowed::Preflight)),
        row("OPTIONS passes with a duplicate bad key", Strict, "OPTIONS", "/v1", &[("authorization", b"x"), ("authorization", b"y")], Want::Pass(Allowed::Preflight)),
        row("OPTIONS * passes", Strict, "OPTIONS", "*", &[], Want::Pass(Allowed::Preflight)),
        // The layer passes every OPTIONS, whatever it carries: a proxy must
        // answer it rather than forward it (the forward example does, 204).
        row("OPTIONS with a method override passes the layer", Strict, "OPTIONS", "/v1/files", &[("x-http-method-override", b"DELETE")], Want::Pass(Allowed::Preflight)),
        row("OPTIONS with a wrong key passes the layer", Strict, "OPTIONS", "/v1/chat/completions", &[("authorization", &wrong)], Want::Pass(Allowed::Preflight)),
        row("a CORS preflight passes without a key", Strict, "OPTIONS", "/v1/chat/completions", &[("origin", b"https://evil.example"), ("access-control-request-method", b"POST")], Want::Pass(Allowed::Preflight)),
        row("lowercase `options` is another method and needs the key", Strict, "options", "/v1", &[], Want::Missing),
        row("extension method needs the key", Strict, "PROPFIND", "/v1", &[], Want::Missing),
        // Off passes everything.
        row("off: no key", Off, "GET", "/v1", &[], Want::Pass(Allowed::AuthOff)),
        row("off: duplicate, non-ASCII key", Off, "GET", "/v1", &[("authorization", b"\xff"), ("authorization", b"x")], Want::Pass(Allowed::AuthOff)),
    ];
    // The configured key: trimmed; empty means nothing can pass.
    let non_text_digest: &'static str = Box::leak(proxy_auth::key_digest("sk-тест").into_boxed_str());
    let configured_rows = [
        ("configured key with newline and spaces is trimmed", " sk-test-0123456789\n", Strict, "/v1", vec![("x-api-key", k.to_vec())], Want::Ok(XApiKey)),
        ("empty configured key: no_key_configured", "", Strict, "/v1", vec![("x-api-key", k.to_vec())], Want::NoKey),
        ("blank configured key: no_key_configured", " \t\r\n", Strict, "/v1", vec![], Want::NoKey),
        ("empty configured key, empty presented key", "", Strict, "/v1", vec![("x-api-key", Vec::new())], Want::NoKey),
        ("empty configured key still exempts /healthz", "", Aeh, "/healthz", vec![], Want::Pass(Allowed::ExemptPath)),
        ("empty configured key, /healthz/ refused", "", Aeh, "/healthz/", vec![], Want::NoKey),
        ("non-ASCII configured key never matches its own bytes", "sk-тест", Strict, "/v1", vec![("x-api-key", "sk-тест".as_bytes().to_vec())], Want::Bad(XApiKey, NotAscii)),
        ("the digest of a non-ASCII key never matches its preimage", non_text_digest, Strict, "/v1", vec![("x-api-key", "sk-тест".as_bytes().to_vec())], Want::Bad(XApiKey, NotAscii)),
    ];
    for (what, configured, mode, uri, headers, want) in configured_rows {
        rows.push(Row {
            what,
            mode,
            configured,
            method: "GET",
            uri,
            headers,
            query_key: false,
            want,
        });
    }
    // With `query_key(true)`: the query is the last source, read raw.
    let query_rows = [
        ("query key accepted", "/v1beta/models?key=sk-test-0123456789", vec![], Want::Ok(QueryKey)),
        ("query key among other parameters", "/v1?alt=sse&key=sk-test-0123456789&x", vec![], Want::Ok(QueryKey)),
        ("query key is ignored without query_key", "/v1?key=sk-test-0123456789", vec![], Want::Missing),
        ("empty query key", "/v1?key=", vec![], Want::Bad(QueryKey, Empty)),
        ("bare `key` parameter", "/v1?key", vec![], Want::Bad(QueryKey, Empty)),
        ("query key twice, right first", "/v1?key=sk-test-0123456789&key=x", vec![], Want::Bad(QueryKey, Duplicate)),
        ("query key twice, both right", "/v1?key=sk-test-0123456789&key=sk-test-0123456789", vec![], Want::Bad(QueryKey, Duplicate)),
        ("percent-encoded key value is not decoded", "/v1?key=sk%2Dtest-0123456789", vec![], Want::Wrong(QueryKey)),
        // The key parameter is any name that decodes once to `key` in any
        // ASCII case; two of them, however spelled, are a duplicate.
        ("percent-encoded name `k%65y` is the key parameter", "/v1?k%65y=sk-test-0123456789", vec![], Want::Ok(QueryKey)),
        ("uppercase `KEY` is the key parameter", "/v1?KEY=sk-test-0123456789", vec![], Want::Ok(QueryKey)),
        ("`Key` among other parameters is the key parameter", "/v1?alt=sse&Key=sk-test-0123456789&keys=x", vec![], Want::Ok(QueryKey)),
        ("fully encoded `%4b%45%59` is the key parameter", "/v1?%4b%45%59=sk-test-0123456789", vec![], Want::Ok(QueryKey)),
        ("wrong key under `KEY`", "/v1?KEY=sk-test-0123456780", vec![], Want::Wrong(QueryKey)),
        ("empty `KEY`", "/v1?KEY=", vec![], Want::Bad(QueryKey, Empty)),
        ("`key` and `KEY`, both right, are a duplicate", "/v1?key=sk-test-0123456789&KEY=sk-test-0123456789", vec![], Want::Bad(QueryKey, Duplicate)),
        ("`KEY` right and `k%65y` wrong are a duplicate", "/v1?KEY=sk-test-0123456789&k%65y=x", vec![], Want::Bad(QueryKey, Duplicate)),
        ("bare `Key` and a right `key` are a duplicate", "/v1?Key&key=sk-test-0123456789", vec![], Want::Bad(QueryKey, Duplicate)),
        ("double-encoded `%2565y` is not the key parameter", "/v1?%2565y=sk-test-0123456789", vec![], Want::Missing),
        ("`keys`, `key%00`, `monkey`, `ke%2By` are not the key parameter", "/v1?keys=sk-test-0123456789&key%00=sk-test-0123456789&monkey=sk-test-0123456789&ke%2By=sk-test-0123456789", vec![], Want::Missing),
        ("invalid percent sequences in a name are not the key parameter", "/v1?k%zzy=sk-test-0123456789&k%6=sk-test-0123456789&%=x", vec![], Want::Missing),
        ("uppercase `KEY` is ignored without query_key", "/v1?KEY=sk-test-0123456789", vec![], Want::Missing),
        ("a wrong header beats a right `KEY`", "/v1?KEY=sk-test-0123456789", vec![("x-api-key", b"nope".to_vec())], Want::Wrong(XApiKey)),
        ("a wrong header beats a right query key", "/v1?key=sk-test-0123456789", vec![("x-api-key", b"nope".to_vec())], Want::Wrong(XApiKey)),
        ("an empty header beats a right query key", "/v1?key=sk-test-0123456789", vec![("authorization", Vec::new())], Want::Bad(Auth, Empty)),
        ("query key on an exempt path is not needed", "/healthz?key=wrong", vec![], Want::Pass(Allowed::ExemptPath)),
    ];
    for (what, uri, headers, want) in query_rows {
        rows.push(Row {
            what,
            mode: if uri.starts_with("/healthz") { Aeh } else { Strict },
            configured: KEY,
            method: "GET",
            uri,
            headers,
            query_key: !what.contains("without query_key"),
            want,
        });
    }
    rows
}

fn request(row: &Row) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = Method::from_bytes(row.method.as_bytes()).expect("valid method");
    *request.uri_mut() = Uri::try_from(row.uri).expect("valid uri");
    for (name, value) in &row.headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
            HeaderValue::from_bytes(value).expect("valid value"),
        );
    }
    request
}

/// Returns a description of the mismatch, if any.
fn judge(row: &Row) -> Option<String> {
    let config = ProxySecurityConfig::new(row.mode, row.configured);
    let layer = ProxyAuthLayer::new(config.clone())
        .insert_identity(true)
        .query_key(row.query_key);
    let decision = layer.check(&request(row));
    let got_response = model::shown(&model::serve(layer, request(row)));
    let rejected = model::shown_rejected;
    let passed = model::shown_passed;
    let (want_response, decision_ok) = match row.want.clone() {
        Want::Ok(source) => (
            passed(source.as_str()),
            matches!(&decision, Decision::Allow(Allowed::Key(who)) if who.source == source && who.label.is_none()),
        ),
        Want::Pass(allowed) => (passed("none"), decision == Decision::Allow(allowed)),
        Want::Wrong(source) => (
            rejected(RejectReason::InvalidKey),
            matches!(&decision, Decision::Reject(r) if r.reason == RejectReason::InvalidKey
                && r.source == Some(source) && r.problem.is_none()),
        ),
        Want::Bad(source, problem) => (
            rejected(RejectReason::InvalidKey),
            matches!(&decision, Decision::Reject(r) if r.reason == RejectReason::InvalidKey
                && r.source == Some(source) && r.problem == Some(problem)),
        ),
        Want::Missing => (
            rejected(RejectReason::MissingKey),
            matches!(&decision, Decision::Reject(r) if r.reason == RejectReason::MissingKey
                && r.source.is_none()),
        ),
        Want::NoKey => (
            rejected(RejectReason::NoKeyConfigured),
            matches!(&decision, Decision::Reject(r) if r.reason == RejectReason::NoKeyConfigured),
        ),
    };
    if got_response != want_response || !decision_ok {
        return Some(format!(
            "{}: want {:?} / response {want_response:?}; got decision {decision:?} / response {got_response:?}",
            row.what, row.want
        ));
    }
    // The reference model must agree with the table, too: the table pins
    // the model that the proptest and the fuzzer trust.
    let mut setup = model::Setup::new(config);
    setup.query_key = row.query_key;
    let model_result = model::check_against_model(&setup, request(row));
    model_result
        .err()
        .map(|e| format!("{}: model: {e}", row.what))
}

#[test]
fn hostile_and_odd_inputs_get_the_documented_answer() {
    let rows = table();
    let failures: Vec<String> = rows.iter().filter_map(judge).collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The table must be able to fail: the same rows with every expectation
/// turned around all fail.
#[test]
fn every_row_can_fail() {
    for mut row in table() {
        row.want = match row.want {
            Want::Ok(_) | Want::Pass(_) => Want::Missing,
            _ => Want::Pass(Allowed::AuthOff),
        };
        assert!(judge(&row).is_some(), "{} passes either way", row.what);
    }
}

/// Hostile URIs and values never reach the layer if `http` refuses them;
/// this pins which ones `http` itself refuses, so the table above covers
/// everything that does reach it.
#[test]
fn values_http_refuses_never_reach_the_layer() {
    for bad in [&b"a\nb"[..], b"a\rb", b"a\0b", b"\x7f"] {
        assert!(HeaderValue::from_bytes(bad).is_err(), "{bad:?}");
    }
    for ok in [&b"\x80\xff"[..], b"\ttab", b" lead", b"trail "] {
        assert!(HeaderValue::from_bytes(ok).is_ok(), "{ok:?}");
    }
    assert!(Uri::try_from("/he althz").is_err());
}
