//! Reading and validating a config file: JSON or TOML by extension, every
//! problem an error with the file, line and column, and no key in any
//! message.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::WatchError;
use crate::compare::MAX_KEY_LEN;
use crate::digest::{classify, KeyText};
use crate::{ApiKey, KeySet, NewKey, ProxyAuthMode, ProxySecurityConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Toml,
}

impl Format {
    pub(crate) fn of(path: &Path) -> Result<Format, WatchError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Ok(Format::Json),
            Some(e) if e.eq_ignore_ascii_case("toml") => Ok(Format::Toml),
            _ => Err(WatchError::UnknownFormat {
                path: path.to_owned(),
            }),
        }
    }
}

/// The file's shape: the `security` section's fields plus the named keys.
/// Unknown fields are errors, so a misspelt `allow_lan_acess` is reported
/// instead of silently left at its default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// Required, unlike in [`ProxySecurityConfig`]'s own serde form: a file
    /// caught half-written may hold only `api_key`, and its default
    /// (`auto`, `off` on loopback) must never be what turns auth off.
    #[serde(default)]
    auth_mode: Option<ProxyAuthMode>,
    #[serde(deserialize_with = "api_key")]
    api_key: ApiKey,
    #[serde(default)]
    allow_lan_access: bool,
    #[serde(default, deserialize_with = "key_list")]
    keys: KeySet,
    /// Every key's default limits (`limits = { rpm = 60, max_concurrent = 4 }`).
    #[serde(default)]
    limits: crate::Limits,
}

/// Parses `bytes` (the content of `path`) into a config and its key set.
pub(crate) fn parse(
    path: &Path,
    format: Format,
    bytes: &[u8],
) -> Result<(ProxySecurityConfig, KeySet), WatchError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(bytes, e.valid_up_to());
        invalid(path, line, column, "the file is not valid UTF-8".into())
    })?;
    if text.trim().is_empty() {
        return Err(WatchError::Empty {
            path: path.to_owned(),
        });
    }
    let file: FileConfig = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| {
            let message = scrub(&e.to_string_without_position());
            // serde_json places errors raised after a value was read (our
            // api_key checks) where it stopped reading, past the value.
            let (line, column) = if message.starts_with("api_key ") {
                find(text, "\"api_key\"")
            } else {
                (e.line().max(1), e.column().max(1))
            };
            invalid(path, line, column, message)
        })?,
        Format::Toml => toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text.as_bytes(), span.start));
            invalid(path, line, column, scrub(e.message().trim()))
        })?,
    };
    if file.api_key.is_blank() && file.keys.is_empty() {
        let (line, column) = find(text, "api_key");
        return Err(invalid(
            path,
            line,
            column,
            "api_key is empty and there are no named keys, so no request could be let in; set api_key (a key or its sha256:<hex> digest)".into(),
        ));
    }
    let Some(auth_mode) = file.auth_mode else {
        // Where a missing field is reported by the parsers: the file's end.
        let (line, column) = line_column(text.as_bytes(), text.trim_end().len());
        return Err(invalid(
            path,
            line,
            column,
            "auth_mode is not set; name it (off, strict, all_except_health or auto): a config file must say which mode it means, so a file caught half-written never turns auth off by default".into(),
        ));
    };
    let config = ProxySecurityConfig::new(auth_mode, file.api_key)
        .allow_lan_access(file.allow_lan_access)
        .limits(file.limits);
    Ok((config, file.keys))
}

fn invalid(path: &Path, line: usize, column: usize, message: String) -> WatchError {
    WatchError::Invalid {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

trait WithoutPosition {
    fn to_string_without_position(&self) -> Zeroizing<String>;
}

impl WithoutPosition for serde_json::Error {
    /// serde_json appends " at line L column C"; the error carries those.
    /// The message may quote a misplaced value (a key in the wrong field),
    /// so it is written once into a buffer of its exact size (no growth
    /// leaving copies behind) that is wiped when dropped.
    fn to_string_without_position(&self) -> Zeroizing<String> {
        use std::fmt::Write;
        struct Len(usize);
        impl Write for Len {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 += s.len();
                Ok(())
            }
        }
        let mut len = Len(0);
        let _ = write!(len, "{self}");
        let mut full = Zeroizing::new(String::with_capacity(len.0));
        let _ = write!(full, "{self}");
        if let Some(at) = full.rfind(" at line ") {
            full.truncate(at);
        }
        full
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Where `needle` first appears, for errors found after parsing.
fn find(text: &str, needle: &str) -> (usize, usize) {
    text.find(needle)
        .map_or((1, 1), |at| line_column(text.as_bytes(), at))
}

/// Removes the value a parser's message quotes: a key written in the wrong
/// place (`auth_mode = "sk-..."`, `api_key = 123456789`) must not reach the
/// logs. Whatever serde puts between the kind of problem and its
/// `, expected ...` (a string, a number, a character, a variant or field
/// name, quoted any way, backticks inside included) is withheld; the line
/// and column still point at it.
fn scrub(message: &str) -> String {
    const KINDS: [&str; 4] = [
        "invalid type: ",
        "invalid value: ",
        "unknown variant ",
        "unknown field ",
    ];
    let first = KINDS
        .iter()
        .filter_map(|kind| message.find(kind).map(|at| (at + kind.len(), *kind)))
        .min_by_key(|(end, _)| *end);
    let Some((end, kind)) = first else {
        return message.to_owned();
    };
    let rest = &message[end..];
    // The last `, expected` is serde's own: a value may contain the words.
    let tail = rest.rfind(", expected").map_or("", |at| &rest[at..]);
    let what = if kind == "unknown field " {
        "field"
    } else {
        "value"
    };
    format!("{}({what} withheld){tail}", &message[..end])
}

fn api_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ApiKey, D::Error> {
    let key = ApiKey::deserialize(deserializer)?;
    let trimmed = key.expose_secret().trim();
    if trimmed.len() > MAX_KEY_LEN {
        return Err(de::Error::custom(format!(
            "api_key is longer than {MAX_KEY_LEN} bytes, the longest key compared in constant time; use a shorter key or its sha256:<hex> digest"
        )));
    }
    if classify(trimmed) == KeyText::BadDigest {
        return Err(de::Error::custom(
            "api_key starts with \"sha256:\" but is not followed by 64 hex characters; produce the digest with `printf %s \"$KEY\" | sha256sum`",
        ));
    }
    if !trimmed
        .bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
    {
        return Err(de::Error::custom(
            "api_key contains non-ASCII or control characters, which clients cannot send in a header; use a printable ASCII key",
        ));
    }
    Ok(key)
}

/// One entry of `keys`, as [`KeySet`]'s own serde form writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    label: String,
    // Wiped when dropped: a plaintext key or a digest.
    key: ApiKey,
    #[serde(default)]
    expires_at: Option<u64>,
    /// The author's own data for the key, handed to handlers as a
    /// `serde_json::Value` (`Authenticated::data`).
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    routes: Option<Vec<String>>,
    #[serde(default)]
    allowed_ips: Option<Vec<String>>,
    /// The key's own limits, over the file's `limits`.
    #[serde(default)]
    rpm: Option<u32>,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    max_concurrent: Option<u32>,
}

/// The key list, built entry by entry so an error points at its entry, and
/// a label given twice is an error rather than the later entry winning.
fn key_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<KeySet, D::Error> {
    struct KeyList;

    impl<'de> Visitor<'de> for KeyList {
        type Value = KeySet;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of {label, key, expires_at?} entries")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeySet, A::Error> {
            let mut keys = KeySet::new();
            let mut labels = HashSet::new();
            while let Some(entry) = seq.next_element::<KeyEntry>()? {
                let label = entry.label.trim().to_owned();
                if !labels.insert(label.clone()) {
                    return Err(de::Error::custom(format!(
                        "the label {label:?} is given to more than one key; each label names one key"
                    )));
                }
                let mut new = NewKey::new(label.clone(), entry.key);
                if let Some(secs) = entry.expires_at {
                    let at = UNIX_EPOCH
                        .checked_add(Duration::from_secs(secs))
                        .ok_or_else(|| {
                            de::Error::custom(format!(
                                "expires_at {secs} of the key labelled {label:?} is out of range; give Unix seconds, e.g. 1767225600"
                            ))
                        })?;
                    new = new.expires_at(at);
                }
                if let Some(data) = entry.data {
                    new = new.data(data);
                }
                if let Some(models) = entry.models {
                    new = new.models(models);
                }
                if let Some(routes) = entry.routes {
                    new = new.routes(routes);
                }
                if let Some(nets) = entry.allowed_ips {
                    new = new.allowed_ips(nets);
                }
                new.limits = [entry.rpm, entry.burst, entry.max_concurrent];
                let inserted = keys.add(new);
                inserted.map_err(de::Error::custom)?;
            }
            Ok(keys)
        }
    }

    deserializer.deserialize_seq(KeyList)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sk-0123456789abcdef-secret";

    fn json(text: &str) -> Result<(ProxySecurityConfig, KeySet), WatchError> {
        parse(Path::new("/etc/proxy.json"), Format::Json, text.as_bytes())
    }

    fn toml(text: &str) -> Result<(ProxySecurityConfig, KeySet), WatchError> {
        parse(Path::new("/etc/proxy.toml"), Format::Toml, text.as_bytes())
    }

    #[test]
    fn scopes_come_from_the_file_and_a_bad_one_is_a_bad_file() {
        let (_, keys) = toml(
            "auth_mode = \"strict\"\napi_key = \"sk-admin\"\n[[keys]]\nlabel = \"team-a\"\nkey = \"sk-team-a\"\nmodels = [\"gpt-4o-mini\", \"claude-3-5-*\"]\nroutes = [\"/v1/chat/completions\", \"/v1/messages\"]\nallowed_ips = [\"127.0.0.0/8\", \"10.1.0.0/16\"]\n",
        )
        .unwrap();
        let entry = keys.get("team-a").unwrap();
        assert_eq!(entry.models().unwrap(), ["gpt-4o-mini", "claude-3-5-*"]);
        assert_eq!(
            entry.routes().unwrap(),
            ["/v1/chat/completions", "/v1/messages"]
        );
        assert_eq!(entry.allowed_ips().unwrap(), ["127.0.0.0/8", "10.1.0.0/16"]);
        for bad in [
            "models = []",
            "models = [\"gpt-*-mini\"]",
            "routes = [\"v1/chat\"]",
            "allowed_ips = [\"10.0.0.0/33\"]",
            "allowed_ips = [\"10.1.2.3/8\"]",
        ] {
            let text = format!("auth_mode = \"strict\"\napi_key = \"sk-admin\"\n[[keys]]\nlabel = \"team-a\"\nkey = \"sk-team-a\"\n{bad}\n");
            let err = toml(&text).unwrap_err().to_string();
            assert!(
                err.contains("team-a") && err.starts_with("/etc/proxy.toml:"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_keys_data_table_reaches_its_entry_as_json() {
        let (_, keys) = toml(
            "auth_mode = \"strict\"\napi_key = \"sk-admin\"\n[[keys]]\nlabel = \"team-a\"\nkey = \"sk-team-a\"\ndata = { tenant = \"t1\", budget = 5 }\n[[keys]]\nlabel = \"plain\"\nkey = \"sk-plain\"\n",
        )
        .unwrap();
        let data = keys
            .get("team-a")
            .unwrap()
            .data::<serde_json::Value>()
            .unwrap();
        assert_eq!(data, &serde_json::json!({ "tenant": "t1", "budget": 5 }));
        assert!(keys
            .get("plain")
            .unwrap()
            .data::<serde_json::Value>()
            .is_none());
        let (_, keys) = json(
            r#"{"auth_mode":"strict","api_key":"sk-admin","keys":[{"label":"b","key":"sk-b","data":[1,2]}]}"#,
        )
        .unwrap();
        assert_eq!(
            keys.get("b").unwrap().data::<serde_json::Value>(),
            Some(&serde_json::json!([1, 2]))
        );
    }

    #[test]
    fn both_formats_read_the_same_shape() {
        let (config, keys) = json(
            r#"{"auth_mode":"strict","api_key":"sk-1","allow_lan_access":true,
                "keys":[{"label":"alice","key":"sk-a"},{"label":"ci","key":"sk-c","expires_at":4102444800}]}"#,
        )
        .unwrap();
        assert_eq!(
            config,
            ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1").allow_lan_access(true)
        );
        assert_eq!(keys.len(), 2);
        let (config2, keys2) = toml(
            "auth_mode = \"strict\"\napi_key = \"sk-1\"\nallow_lan_access = true\n\n[[keys]]\nlabel = \"alice\"\nkey = \"sk-a\"\n\n[[keys]]\nlabel = \"ci\"\nkey = \"sk-c\"\nexpires_at = 4102444800\n",
        )
        .unwrap();
        assert_eq!(config2, config);
        assert_eq!(keys2, keys);
        // `allow_lan_access` and `keys` have defaults; `auth_mode` has none.
        let (config, keys) = toml("auth_mode = \"auto\"\napi_key = \"sk-1\"").unwrap();
        assert_eq!(
            config,
            ProxySecurityConfig::new(ProxyAuthMode::Auto, "sk-1")
        );
        assert!(keys.is_empty());
    }

    fn position(
        result: Result<(ProxySecurityConfig, KeySet), WatchError>,
    ) -> (usize, usize, String) {
        let err = result.expect_err("must be rejected");
        let (line, column) = err.position().expect("content errors have a position");
        (line, column, err.to_string())
    }

    #[test]
    fn errors_carry_line_and_column() {
        let (line, column, msg) =
            position(json("{\n  \"auth_mode\": \"on\",\n  \"api_key\": \"k\"\n}"));
        assert_eq!((line, column), (2, 19), "{msg}");
        assert!(
            msg.starts_with("/etc/proxy.json:2:19: unknown variant"),
            "{msg}"
        );
        assert!(msg.contains("all_except_health"), "{msg}");

        let (line, column, msg) =
            position(toml("auth_mode = \"strict\"\n\napi_key = \"sha256:12\"\n"));
        assert_eq!((line, column), (3, 11), "{msg}");
        assert!(msg.contains("64 hex"), "{msg}");

        let long = format!("{{\n\"api_key\": \"{}\"\n}}", "k".repeat(MAX_KEY_LEN + 1));
        let (line, _, msg) = position(json(&long));
        assert_eq!(line, 2, "{msg}");
        assert!(msg.contains("longer than 4096 bytes"), "{msg}");
        assert!(!msg.contains("kkk"), "{msg}");

        let (line, _, msg) = position(json("{\n \"auth_mode\": \"strict\"\n}"));
        assert_eq!(line, 3, "{msg}");
        assert!(msg.contains("missing field `api_key`"), "{msg}");

        let (line, _, msg) = position(toml("api_key = \"k\"\n[[keys]]\nlabel = \"a\"\nkey = \"x1\"\n[[keys]]\nlabel = \"a\"\nkey = \"x2\"\n"));
        assert!(msg.contains("\"a\" is given to more than one key"), "{msg}");
        assert!(line >= 2, "{msg}");

        let (line, column, msg) = position(json("{\"api_key\": \"k\", \"allow_lan_acess\": true}"));
        assert_eq!(line, 1);
        assert!(column > 17 && msg.contains("unknown field"), "{msg}");

        assert!(matches!(json(" \n\t"), Err(WatchError::Empty { .. })));
        let (line, column, msg) = position(json("{\n  \"api_key\": \"  \"\n}"));
        assert_eq!((line, column), (2, 4), "{msg}");
        let (line, _, msg) = position(toml(
            "api_key = \"k\"\nauth_mode = \"strict\"\nnot toml at all\n",
        ));
        assert_eq!(line, 3, "{msg}");
        assert!(
            json(r#"{"auth_mode":"strict","api_key":"","keys":[{"label":"a","key":"sk-a"}]}"#)
                .is_ok()
        );
    }

    #[test]
    fn a_file_that_does_not_name_auth_mode_is_refused() {
        for (result, at) in [
            (json("{\n  \"api_key\": \"sk-1\"\n}\n"), (3, 2)),
            (
                toml("api_key = \"sk-1\"\nallow_lan_access = true\n"),
                (2, 24),
            ),
            (toml("api_key = \"sk-1\""), (1, 17)),
        ] {
            let (line, column, msg) = position(result);
            assert_eq!((line, column), at, "{msg}");
            assert!(msg.contains("auth_mode is not set"), "{msg}");
            assert!(msg.contains("strict"), "{msg}");
        }
    }

    #[test]
    fn no_message_contains_a_key() {
        let bad = [
            format!(r#"{{"auth_mode":"{SECRET}","api_key":"k"}}"#),
            format!(r#"{{"api_key":"k","keys":"{SECRET}"}}"#),
            format!(r#"{{"api_key":"k","{SECRET}":1}}"#),
            format!(r#"{{"api_key":"k","allow_lan_access":"{SECRET}"}}"#),
            format!(r#"{{"api_key":{SECRET}}}"#),
            format!(r#"{{"api_key":"sha256:{SECRET}"}}"#),
            format!(r#"{{"api_key":"{SECRET}\u0001"}}"#),
            format!(
                r#"{{"api_key":"k","keys":[{{"label":"a","key":"{SECRET}"}},{{"label":"b","key":"{SECRET}"}}]}}"#
            ),
            format!(
                r#"{{"api_key":"k","keys":[{{"label":"a","key":"{SECRET}","expires_at":"{SECRET}"}}]}}"#
            ),
        ];
        for text in &bad {
            let err = json(text).expect_err(text).to_string();
            assert!(!err.contains("0123456789abcdef"), "{err}");
        }
        let bad_toml = [
            format!("api_key = {SECRET}\n"),
            format!("api_key = \"k\"\nauth_mode = \"{SECRET}\"\n"),
            format!("api_key = \"k\"\nkeys = \"{SECRET}\"\n"),
            format!("api_key = \"k\"\n{SECRET} = 1\n"),
            format!("api_key = \"k\"\nallow_lan_access = \"{SECRET}\"\n"),
            format!("api_key = \"sha256:{SECRET}\"\n"),
            format!("api_key = \"{SECRET}\" junk\n"),
        ];
        for text in &bad_toml {
            let err = toml(text).expect_err(text).to_string();
            assert!(!err.contains("0123456789abcdef"), "{err}");
        }
    }

    #[test]
    fn scrub_withholds_every_quoted_value() {
        assert_eq!(
            scrub(r#"invalid type: string "sk-\"x", expected a boolean"#),
            "invalid type: (value withheld), expected a boolean"
        );
        assert_eq!(
            scrub("unknown variant `on`, expected one of `off`, `strict`"),
            "unknown variant (value withheld), expected one of `off`, `strict`"
        );
        for (message, secret) in [
            (
                "invalid type: integer `987654321012345`, expected a string",
                "987654321012345",
            ),
            (
                "invalid type: floating point `1500.0`, expected a string",
                "1500.0",
            ),
            ("invalid type: character `s`, expected a string", "`s`"),
            (
                "unknown variant `sk-ab`SECRETTAIL`, expected one of `off`",
                "SECRETTAIL",
            ),
            (
                "unknown field `sk-live-123`, expected one of `api_key`",
                "sk-live-123",
            ),
            (
                "invalid value: string \"sk-1, expected 2\", expected a mode",
                "sk-1",
            ),
        ] {
            let scrubbed = scrub(message);
            assert!(!scrubbed.contains(secret), "{scrubbed}");
            assert!(scrubbed.contains("withheld), expected"), "{scrubbed}");
        }
        assert_eq!(scrub("missing field `api_key`"), "missing field `api_key`");
    }
}
