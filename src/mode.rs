//! [`ProxyAuthMode`]: which requests need a key, and how `auto` resolves.

use std::fmt;
use std::str::FromStr;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Which requests the proxy requires an API key for.
///
/// Serialized as the snake_case strings `"off"`, `"strict"`,
/// `"all_except_health"` and `"auto"`; [`FromStr`] and [`Display`](fmt::Display)
/// use the same strings, so a value read from an environment variable and one
/// read from a config file mean the same thing.
///
/// The mode actually enforced is
/// [`ProxySecurityConfig::effective_auth_mode`](crate::ProxySecurityConfig::effective_auth_mode),
/// which never returns [`Auto`](ProxyAuthMode::Auto).
///
/// `OPTIONS` requests (CORS preflight) pass in every mode: browsers send them
/// without credentials, so requiring a key would break every web client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ProxyAuthMode {
    /// No request needs a key.
    Off,
    /// Every request needs a key, health checks included.
    Strict,
    /// Every request needs a key except the exempt paths (by default only
    /// `/healthz`), so load balancers can probe without a secret.
    AllExceptHealth,
    /// `Off` while the proxy only listens on loopback (`allow_lan_access` is
    /// false), `AllExceptHealth` once it is reachable from the network.
    #[default]
    Auto,
}

impl ProxyAuthMode {
    /// Every mode, in the order the error messages list them.
    pub const ALL: [ProxyAuthMode; 4] = [
        ProxyAuthMode::Off,
        ProxyAuthMode::Strict,
        ProxyAuthMode::AllExceptHealth,
        ProxyAuthMode::Auto,
    ];

    /// The mode's configuration string, e.g. `"all_except_health"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ProxyAuthMode::Off => "off",
            ProxyAuthMode::Strict => "strict",
            ProxyAuthMode::AllExceptHealth => "all_except_health",
            ProxyAuthMode::Auto => "auto",
        }
    }

    /// Resolves `Auto` against the LAN setting; every other mode is returned
    /// unchanged.
    ///
    /// A proxy bound to loopback only is reachable by local programs, which
    /// could read its config file anyway, so `auto` leaves it open; once it
    /// listens on the LAN, everything but health checks needs the key.
    #[must_use]
    pub const fn resolve(self, allow_lan_access: bool) -> ProxyAuthMode {
        match self {
            ProxyAuthMode::Auto if allow_lan_access => ProxyAuthMode::AllExceptHealth,
            ProxyAuthMode::Auto => ProxyAuthMode::Off,
            other => other,
        }
    }
}

impl fmt::Display for ProxyAuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string is not one of the four modes.
///
/// Its message names the valid values, so it can be shown as is to whoever
/// wrote the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid proxy auth mode {input:?}: expected one of \"off\", \"strict\", \"all_except_health\", \"auto\""
)]
pub struct ParseModeError {
    input: String,
}

impl FromStr for ProxyAuthMode {
    type Err = ParseModeError;

    /// Parses the exact configuration strings. Surrounding whitespace is
    /// ignored (values from shells and `.env` files often carry it); case is
    /// not, to stay identical to the serde representation.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        ProxyAuthMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == trimmed)
            .ok_or_else(|| ParseModeError {
                // Bounded so a huge bogus value cannot flood a log line.
                input: trimmed.chars().take(64).collect(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_auto() {
        assert_eq!(ProxyAuthMode::default(), ProxyAuthMode::Auto);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_uses_snake_case_strings() {
        for (mode, s) in [
            (ProxyAuthMode::Off, "\"off\""),
            (ProxyAuthMode::Strict, "\"strict\""),
            (ProxyAuthMode::AllExceptHealth, "\"all_except_health\""),
            (ProxyAuthMode::Auto, "\"auto\""),
        ] {
            assert_eq!(serde_json::to_string(&mode).unwrap(), s);
            assert_eq!(serde_json::from_str::<ProxyAuthMode>(s).unwrap(), mode);
        }
        assert!(serde_json::from_str::<ProxyAuthMode>("\"AllExceptHealth\"").is_err());
        assert!(serde_json::from_str::<ProxyAuthMode>("\"on\"").is_err());
    }

    #[test]
    fn from_str_and_display_round_trip() {
        for mode in ProxyAuthMode::ALL {
            assert_eq!(mode.to_string().parse::<ProxyAuthMode>(), Ok(mode));
        }
        assert_eq!(
            " strict\n".parse::<ProxyAuthMode>(),
            Ok(ProxyAuthMode::Strict)
        );
    }

    #[test]
    fn parse_error_lists_valid_values() {
        let err = "STRICT".parse::<ProxyAuthMode>().unwrap_err().to_string();
        assert!(err.contains("\"STRICT\""), "{err}");
        for mode in ProxyAuthMode::ALL {
            assert!(err.contains(mode.as_str()), "{err}");
        }
    }

    #[test]
    fn auto_resolves_by_lan_access() {
        assert_eq!(ProxyAuthMode::Auto.resolve(false), ProxyAuthMode::Off);
        assert_eq!(
            ProxyAuthMode::Auto.resolve(true),
            ProxyAuthMode::AllExceptHealth
        );
        for lan in [false, true] {
            for mode in [
                ProxyAuthMode::Off,
                ProxyAuthMode::Strict,
                ProxyAuthMode::AllExceptHealth,
            ] {
                assert_eq!(mode.resolve(lan), mode);
            }
        }
    }
}
