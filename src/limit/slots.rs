//! The concurrency limit: a count of a key's requests in flight, and the
//! [`Slot`] each one holds until its response is done.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A key's requests in flight. Shared by every policy the key's label stays
/// in, so a reload (even one that changes `max_concurrent`) still counts the
/// requests already running.
#[derive(Debug, Default)]
pub(crate) struct InFlight(AtomicU32);

impl InFlight {
    /// Takes a slot if fewer than `max` are taken; otherwise how many are.
    #[inline]
    pub(crate) fn acquire(self: &Arc<Self>, max: u32) -> Result<Slot, u32> {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return Err(current);
            }
            match self.0.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(Slot {
                        in_flight: Some(Arc::clone(self)),
                        #[cfg(feature = "metrics")]
                        gauge: None,
                    })
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// How many are in flight now.
    pub(crate) fn current(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One request's place in its key's [`InFlight`]; given back when dropped.
/// Moves from the decision into the response future, then into the
/// response body, so a streamed response holds it to its last frame.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    in_flight: Option<Arc<InFlight>>,
    /// Feature `metrics`, with key labels on: the label whose in-flight
    /// gauge follows this slot.
    #[cfg(feature = "metrics")]
    gauge: Option<Arc<str>>,
}

impl Slot {
    /// Whether this is a slot of some key's count.
    #[inline]
    pub(crate) fn is_held(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Makes the key's in-flight gauge follow this slot: set now, and again
    /// when the slot is given back.
    #[cfg(feature = "metrics")]
    pub(crate) fn follow_gauge(&mut self, label: &Arc<str>) {
        if let Some(in_flight) = &self.in_flight {
            crate::metrics::set_in_flight(label, in_flight.current());
            self.gauge = Some(Arc::clone(label));
        }
    }

    /// Gives the slot back now.
    #[inline]
    pub(crate) fn release(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            let left = in_flight.0.fetch_sub(1, Ordering::Release) - 1;
            #[cfg(feature = "metrics")]
            if let Some(label) = self.gauge.take() {
                crate::metrics::set_in_flight(&label, left);
            }
            let _ = left;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exact_and_given_back() {
        let in_flight = Arc::new(InFlight::default());
        let a = in_flight.acquire(2).unwrap();
        let mut b = in_flight.acquire(2).unwrap();
        assert_eq!(in_flight.acquire(2).unwrap_err(), 2);
        b.release();
        b.release();
        assert_eq!(in_flight.current(), 1, "released once");
        drop(b);
        let c = in_flight.acquire(2).unwrap();
        drop((a, c));
        assert_eq!(in_flight.current(), 0);
    }

    #[test]
    fn exact_under_contention() {
        let in_flight = Arc::new(InFlight::default());
        let held = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(slot) = in_flight.acquire(5) {
                            held.lock().unwrap().push(slot);
                        }
                    }
                });
            }
        });
        assert_eq!(held.lock().unwrap().len(), 5);
        assert_eq!(in_flight.current(), 5);
    }
}
