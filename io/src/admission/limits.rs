//! Admission before the ring: a global rate limit, per-IP and per-user
//! token buckets (`governor`), and the blacklist. Every check is an
//! in-process lookup; nothing here touches the network per request.
//!
//! Fleet-wide limits are shares: with `n` daemons alive (the fleet hash
//! the dashboard task reads once a second), every admission costs `n`
//! cells of a bucket sized for the whole fleet, so each daemon admits
//! `1/n` of the configured rate and burst. Behind a balancer that spreads
//! requests evenly (round-robin, least connections) the fleet admits the
//! configured rate; docs/deploy.md says what a sticky balancer does.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Global,
    Ip,
    User,
}

/// A refusal and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limited,
    pub retry_after: Duration,
}

fn quota(per_s: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_s)?;
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The configured limits (a rate of 0 turns a limit off).
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitConfig {
    pub global_per_s: u32,
    pub global_burst: u32,
    pub ip_per_s: u32,
    pub ip_burst: u32,
    pub user_per_s: u32,
    pub user_burst: u32,
}

pub struct Limits {
    clock: DefaultClock,
    /// Configured bursts (global, ip, user): an admission never costs
    /// more cells than a bucket holds.
    bursts: [u32; 3],
    /// Daemons sharing the limits (1: this daemon's alone).
    share: AtomicU32,
    global: Option<DefaultDirectRateLimiter>,
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Keyed by a hash of the user id: no allocation per check; a
    /// collision only makes two users share a bucket.
    user: Option<DefaultKeyedRateLimiter<u64>>,
    users_blocked: RwLock<HashSet<String>>,
    ips_blocked: RwLock<HashSet<IpAddr>>,
    /// Refusals by limit (global, ip, user).
    refused: [AtomicU64; 3],
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("global", &self.global.is_some())
            .field("ip", &self.ip.is_some())
            .field("user", &self.user.is_some())
            .finish_non_exhaustive()
    }
}

fn user_key(user: &str) -> u64 {
    let mut h = DefaultHasher::new();
    user.hash(&mut h);
    h.finish()
}

impl Limits {
    pub fn new(c: LimitConfig) -> Limits {
        let burst = |per_s: u32, b: u32| if per_s == 0 { 1 } else { b.max(1) };
        Limits {
            clock: DefaultClock::default(),
            bursts: [
                burst(c.global_per_s, c.global_burst),
                burst(c.ip_per_s, c.ip_burst),
                burst(c.user_per_s, c.user_burst),
            ],
            share: AtomicU32::new(1),
            global: quota(c.global_per_s, c.global_burst).map(RateLimiter::direct),
            ip: quota(c.ip_per_s, c.ip_burst).map(RateLimiter::keyed),
            user: quota(c.user_per_s, c.user_burst).map(RateLimiter::keyed),
            users_blocked: RwLock::default(),
            ips_blocked: RwLock::default(),
            refused: Default::default(),
        }
    }

    fn refuse(
        &self,
        limit: Limited,
        nu: governor::NotUntil<<DefaultClock as Clock>::Instant>,
    ) -> Refusal {
        self.refused[limit as usize].fetch_add(1, Ordering::Relaxed);
        Refusal {
            limit,
            retry_after: nu.wait_time_from(self.clock.now()),
        }
    }

    /// Sets how many daemons share the limits (at least 1).
    pub fn set_share(&self, daemons: u32) {
        let n = daemons.max(1);
        if self.share.swap(n, Ordering::Relaxed) != n {
            tracing::info!(daemons = n, "rate limits shared by the fleet");
        }
    }

    /// How many daemons share the limits.
    pub fn share(&self) -> u32 {
        self.share.load(Ordering::Relaxed)
    }

    /// Cells one admission costs against `limit`'s bucket: the number of
    /// daemons sharing it, never more than the bucket holds.
    fn cost(&self, limit: Limited) -> NonZeroU32 {
        let n = self.share().min(self.bursts[limit as usize]);
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    /// Refusal for a governor answer (`InsufficientCapacity` cannot
    /// happen: the cost is capped at the burst).
    fn judge(
        &self,
        limit: Limited,
        r: Result<
            Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
            governor::InsufficientCapacity,
        >,
    ) -> Result<(), Refusal> {
        match r {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(nu)) => Err(self.refuse(limit, nu)),
        }
    }

    /// The global admission limit and the client's IP bucket: checked
    /// before the body is read.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        if let Some(g) = &self.global {
            self.judge(Limited::Global, g.check_n(self.cost(Limited::Global)))?;
        }
        if let Some(l) = &self.ip {
            self.judge(Limited::Ip, l.check_key_n(&ip, self.cost(Limited::Ip)))?;
        }
        Ok(())
    }

    /// The user's bucket: checked once the request proved who it is for
    /// (a valid token), so nobody can drain another user's bucket.
    pub fn admit_user(&self, user: &str) -> Result<(), Refusal> {
        if let Some(l) = &self.user {
            let key = user_key(user);
            self.judge(Limited::User, l.check_key_n(&key, self.cost(Limited::User)))?;
        }
        Ok(())
    }

    pub fn user_blocked(&self, user: &str) -> bool {
        let set = self.users_blocked.read().unwrap_or_else(|p| p.into_inner());
        !set.is_empty() && set.contains(user)
    }

    pub fn ip_blocked(&self, ip: IpAddr) -> bool {
        let set = self.ips_blocked.read().unwrap_or_else(|p| p.into_inner());
        !set.is_empty() && set.contains(&ip)
    }

    /// Replaces the blacklist with what Redis holds.
    pub fn set_blacklist(&self, users: HashSet<String>, ips: HashSet<IpAddr>) {
        *self
            .users_blocked
            .write()
            .unwrap_or_else(|p| p.into_inner()) = users;
        *self.ips_blocked.write().unwrap_or_else(|p| p.into_inner()) = ips;
    }

    pub fn block_user(&self, user: &str, blocked: bool) {
        let mut set = self
            .users_blocked
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if blocked {
            set.insert(user.to_string());
        } else {
            set.remove(user);
        }
    }

    pub fn block_ip(&self, ip: IpAddr, blocked: bool) {
        let mut set = self.ips_blocked.write().unwrap_or_else(|p| p.into_inner());
        if blocked {
            set.insert(ip);
        } else {
            set.remove(&ip);
        }
    }

    pub fn blacklist(&self) -> (Vec<String>, Vec<IpAddr>) {
        let mut users: Vec<String> = self
            .users_blocked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut ips: Vec<IpAddr> = self
            .ips_blocked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        users.sort();
        ips.sort();
        (users, ips)
    }

    /// Forgets buckets that are full again, so the keyed state stays as
    /// small as the set of recently active users and IPs.
    pub fn housekeeping(&self) {
        if let Some(l) = &self.ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.user {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Refusals so far, by limit.
    pub fn refusals(&self) -> [(&'static str, u64); 3] {
        let n = |l: Limited| self.refused[l as usize].load(Ordering::Relaxed);
        [
            ("global", n(Limited::Global)),
            ("ip", n(Limited::Ip)),
            ("user", n(Limited::User)),
        ]
    }

    /// Keys held by the per-IP and per-user limiters.
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.ip.as_ref().map_or(0, |l| l.len()),
            self.user.as_ref().map_or(0, |l| l.len()),
        )
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_bucket_refuses_past_its_burst_and_others_are_untouched() {
        let l = Limits::new(LimitConfig {
            user_per_s: 1,
            user_burst: 2,
            ..LimitConfig::default()
        });
        assert!(l.admit_user("a").is_ok());
        assert!(l.admit_user("a").is_ok());
        let r = l.admit_user("a").expect_err("third in a burst of 2");
        assert_eq!(r.limit, Limited::User);
        assert!(r.retry_after > Duration::ZERO && r.retry_after <= Duration::from_secs(1));
        assert!(l.admit_user("b").is_ok());
        assert_eq!(retry_after_secs(r.retry_after), 1);
    }

    #[test]
    fn a_share_of_the_fleet_admits_its_part_of_the_burst() {
        let l = Limits::new(LimitConfig {
            user_per_s: 1,
            user_burst: 9,
            global_per_s: 1,
            global_burst: 2,
            ..LimitConfig::default()
        });
        l.set_share(3);
        for _ in 0..3 {
            assert!(l.admit_user("a").is_ok());
        }
        assert_eq!(l.admit_user("a").map_err(|r| r.limit), Err(Limited::User));
        // A share larger than the bucket costs the whole bucket, not a
        // refusal for ever.
        let ip = IpAddr::from([10, 0, 0, 1]);
        assert!(l.admit(ip).is_ok());
        assert_eq!(l.admit(ip).map_err(|r| r.limit), Err(Limited::Global));
        l.set_share(0);
        assert_eq!(l.share(), 1);
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let l = Limits::new(LimitConfig::default());
        for _ in 0..10_000 {
            assert!(l.admit(IpAddr::from([127, 0, 0, 1])).is_ok());
            assert!(l.admit_user("u").is_ok());
        }
    }

    #[test]
    fn global_and_ip_limits_refuse_naming_their_limit() {
        let ip = IpAddr::from([10, 0, 0, 1]);
        let l = Limits::new(LimitConfig {
            ip_per_s: 1,
            ip_burst: 1,
            ..LimitConfig::default()
        });
        assert!(l.admit(ip).is_ok());
        assert_eq!(l.admit(ip).map_err(|r| r.limit), Err(Limited::Ip));
        assert!(l.admit(IpAddr::from([10, 0, 0, 2])).is_ok());
        let g = Limits::new(LimitConfig {
            global_per_s: 1,
            global_burst: 1,
            ..LimitConfig::default()
        });
        assert!(g.admit(ip).is_ok());
        assert_eq!(g.admit(ip).map_err(|r| r.limit), Err(Limited::Global));
    }

    #[test]
    fn the_blacklist_blocks_and_unblocks() {
        let l = Limits::new(LimitConfig::default());
        assert!(!l.user_blocked("x"));
        l.block_user("x", true);
        assert!(l.user_blocked("x"));
        l.block_user("x", false);
        assert!(!l.user_blocked("x"));
        let ip = IpAddr::from([1, 2, 3, 4]);
        l.block_ip(ip, true);
        assert!(l.ip_blocked(ip));
        l.set_blacklist(HashSet::new(), HashSet::new());
        assert!(!l.ip_blocked(ip));
    }
}
