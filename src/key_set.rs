//! [`KeySet`]: named keys besides the default `api_key`, each with an
//! optional expiry, held as SHA-256 digests.
//!
//! A presented key is hashed once and looked up by its digest, so the cost
//! of a match does not grow with the number of keys, and the set never holds
//! a plaintext key in memory after it is built. The lookup is not
//! constant-time, and need not be: the attacker controls the presented key,
//! and learning how its SHA-256 relates to a stored digest does not bring
//! them closer to a preimage.
//!
//! Digests are unsalted SHA-256: they protect high-entropy keys (such as
//! those from [`generate_api_key`](crate::generate_api_key)), not short or
//! guessable ones, which a leaked config file would expose to a dictionary
//! attack.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;
#[cfg(feature = "serde")]
use std::time::{Duration, UNIX_EPOCH};

#[cfg(feature = "serde")]
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use zeroize::{Zeroize, Zeroizing};

use crate::digest::{classify, sha256, KeyText};
use crate::{KeyEntry, NewKey};

/// Why a key could not be added to a [`KeySet`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The label was empty.
    #[error(
        "a key's label must not be empty; name each key (for example \"alice\" or \"ci-bot\")"
    )]
    EmptyLabel,
    /// The key was empty or whitespace.
    #[error("the key labelled {0:?} is empty; give it a key or a sha256:<hex> digest")]
    EmptyKey(String),
    /// The value started with `sha256:` (in any case) but was not followed
    /// by 64 hex characters.
    #[error("the key labelled {0:?} starts with \"sha256:\" but is not followed by 64 hex characters; produce it with `printf %s \"$KEY\" | sha256sum`")]
    BadDigest(String),
    /// A list (a deserialized `KeySet`) named the same label twice. Inserting
    /// through [`KeySet::insert`] replaces a label's key instead.
    #[error("the label {0:?} appears more than once in the key list; each label names one key")]
    DuplicateLabel(String),
    /// A scope of the key cannot be right: an empty list, a `*` inside a
    /// model pattern, a route without a leading `/`, a bad CIDR block.
    #[error("the key labelled {label:?}: {message}")]
    BadScope {
        /// The key's label.
        label: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A limit of the key cannot be right: 0, over the largest, or a
    /// `burst` without `rpm` (see [`LimitError`](crate::LimitError)).
    #[error("the key labelled {label:?}: {error}")]
    BadLimits {
        /// The key's label.
        label: String,
        /// What is wrong.
        error: crate::LimitError,
    },
    /// The same key (or digest) is already in the set under another label.
    #[error("the key labelled {label:?} is the same key as the one labelled {existing:?}; every key must be distinct so a request maps to one identity")]
    DuplicateKey {
        /// The label being added.
        label: String,
        /// The label already holding that key.
        existing: String,
    },
}

/// A set of named API keys, accepted besides the config's `api_key`.
///
/// Keys are stored only as digests. Each has a label (which key matched is
/// reported in [`Authenticated::label`](crate::Authenticated::label)) and may
/// have an expiry, after which it is refused with
/// [`KeyProblem::Expired`](crate::KeyProblem::Expired): add the new key, let
/// clients move over, then remove (or let expire) the old one.
///
/// Deserializes from a list: `[{"label": "alice", "key": "sk-..."},
/// {"label": "ci", "key": "sha256:<hex>", "expires_at": 1767225600,
/// "models": ["gpt-4o-mini"], "routes": ["/v1/chat"], "allowed_ips":
/// ["10.0.0.0/8"], "rpm": 60, "burst": 10, "max_concurrent": 2}]`
/// (`expires_at` in Unix seconds; scopes see [`scope`](crate::scope),
/// limits [`limit`](crate::limit)); an unknown field is an error, so a
/// misspelt scope or limit never leaves a key unrestricted. Serializing
/// writes digests only. A key's own data ([`NewKey::data`]) is not part of
/// this form (a watched config file carries it as JSON).
///
/// ```
/// use proxy_auth::KeySet;
/// use std::time::{Duration, SystemTime};
///
/// let mut keys = KeySet::new();
/// keys.insert("alice", "sk-alice")?;
/// keys.insert_expiring("old-ci", "sk-old", SystemTime::now() + Duration::from_secs(3600))?;
/// keys.insert("ci", &proxy_auth::key_digest("sk-ci"))?;
/// assert_eq!(keys.len(), 3);
/// assert!(keys.remove("old-ci"));
/// # Ok::<(), proxy_auth::KeySetError>(())
/// ```
#[derive(Clone, Default)]
pub struct KeySet {
    by_digest: HashMap<StoredDigest, Arc<KeyEntry>>,
    // So replacing or removing a label is O(1), not a scan of every key.
    by_label: HashMap<Arc<str>, StoredDigest>,
}

/// A key's digest, on the heap once and shared by both maps and by every
/// clone of the set, wiped when the last of them lets go. Not inline in the
/// maps: a map that grows moves its entries and frees the old table, which
/// would leave copies behind.
#[derive(Clone)]
struct StoredDigest(Arc<DigestBytes>);

struct DigestBytes([u8; 32]);

impl Drop for DigestBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl StoredDigest {
    fn new(digest: &[u8; 32]) -> Self {
        StoredDigest(Arc::new(DigestBytes(*digest)))
    }

    fn bytes(&self) -> &[u8; 32] {
        &self.0 .0
    }
}

// Hashed and compared as the bytes, so the maps can be queried with a
// plain `&[u8; 32]` (the `Borrow` contract).
impl std::hash::Hash for StoredDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl PartialEq for StoredDigest {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for StoredDigest {}

impl std::borrow::Borrow<[u8; 32]> for StoredDigest {
    fn borrow(&self) -> &[u8; 32] {
        self.bytes()
    }
}

impl KeySet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        KeySet::default()
    }

    /// Adds (or replaces, by label) a key that never expires. `key` is the
    /// plaintext key or its `sha256:<hex>` digest (see [`key_digest`](crate::key_digest)).
    pub fn insert(&mut self, label: impl Into<String>, key: &str) -> Result<(), KeySetError> {
        self.add(NewKey::new(label, key))
    }

    /// Adds (or replaces, by label) a key refused from `expires_at` on.
    pub fn insert_expiring(
        &mut self,
        label: impl Into<String>,
        key: &str,
        expires_at: SystemTime,
    ) -> Result<(), KeySetError> {
        self.add(NewKey::new(label, key).expires_at(expires_at))
    }

    /// Adds (or replaces, by label) a key with everything it carries.
    pub fn add(&mut self, new: NewKey) -> Result<(), KeySetError> {
        let NewKey {
            label,
            key,
            expires_at,
            data,
            scope,
            limits,
        } = new;
        let key = key.expose_secret();
        // Stored trimmed, so `remove("alice")` finds a key added as "alice ".
        let label = if label.trim().len() == label.len() {
            label
        } else {
            label.trim().to_owned()
        };
        if label.is_empty() {
            return Err(KeySetError::EmptyLabel);
        }
        if key.trim().is_empty() {
            return Err(KeySetError::EmptyKey(label));
        }
        let key = key.trim();
        let digest: Zeroizing<[u8; 32]> = Zeroizing::new(match classify(key) {
            KeyText::Digest(digest) => digest,
            KeyText::BadDigest => return Err(KeySetError::BadDigest(label)),
            KeyText::Plain => sha256(key.as_bytes()),
        });
        let scope = scope.parse().map_err(|message| KeySetError::BadScope {
            label: label.clone(),
            message,
        })?;
        let [rpm, burst, max_concurrent] = limits;
        let limits = crate::Limits::new(rpm, burst, max_concurrent).map_err(|error| {
            KeySetError::BadLimits {
                label: label.clone(),
                error,
            }
        })?;
        let digest = StoredDigest::new(&digest);
        if let Some(existing) = self.by_digest.get(&digest) {
            if *existing.label != *label {
                return Err(KeySetError::DuplicateKey {
                    label,
                    existing: existing.label.to_string(),
                });
            }
        }
        self.remove(&label);
        let label: Arc<str> = label.into();
        self.by_label.insert(Arc::clone(&label), digest.clone());
        let entry = KeyEntry {
            label,
            expires_at,
            data,
            scope,
            limits,
            limiter: Default::default(),
        };
        self.by_digest.insert(digest, Arc::new(entry));
        Ok(())
    }

    /// Removes the key with this label; whether there was one.
    pub fn remove(&mut self, label: &str) -> bool {
        match self.by_label.remove(label) {
            Some(digest) => {
                self.by_digest.remove(&digest);
                true
            }
            None => false,
        }
    }

    /// Removes every key whose expiry has passed; how many were removed.
    pub fn remove_expired(&mut self, now: SystemTime) -> usize {
        let before = self.by_digest.len();
        let by_label = &mut self.by_label;
        self.by_digest.retain(|_, entry| {
            let keep = entry.expires_at.is_none_or(|at| at > now);
            if !keep {
                by_label.remove(&entry.label);
            }
            keep
        });
        before - self.by_digest.len()
    }

    /// The number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether the set has no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Every key's entry (label and expiry, never the key), sorted by
    /// label.
    #[must_use]
    pub fn entries(&self) -> Vec<&KeyEntry> {
        let mut entries: Vec<&KeyEntry> = self.by_digest.values().map(|e| &**e).collect();
        entries.sort_by(|a, b| a.label.cmp(&b.label));
        entries
    }

    /// The entry with this label.
    #[must_use]
    pub fn get(&self, label: &str) -> Option<&KeyEntry> {
        self.by_label
            .get(label)
            .and_then(|digest| self.by_digest.get(digest))
            .map(|entry| &**entry)
    }

    /// Every entry, to set its limiter when a policy is built.
    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = &mut Arc<KeyEntry>> {
        self.by_digest.values_mut()
    }

    /// The entry whose digest equals `digest`. The map's own probing and
    /// key comparison are not constant-time; what they could reveal is how
    /// the SHA-256 of the attacker's own input relates to stored digests,
    /// which does not help find a key (that would take a preimage).
    pub(crate) fn lookup(&self, digest: &[u8; 32]) -> Option<&Arc<KeyEntry>> {
        self.by_digest.get(digest)
    }
}

/// Equal when both hold the same keys under the same labels, with the same
/// expiries, scopes and data (a `serde_json::Value` by value, other data by
/// identity: the same `Arc`).
impl PartialEq for KeySet {
    fn eq(&self, other: &KeySet) -> bool {
        self.len() == other.len()
            && self
                .by_digest
                .iter()
                .all(|(digest, entry)| other.by_digest.get(digest) == Some(entry))
    }
}

impl Eq for KeySet {}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.entries().into_iter().map(KeyEntry::label))
            .finish()
    }
}

#[cfg(feature = "serde")]
#[derive(Serialize, Deserialize)]
// A misspelt scope (`model` for `models`) would otherwise leave the key
// unrestricted.
#[serde(deny_unknown_fields)]
struct KeySpec {
    label: String,
    // Wiped when the spec is dropped: it holds a plaintext key or a digest.
    key: crate::ApiKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allowed_ips: Option<Vec<String>>,
    rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_concurrent: Option<u32>,
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for KeySet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut specs: Vec<KeySpec> = self
            .by_digest
            .iter()
            .map(|(digest, entry)| KeySpec {
                label: entry.label.to_string(),
                key: crate::digest::digest_string(digest.bytes()).into(),
                expires_at: entry.expires_at.map(unix_seconds_rounded_up),
                models: owned(entry.scope.model_texts()),
                routes: owned(entry.scope.route_texts()),
                allowed_ips: entry.scope.ip_texts(),
                rpm: entry.limits.rpm(),
                burst: entry.limits.burst(),
                max_concurrent: entry.limits.max_concurrent(),
            })
            .collect();
        specs.sort_by(|a, b| a.label.cmp(&b.label));
        specs.serialize(serializer)
    }
}

#[cfg(feature = "serde")]
fn owned(texts: Option<Vec<&str>>) -> Option<Vec<String>> {
    Some(texts?.into_iter().map(str::to_owned).collect())
}

/// An expiry in whole Unix seconds, rounded up: written out and read back,
/// a key may live up to a second longer than configured, never shorter.
/// Times before 1970 become 0, which has passed as well.
#[cfg(feature = "serde")]
fn unix_seconds_rounded_up(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let up = since
        .as_secs()
        .saturating_add(u64::from(since.subsec_nanos() > 0));
    // At the very end of what `SystemTime` holds, the next second may not
    // be representable, and reading it back would fail: keep the second.
    match UNIX_EPOCH.checked_add(Duration::from_secs(up)) {
        Some(_) => up,
        None => since.as_secs(),
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for KeySet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let specs = Vec::<KeySpec>::deserialize(deserializer)?;
        let mut set = KeySet::new();
        for spec in specs {
            let expires_at = match spec.expires_at {
                None => None,
                Some(secs) => Some(UNIX_EPOCH.checked_add(Duration::from_secs(secs)).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "expires_at {secs} for key {:?} is out of range; give Unix seconds, e.g. 1767225600",
                        spec.label
                    ))
                })?),
            };
            if set.by_label.contains_key(spec.label.trim()) {
                return Err(serde::de::Error::custom(KeySetError::DuplicateLabel(
                    spec.label.trim().to_owned(),
                )));
            }
            let mut new = NewKey::new(spec.label, spec.key);
            new.expires_at = expires_at;
            new.scope.models = spec.models;
            new.scope.routes = spec.routes;
            new.scope.allowed_ips = spec.allowed_ips;
            new.limits = [spec.rpm, spec.burst, spec.max_concurrent];
            set.add(new).map_err(serde::de::Error::custom)?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels and expiries, sorted: the entries as plain values.
    fn labels(set: &KeySet) -> Vec<(String, Option<SystemTime>)> {
        set.entries()
            .into_iter()
            .map(|e| (e.label().to_owned(), e.expires_at()))
            .collect()
    }

    #[test]
    fn equal_sets_hold_the_same_keys_labels_and_expiries() {
        let mut a = KeySet::new();
        a.insert("alice", "sk-a").unwrap();
        let mut b = KeySet::new();
        b.insert("alice", &crate::key_digest("sk-a")).unwrap();
        assert_eq!(a, b, "a key and its digest are the same key");
        b.insert("alice", "sk-other").unwrap();
        assert_ne!(a, b, "same label, another key");
        let mut c = KeySet::new();
        c.insert("bob", "sk-a").unwrap();
        assert_ne!(a, c, "same key, another label");
        let mut d = KeySet::new();
        d.insert_expiring("alice", "sk-a", SystemTime::now())
            .unwrap();
        assert_ne!(a, d, "same key and label, an expiry");
        assert_eq!(a.get("alice").map(KeyEntry::label), Some("alice"));
        assert!(a.get("bob").is_none());
    }
    use crate::key_digest;

    #[test]
    fn insert_lookup_remove() {
        let mut set = KeySet::new();
        set.insert("alice", "sk-a").unwrap();
        set.insert("bob", &key_digest("sk-b")).unwrap();
        assert_eq!(&*set.lookup(&sha256(b"sk-a")).unwrap().label, "alice");
        assert_eq!(&*set.lookup(&sha256(b"sk-b")).unwrap().label, "bob");
        assert!(set.lookup(&sha256(b"sk-c")).is_none());
        // Re-inserting a label replaces its key.
        set.insert("alice", "sk-a2").unwrap();
        assert!(set.lookup(&sha256(b"sk-a")).is_none());
        assert_eq!(set.len(), 2);
        assert!(set.remove("bob"));
        assert!(!set.remove("bob"));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn errors_explain_the_fix() {
        let mut set = KeySet::new();
        assert_eq!(set.insert("", "k"), Err(KeySetError::EmptyLabel));
        assert_eq!(set.insert("a", " "), Err(KeySetError::EmptyKey("a".into())));
        assert_eq!(
            set.insert("a", "sha256:00"),
            Err(KeySetError::BadDigest("a".into()))
        );
        set.insert("a", "sk-same").unwrap();
        let err = set.insert("b", "sk-same").unwrap_err();
        assert!(err.to_string().contains("\"a\""), "{err}");
    }

    #[test]
    fn expired_entries_are_pruned() {
        let now = SystemTime::now();
        let mut set = KeySet::new();
        set.insert_expiring("old", "sk-old", now - Duration::from_secs(1))
            .unwrap();
        set.insert_expiring("new", "sk-new", now + Duration::from_secs(60))
            .unwrap();
        set.insert("forever", "sk-f").unwrap();
        assert_eq!(set.remove_expired(now), 1);
        assert_eq!(labels(&set).len(), 2);
    }

    #[test]
    fn uppercase_digests_are_digests() {
        let mut set = KeySet::new();
        let upper = key_digest("sk-u").to_uppercase();
        set.insert("u", &upper).unwrap();
        assert!(set.lookup(&sha256(b"sk-u")).is_some());
        assert!(set.lookup(&sha256(upper.as_bytes())).is_none());
        assert_eq!(
            set.insert("v", "SHA256:abc"),
            Err(KeySetError::BadDigest("v".into()))
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn a_repeated_label_in_a_list_is_an_error() {
        let err = serde_json::from_str::<KeySet>(
            r#"[{"label":"ci","key":"sk-1"},{"label":" ci","key":"sk-2"}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"ci\" appears more than once"), "{err}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip_writes_digests_only() {
        let set: KeySet = serde_json::from_str(
            r#"[{"label":"alice","key":"sk-alice"},{"label":"ci","key":"sk-ci","expires_at":4102444800}]"#,
        )
        .unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert!(
            !json.contains("sk-alice") && json.contains("sha256:"),
            "{json}"
        );
        let again: KeySet = serde_json::from_str(&json).unwrap();
        assert_eq!(labels(&again), labels(&set));
        assert!(again.lookup(&sha256(b"sk-ci")).is_some());
        let err = serde_json::from_str::<KeySet>(r#"[{"label":"x","key":""}]"#).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn scopes_survive_a_round_trip_and_a_bad_one_is_an_error() {
        let set: KeySet = serde_json::from_str(
            r#"[{"label":"a","key":"sk-a","models":["gpt-4o-mini"],"routes":["/v1/chat/"],"allowed_ips":["10.0.0.0/8"]}]"#,
        )
        .unwrap();
        let again: KeySet = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
        assert_eq!(again, set);
        let entry = again.get("a").unwrap();
        assert_eq!(
            entry.routes().unwrap(),
            ["/v1/chat"],
            "stored without the trailing slash"
        );
        let err = serde_json::from_str::<KeySet>(r#"[{"label":"a","key":"sk-a","routes":[]}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes is an empty list"), "{err}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn expiry_survives_a_round_trip_never_earlier() {
        let second = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let mut set = KeySet::new();
        set.insert_expiring("whole", "sk-w", second).unwrap();
        set.insert_expiring("half", "sk-h", second + Duration::from_millis(500))
            .unwrap();
        set.insert_expiring("nano", "sk-n", second + Duration::from_nanos(1))
            .unwrap();
        set.insert_expiring("old", "sk-o", UNIX_EPOCH - Duration::from_secs(5))
            .unwrap();
        let json = serde_json::to_string(&set).unwrap();
        let again: KeySet = serde_json::from_str(&json).unwrap();
        let next = second + Duration::from_secs(1);
        assert_eq!(
            labels(&again),
            vec![
                ("half".to_owned(), Some(next)),
                ("nano".to_owned(), Some(next)),
                ("old".to_owned(), Some(UNIX_EPOCH)),
                ("whole".to_owned(), Some(second)),
            ]
        );
        // Each key lives at least as long as given, and at most a second more.
        for ((label, before), (_, after)) in labels(&set).into_iter().zip(labels(&again)) {
            let (before, after) = (before.unwrap(), after.unwrap());
            let given = before.max(UNIX_EPOCH);
            let later = after.duration_since(given);
            assert!(later.is_ok_and(|d| d < Duration::from_secs(1)), "{label}");
        }
        // A second round trip changes nothing.
        assert_eq!(serde_json::to_string(&again).unwrap(), json);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn out_of_range_expiry_is_an_error_not_a_panic() {
        let json = format!(
            r#"[{{"label":"x","key":"sk-x","expires_at":{}}}]"#,
            u64::MAX
        );
        let err = serde_json::from_str::<KeySet>(&json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn labels_are_trimmed() {
        let mut set = KeySet::new();
        set.insert(" alice ", "sk-a").unwrap();
        assert!(set.remove("alice"));
        assert!(set.is_empty());
    }

    #[test]
    fn debug_shows_labels_only() {
        let mut set = KeySet::new();
        set.insert("alice", "sk-secret-alice").unwrap();
        let debug = format!("{set:?}");
        assert_eq!(debug, r#"{"alice"}"#);
    }
}
