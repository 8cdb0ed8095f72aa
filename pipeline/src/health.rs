//! Health of a dependency: `up`, `down` or `draining`, with the transition
//! logged once. For Redis the deduct stage is the circuit breaker: the
//! first failure turns the state `down` and from then on no request waits
//! on Redis (they are decided `pending` at once) until the probe sees it
//! again (`draining`: the backlog is re-driven) and the backlog is empty
//! (`up`). A dead Redis costs one timeout, not one per request.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Up = 0,
    Down = 1,
    Draining = 2,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Draining => "draining",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Down,
            2 => State::Draining,
            _ => State::Up,
        }
    }
}

#[derive(Debug)]
pub struct Health {
    name: &'static str,
    state: AtomicU8,
    transitions: AtomicU64,
    /// Wall-clock ms of the last transition (0: none since the start).
    changed_ms: AtomicU64,
    last_error: Mutex<String>,
}

impl Health {
    pub fn new(name: &'static str, initial: State) -> Health {
        Health {
            name,
            state: AtomicU8::new(initial as u8),
            transitions: AtomicU64::new(0),
            changed_ms: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves to `to` if the state is one of `from`; logs the transition.
    /// Returns whether it moved.
    pub fn transition(&self, from: &[State], to: State, why: &str) -> bool {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let s = State::from_u8(cur);
            if s == to || !from.contains(&s) {
                return false;
            }
            match self
                .state
                .compare_exchange(cur, to as u8, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.transitions.fetch_add(1, Ordering::Relaxed);
                    self.changed_ms
                        .store(crate::clock::now_ms(), Ordering::Relaxed);
                    if to == State::Down {
                        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                            why.to_string();
                        tracing::warn!(
                            dependency = self.name,
                            from = s.as_str(),
                            to = to.as_str(),
                            reason = why,
                            "dependency health changed"
                        );
                    } else {
                        tracing::info!(
                            dependency = self.name,
                            from = s.as_str(),
                            to = to.as_str(),
                            reason = why,
                            "dependency health changed"
                        );
                    }
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// A failure seen on the hot path or by the probe.
    pub fn fail(&self, why: &str) -> bool {
        self.transition(&[State::Up, State::Draining], State::Down, why)
    }

    /// Wall-clock ms (epoch) of the last transition; 0 when the state has
    /// not changed since the start.
    pub fn changed_ms(&self) -> u64 {
        self.changed_ms.load(Ordering::Relaxed)
    }

    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_only_move_from_the_allowed_states() {
        let h = Health::new("redis", State::Up);
        assert!(h.fail("timeout"));
        assert!(
            !h.fail("timeout again"),
            "already down: no second transition"
        );
        assert!(!h.transition(&[State::Draining], State::Up, "x"));
        assert!(h.transition(&[State::Down], State::Draining, "probe ok"));
        assert!(h.transition(&[State::Draining], State::Up, "backlog empty"));
        assert_eq!(h.transitions(), 3);
        assert!(h.changed_ms() > 0);
        assert_eq!(h.last_error(), "timeout");
    }
}
