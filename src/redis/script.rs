//! The two Lua scripts the replicas run on Redis, and what their answers
//! mean. Keys and values travel as `KEYS` and `ARGV`, never inside the
//! script's text, so the script is one text (one SHA-1) for every key.

use std::time::Duration;

use crate::Limits;

/// One GCRA step for one key, atomically, on the Redis server's clock, in
/// microseconds: the step of `src/limit/gcra.rs`, with the TAT in Redis.
///
/// `KEYS[1]` holds the key's theoretical arrival time (TAT); `ARGV[1]` is
/// the interval between requests at the sustained rate, `ARGV[2]` the
/// tolerance (`(burst - 1)` intervals). The answer is `{1, 0, reset}` when
/// the request passes (and is spent), `{0, wait, reset}` when it is
/// refused (and nothing is spent), `reset` being how long until the whole
/// burst is back. A pass writes the new TAT with a `PX` of exactly that
/// `reset`, so an idle key vanishes when its bucket is full again.
///
/// The microsecond clock fits a Lua number (a double) exactly; nanoseconds
/// since 1970 would not.
pub(crate) const RATE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
-- Anything but a number this script wrote (another type, garbage, NaN)
-- counts as no state: the key is ours, and a step must never fail on it.
local stored = redis.pcall('GET', KEYS[1])
local tat = nil
if type(stored) == 'string' then tat = tonumber(stored) end
if tat == nil or tat ~= tat or tat < now then tat = now end
-- Further ahead than one step can put it (the server's clock went back, a
-- failover to a server whose clock is behind): clamped, so a key is never
-- refused for longer than its burst takes to refill.
if tat > now + tolerance + interval then tat = now + tolerance + interval end
local ahead = tat - now
if ahead > tolerance then
  return {0, ahead - tolerance, ahead}
end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000))
return {1, 0, next - now}
";

/// A replica says it is alive and learns how many are: `KEYS[1]` is a
/// sorted set of replica ids scored by when each one's presence ends
/// (milliseconds of the server's clock); `ARGV[1]` is this replica's id,
/// `ARGV[2]` how long its presence lasts. The answer is the count of
/// replicas present, this one included. The set itself expires with the
/// last presence, so a fleet that is gone leaves nothing behind.
pub(crate) const PRESENCE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'zset' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
";

/// A key's rate in the script's units: the interval and the tolerance in
/// microseconds. Rounded up like the local limiter's: never faster than
/// configured.
pub(crate) fn micros(limits: Limits) -> (u64, u64) {
    let rpm = u64::from(limits.rpm().unwrap_or(1).max(1));
    let burst = u64::from(limits.burst().unwrap_or(1).max(1));
    let interval = 60_000_000u64.div_ceil(rpm);
    (interval, interval * (burst - 1))
}

/// What the rate script said, in nanoseconds as the local limiter's
/// [`Step`](crate::limit::Step) says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Passed: nanoseconds until the burst is whole again, and requests
    /// still allowed back to back.
    Pass { reset: u64, remaining: u32 },
    /// Refused: nanoseconds until one request would pass, and until the
    /// burst is whole again.
    Refuse { wait: u64, reset: u64 },
}

impl Answer {
    /// The script's reply, checked: anything else than what the script
    /// returns is `None` (and treated as Redis being unavailable).
    pub(crate) fn parse(reply: &[i64], limits: Limits) -> Option<Answer> {
        let &[passed, wait, reset] = reply else {
            return None;
        };
        let (interval, tolerance) = micros(limits);
        let wait = u64::try_from(wait).ok()?;
        let reset = u64::try_from(reset).ok()?;
        // The script's own bounds: a reset past one step ahead cannot come
        // from it.
        if reset > tolerance + interval || wait > reset {
            return None;
        }
        let nanos = |us: u64| Duration::from_micros(us).as_nanos() as u64;
        match passed {
            1 if wait == 0 => {
                let remaining = match tolerance.checked_sub(reset) {
                    Some(left) => left / interval + 1,
                    None => 0,
                };
                Some(Answer::Pass {
                    reset: nanos(reset),
                    remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                })
            }
            0 => Some(Answer::Refuse {
                wait: nanos(wait),
                reset: nanos(reset),
            }),
            _ => None,
        }
    }

    /// Nanoseconds until the burst is whole again.
    pub(crate) fn reset(self) -> u64 {
        match self {
            Answer::Pass { reset, .. } | Answer::Refuse { reset, .. } => reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_up_like_the_local_limiter() {
        let limits = Limits::new(Some(60), Some(10), None).unwrap();
        assert_eq!(micros(limits), (1_000_000, 9_000_000));
        let odd = Limits::new(Some(7), Some(1), None).unwrap();
        assert_eq!(micros(odd), (8_571_429, 0));
        let max = Limits::new(Some(crate::limit::MAX), None, None).unwrap();
        assert_eq!(micros(max).0, 60);
    }

    #[test]
    fn answers_are_checked() {
        let limits = Limits::new(Some(60), Some(3), None).unwrap();
        assert_eq!(
            Answer::parse(&[1, 0, 1_000_000], limits),
            Some(Answer::Pass {
                reset: 1_000_000_000,
                remaining: 2
            })
        );
        assert_eq!(
            Answer::parse(&[1, 0, 3_000_000], limits),
            Some(Answer::Pass {
                reset: 3_000_000_000,
                remaining: 0
            })
        );
        assert_eq!(
            Answer::parse(&[0, 250_000, 2_250_000], limits),
            Some(Answer::Refuse {
                wait: 250_000_000,
                reset: 2_250_000_000
            })
        );
        for wrong in [
            &[][..],
            &[1, 0],
            &[1, 0, 1, 4],
            &[2, 0, 1],
            &[1, 5, 10],
            &[0, -1, 5],
            &[0, 5, 4],
            &[1, 0, 3_000_001],
            &[0, 0, i64::MAX],
        ] {
            assert_eq!(Answer::parse(wrong, limits), None, "{wrong:?}");
        }
    }
}
