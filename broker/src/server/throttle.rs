//! Client quota enforcement (Kafka's ClientQuotaManager for `producer_byte_rate` and
//! `consumer_byte_rate`, ClientRequestQuotaManager for `request_percentage`): the bytes each
//! (user, client id) produces and fetches, and the time its requests keep the broker busy, are
//! measured over `quota.window.num` samples of `quota.window.size.seconds`; a client over its
//! quota is told how long to back off (`throttle_time_ms`, KIP-219) and its connection reads
//! nothing more for that long, so it slows down instead of failing.
//!
//! Which quota applies follows Kafka's precedence, most specific first: (user, client id),
//! (user, default client id), user, (default user, client id), (default user, default client
//! id), default user, client id, default client id. The rate is kept per the matched entity's
//! kinds: a default user quota is each user's own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::quotas::{ClientQuotas, EntityType, QuotaEntity};

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// `producer_byte_rate`: bytes of Produce requests.
    Produce,
    /// `consumer_byte_rate`: record bytes of Fetch responses.
    Fetch,
    /// `request_percentage`: the time requests keep the broker busy, as a percentage of one
    /// thread.
    Request,
    /// `connection_creation_rate`: connections accepted from one IP a second.
    Connection,
    /// `controller_mutation_rate`: partitions created or deleted a second.
    Mutation,
}

impl QuotaKind {
    fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => "producer_byte_rate",
            QuotaKind::Fetch => "consumer_byte_rate",
            QuotaKind::Request => "request_percentage",
            QuotaKind::Connection => "connection_creation_rate",
            QuotaKind::Mutation => "controller_mutation_rate",
        }
    }
}

/// The quota that applies to `user` and `client_id` for `kind`: its limit (bytes a second)
/// and the (user, client id) its rate is kept under.
pub fn applicable(
    quotas: &ClientQuotas,
    kind: QuotaKind,
    user: &str,
    client_id: &str,
) -> Option<(f64, (String, String))> {
    if quotas.is_empty() {
        return None;
    }
    let named = |s: &str| Some(Some(s.to_string()));
    let default: Option<Option<String>> = Some(None);
    // (user component, client component) in Kafka's order of precedence.
    let order = [
        (named(user), named(client_id)),
        (named(user), default.clone()),
        (named(user), None),
        (default.clone(), named(client_id)),
        (default.clone(), default.clone()),
        (default.clone(), None),
        (None, named(client_id)),
        (None, default),
    ];
    order.into_iter().find_map(|(u, c)| {
        let mut entity = std::collections::BTreeMap::new();
        if let Some(u) = &u {
            entity.insert(EntityType::User, u.clone());
        }
        if let Some(c) = &c {
            entity.insert(EntityType::ClientId, c.clone());
        }
        let limit = *quotas.get(&QuotaEntity(entity))?.get(kind.key())?;
        let tag = |on: bool, v: &str| if on { v.to_string() } else { String::new() };
        Some((limit, (tag(u.is_some(), user), tag(c.is_some(), client_id))))
    })
}

/// A rate over a sliding run of fixed windows (Kafka's `Rate` over a `SampledStat`).
#[derive(Debug, Default)]
struct SampledRate {
    /// (window start, bytes in it), oldest first.
    samples: std::collections::VecDeque<(Instant, f64)>,
}

impl SampledRate {
    fn record(&mut self, value: f64, now: Instant, window: Duration, count: usize) {
        match self.samples.back_mut() {
            Some((start, sum)) if now.duration_since(*start) < window => *sum += value,
            _ => self.samples.push_back((now, value)),
        }
        let span = window * count as u32;
        while self
            .samples
            .front()
            .is_some_and(|(start, _)| now.duration_since(*start) >= span)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes a second over the samples kept; the window counts at least `count - 1` full
    /// windows, so a first burst is not measured over a few milliseconds.
    fn rate(&self, now: Instant, window: Duration, count: usize) -> (f64, Duration) {
        let total: f64 = self.samples.iter().map(|(_, v)| v).sum();
        let elapsed = self
            .samples
            .front()
            .map_or(Duration::ZERO, |(start, _)| now.duration_since(*start));
        let span = elapsed.max(window * (count.saturating_sub(1)) as u32);
        (total / span.as_secs_f64().max(1e-3), span)
    }
}

/// The measured rates of every (kind, user, client id) with a quota.
#[derive(Debug)]
pub struct Throttler {
    window: Duration,
    count: usize,
    rates: parking_lot::Mutex<HashMap<(QuotaKind, String, String), SampledRate>>,
    /// When idle rates were last dropped.
    pruned: parking_lot::Mutex<Option<Instant>>,
}

impl Throttler {
    /// Rates over `count` windows of `window` each (`quota.window.num`,
    /// `quota.window.size.seconds`).
    pub fn new(window: Duration, count: usize) -> Throttler {
        Throttler {
            window,
            count: count.max(1),
            rates: parking_lot::Mutex::new(HashMap::new()),
            pruned: parking_lot::Mutex::new(None),
        }
    }

    /// Records `bytes` of `kind` by `user` / `client_id` at `now`; how long the client must
    /// back off (zero when within its quota, or without one).
    pub fn record(
        &self,
        quotas: &ClientQuotas,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        bytes: u64,
        now: Instant,
    ) -> Duration {
        self.add(quotas, kind, (user, client_id), bytes as f64, now)
    }

    /// Records `busy`, the time a request of `user` / `client_id` kept the broker busy, against
    /// its `request_percentage` (a percentage of one thread: the value is seconds × 100, as
    /// Kafka's `nanosToPercentage`); how long the client must back off, at most one window, as
    /// Kafka bounds request throttling.
    pub fn record_time(
        &self,
        quotas: &ClientQuotas,
        user: &str,
        client_id: &str,
        busy: Duration,
        now: Instant,
    ) -> Duration {
        let value = busy.as_secs_f64() * 100.0;
        let throttle = self.add(quotas, QuotaKind::Request, (user, client_id), value, now);
        throttle.min(self.window)
    }

    /// Takes back `bytes` recorded at about `now` (a throttled fetch that answered nothing).
    pub fn unrecord(
        &self,
        quotas: &ClientQuotas,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        bytes: u64,
        now: Instant,
    ) {
        self.add(quotas, kind, (user, client_id), -(bytes as f64), now);
    }

    fn add(
        &self,
        quotas: &ClientQuotas,
        kind: QuotaKind,
        (user, client_id): (&str, &str),
        value: f64,
        now: Instant,
    ) -> Duration {
        let Some((limit, (u, c))) = applicable(quotas, kind, user, client_id) else {
            return Duration::ZERO;
        };
        let mut rates = self.rates.lock();
        self.prune(&mut rates, now);
        let rate = rates.entry((kind, u, c)).or_default();
        rate.record(value, now, self.window, self.count);
        self.over(rate, limit, now)
    }

    /// Records a connection accepted from `ip` against its `connection_creation_rate` (its
    /// own, else the default IP quota; KIP-612); how long to hold it before closing it unread,
    /// at most one window, when it is over the rate. A throttled connection is taken back out
    /// of the rate, as Kafka's ConnectionQuotas does.
    pub fn record_connection(&self, quotas: &ClientQuotas, ip: IpAddr, now: Instant) -> Duration {
        if quotas.is_empty() {
            return Duration::ZERO;
        }
        let ip = ip.to_canonical();
        const KEY: &str = "connection_creation_rate";
        // The address's own quota (its name read as an address, however it was written),
        // else the default IP quota.
        let own = quotas.iter().find_map(|(entity, values)| {
            let name = entity.0.get(&EntityType::Ip)?.as_deref()?;
            let named: IpAddr = name.parse().ok()?;
            (named.to_canonical() == ip).then(|| values.get(KEY).copied())?
        });
        let default = || {
            let entity = QuotaEntity(std::collections::BTreeMap::from([(EntityType::Ip, None)]));
            quotas.get(&entity)?.get(KEY).copied()
        };
        let Some(limit) = own.or_else(default) else {
            return Duration::ZERO;
        };
        let ip = ip.to_string();
        let mut rates = self.rates.lock();
        self.prune(&mut rates, now);
        let rate = rates
            .entry((QuotaKind::Connection, ip, String::new()))
            .or_default();
        rate.record(1.0, now, self.window, self.count);
        let throttle = self.over(rate, limit, now);
        if !throttle.is_zero() {
            rate.record(-1.0, now, self.window, self.count);
        }
        throttle.min(self.window)
    }

    /// How long `rate` must rest to fall back to `limit`: Kafka's QuotaUtils.throttleTime,
    /// at most the whole measured window.
    fn over(&self, rate: &SampledRate, limit: f64, now: Instant) -> Duration {
        let (observed, span) = rate.rate(now, self.window, self.count);
        if observed <= limit {
            return Duration::ZERO;
        }
        bounded(span.as_secs_f64() * (observed - limit) / limit)
            .min(self.window * self.count as u32)
    }

    /// Drops the rates of clients (or addresses) not heard from for a whole measured window,
    /// once there are many: a default quota keeps one per client, and clients come and go.
    fn prune(&self, rates: &mut HashMap<(QuotaKind, String, String), SampledRate>, now: Instant) {
        if rates.len() < PRUNE_ABOVE {
            return;
        }
        // Once per measured window at most: when every rate is live, scanning again at each
        // request would cost more than the map.
        let span = self.window * self.count as u32;
        {
            let mut pruned = self.pruned.lock();
            if pruned.is_some_and(|at| now.saturating_duration_since(at) < span) {
                return;
            }
            *pruned = Some(now);
        }
        rates.retain(|_, r| {
            r.samples
                .back()
                .is_some_and(|(start, _)| now.duration_since(*start) < span)
        });
    }
}

/// The longest throttle time: what `throttle_time_ms` (an i32) can say.
const MAX_THROTTLE: Duration = Duration::from_millis(i32::MAX as u64);

/// `seconds` as a throttle time: zero when not positive (or NaN), at most [`MAX_THROTTLE`]
/// (a tiny quota must not overflow a `Duration` or an `Instant`).
fn bounded(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds).map_or(MAX_THROTTLE, |d| d.min(MAX_THROTTLE))
}

/// How many measured rates are kept before the idle ones are dropped.
const PRUNE_ABOVE: usize = 4096;

/// `controller_mutation_rate` (KIP-599): partitions created and deleted by CreateTopics,
/// CreatePartitions and DeleteTopics, taken from a token bucket per (user, client id) as
/// Kafka's ControllerMutationQuotaManager does. The bucket holds `rate × window.num ×
/// window.size` tokens and refills at `rate` a second; a mutation is allowed while it is not
/// negative (however far it then takes it below zero), and a client with a negative bucket
/// backs off until it is back to zero.
#[derive(Debug)]
pub struct MutationBuckets {
    /// Seconds of the rate the bucket holds.
    burst_seconds: f64,
    buckets: parking_lot::Mutex<HashMap<(String, String), TokenBucket>>,
    /// When full buckets were last dropped.
    pruned: parking_lot::Mutex<Option<Instant>>,
}

#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    at: Instant,
    /// The rate and capacity it last refilled with.
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// Whether it would be full again at `now` (and so is as good as a new one).
    fn full_at(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate >= self.burst
    }
}

impl MutationBuckets {
    /// Buckets holding `count` windows of `window` of each client's rate
    /// (`controller.quota.window.num`, `controller.quota.window.size.seconds`).
    pub fn new(window: Duration, count: usize) -> MutationBuckets {
        MutationBuckets {
            burst_seconds: window.as_secs_f64() * count.max(1) as f64,
            buckets: parking_lot::Mutex::new(HashMap::new()),
            pruned: parking_lot::Mutex::new(None),
        }
    }

    /// Runs `f` on the bucket of `user` / `client_id`'s quota, refilled to `now`, and its
    /// rate; `None` without a quota.
    fn with<T>(
        &self,
        quotas: &ClientQuotas,
        (user, client_id): (&str, &str),
        now: Instant,
        f: impl FnOnce(&mut TokenBucket, f64) -> T,
    ) -> Option<T> {
        let (rate, tags) = applicable(quotas, QuotaKind::Mutation, user, client_id)?;
        let burst = rate * self.burst_seconds;
        let mut buckets = self.buckets.lock();
        if buckets.len() >= PRUNE_ABOVE {
            // Full buckets are as good as new ones; looked for once a window's worth at most.
            let mut pruned = self.pruned.lock();
            let every = Duration::from_secs_f64(self.burst_seconds);
            if pruned.is_none_or(|at| now.saturating_duration_since(at) >= every) {
                *pruned = Some(now);
                buckets.retain(|_, b| !b.full_at(now));
            }
        }
        let bucket = buckets.entry(tags).or_insert(TokenBucket {
            tokens: burst,
            at: now,
            rate,
            burst,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        bucket.rate = rate;
        bucket.burst = burst;
        Some(f(bucket, rate))
    }

    /// How long `user` / `client_id` must back off before it may mutate again: zero while
    /// its bucket is not negative (or it has no quota).
    pub fn throttle(
        &self,
        quotas: &ClientQuotas,
        user: &str,
        client_id: &str,
        now: Instant,
    ) -> Duration {
        self.with(quotas, (user, client_id), now, |b, rate| {
            bounded(-b.tokens / rate)
        })
        .unwrap_or(Duration::ZERO)
    }

    /// Takes `partitions` created or deleted from the bucket of `user` / `client_id`.
    pub fn record(
        &self,
        quotas: &ClientQuotas,
        user: &str,
        client_id: &str,
        partitions: u32,
        now: Instant,
    ) {
        self.with(quotas, (user, client_id), now, |b, _| {
            b.tokens -= f64::from(partitions)
        });
    }
}

/// The user name quotas know a principal by: `User:alice` is `alice`.
pub fn quota_user(principal: &str) -> &str {
    principal.strip_prefix("User:").unwrap_or(principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quotas::{apply, entity};

    /// `(entity components, key, value)`.
    type Setting<'a> = (&'a [(&'a str, Option<&'a str>)], &'a str, f64);

    fn quotas(entries: &[Setting]) -> ClientQuotas {
        let mut q = ClientQuotas::new();
        for (components, key, value) in entries {
            apply(
                &mut q,
                &entity(components).expect("entity"),
                key,
                Some(*value),
            );
        }
        q
    }

    #[test]
    fn the_most_specific_quota_applies_in_kafkas_order() {
        let q = quotas(&[
            (&[("client-id", None)], "producer_byte_rate", 1.0),
            (&[("client-id", Some("app"))], "producer_byte_rate", 2.0),
            (&[("user", None)], "producer_byte_rate", 3.0),
            (&[("user", Some("alice"))], "producer_byte_rate", 4.0),
            (
                &[("user", Some("alice")), ("client-id", Some("app"))],
                "producer_byte_rate",
                5.0,
            ),
            (&[("user", Some("bob"))], "consumer_byte_rate", 6.0),
        ]);
        let p = QuotaKind::Produce;
        let tags = |u: &str, c: &str| (u.to_string(), c.to_string());
        assert_eq!(
            applicable(&q, p, "alice", "app"),
            Some((5.0, tags("alice", "app")))
        );
        assert_eq!(
            applicable(&q, p, "alice", "other"),
            Some((4.0, tags("alice", "")))
        );
        // bob's own quota is for fetching: the default user's applies, to bob alone.
        assert_eq!(
            applicable(&q, p, "bob", "app"),
            Some((3.0, tags("bob", "")))
        );
        assert_eq!(
            applicable(&q, QuotaKind::Fetch, "bob", "x"),
            Some((6.0, tags("bob", "")))
        );
        let clients_only = quotas(&[
            (&[("client-id", None)], "producer_byte_rate", 1.0),
            (&[("client-id", Some("app"))], "producer_byte_rate", 2.0),
        ]);
        assert_eq!(
            applicable(&clients_only, p, "carol", "app"),
            Some((2.0, tags("", "app")))
        );
        assert_eq!(
            applicable(&clients_only, p, "carol", "z"),
            Some((1.0, tags("", "z")))
        );
        assert_eq!(applicable(&ClientQuotas::new(), p, "carol", "z"), None);
    }

    #[test]
    fn a_client_over_its_rate_is_throttled_until_the_rate_falls_back() {
        let q = quotas(&[(&[("client-id", Some("app"))], "producer_byte_rate", 1000.0)]);
        let t = Throttler::new(Duration::from_secs(1), 11);
        let start = Instant::now();
        let record = |bytes, at: Duration| {
            t.record(
                &q,
                QuotaKind::Produce,
                "ANONYMOUS",
                "app",
                bytes,
                start + at,
            )
        };
        // 5000 bytes over the 10 s minimum window: 500 B/s, within the quota.
        assert_eq!(record(5000, Duration::ZERO), Duration::ZERO);
        // 15000 more: 2000 B/s over 10 s is twice the quota: back off another 10 s.
        assert_eq!(
            record(15000, Duration::from_millis(100)),
            Duration::from_secs(10)
        );
        // Another client id has no quota.
        let other = t.record(&q, QuotaKind::Produce, "ANONYMOUS", "x", 1 << 30, start);
        assert_eq!(other, Duration::ZERO);
        // Once the samples age out, the client is within its quota again.
        assert_eq!(record(10, Duration::from_secs(12)), Duration::ZERO);
    }

    #[test]
    fn request_time_counts_as_a_percentage_of_one_thread_and_throttles_at_most_a_window() {
        // 1% of one thread: 10 ms of busy time a second.
        let q = quotas(&[(&[("user", Some("alice"))], "request_percentage", 1.0)]);
        let t = Throttler::new(Duration::from_secs(1), 11);
        let start = Instant::now();
        let busy = |ms, at: Duration| {
            t.record_time(&q, "alice", "any", Duration::from_millis(ms), start + at)
        };
        // 50 ms over the 10 s minimum window: 0.5%, within the quota.
        assert_eq!(busy(50, Duration::ZERO), Duration::ZERO);
        // 100 ms more: 1.5%, half again over: 5 s by the rate, bounded by one window.
        assert_eq!(busy(100, Duration::from_millis(10)), Duration::from_secs(1));
        // Byte quotas of the same user are kept apart.
        let bytes = t.record(&q, QuotaKind::Produce, "alice", "any", 1 << 30, start);
        assert_eq!(bytes, Duration::ZERO);
    }

    #[test]
    fn connections_over_an_ips_rate_are_throttled_and_not_counted() {
        let q = quotas(&[
            (
                &[("ip", Some("127.0.0.1"))],
                "connection_creation_rate",
                2.0,
            ),
            (&[("ip", None)], "connection_creation_rate", 100.0),
        ]);
        let t = Throttler::new(Duration::from_secs(1), 2);
        let start = Instant::now();
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        // Over a 1 s window, two connections are within the rate, the third is not.
        assert_eq!(t.record_connection(&q, local, start), Duration::ZERO);
        assert_eq!(t.record_connection(&q, local, start), Duration::ZERO);
        assert_eq!(
            t.record_connection(&q, local, start),
            Duration::from_millis(500)
        );
        // The throttled one was taken back: the next is throttled the same, no longer.
        assert_eq!(
            t.record_connection(&q, local, start),
            Duration::from_millis(500)
        );
        // An address written another way is the same address.
        let v6 = quotas(&[(
            &[("ip", Some("0:0:0:0:0:0:0:1"))],
            "connection_creation_rate",
            1.0,
        )]);
        let loopback: IpAddr = "::1".parse().expect("ip");
        assert_eq!(t.record_connection(&v6, loopback, start), Duration::ZERO);
        assert_eq!(
            t.record_connection(&v6, loopback, start),
            Duration::from_secs(1)
        );
        // Another address falls back to the default IP quota.
        let other: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        for _ in 0..50 {
            assert_eq!(t.record_connection(&q, other, start), Duration::ZERO);
        }
        // Without an IP quota nothing is throttled.
        let none = ClientQuotas::new();
        for _ in 0..50 {
            assert_eq!(t.record_connection(&none, local, start), Duration::ZERO);
        }
        // Once the samples age out, the address is within its rate again.
        assert_eq!(
            t.record_connection(&q, local, start + Duration::from_secs(3)),
            Duration::ZERO
        );
    }

    #[test]
    fn mutations_spend_a_bucket_that_refills_at_the_rate() {
        let q = quotas(&[(
            &[("client-id", Some("admin"))],
            "controller_mutation_rate",
            2.0,
        )]);
        // 2 partitions a second, 11 windows of 1 s: 22 at once.
        let m = MutationBuckets::new(Duration::from_secs(1), 11);
        let start = Instant::now();
        assert_eq!(m.throttle(&q, "u", "admin", start), Duration::ZERO);
        // A full bucket takes any one mutation, however large.
        m.record(&q, "u", "admin", 30, start);
        // 8 below zero at 2 a second: 4 s to wait, less as time passes.
        assert_eq!(m.throttle(&q, "u", "admin", start), Duration::from_secs(4));
        assert_eq!(
            m.throttle(&q, "u", "admin", start + Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            m.throttle(&q, "u", "admin", start + Duration::from_secs(5)),
            Duration::ZERO
        );
        // Other clients have their own bucket (or no quota).
        assert_eq!(m.throttle(&q, "u", "other", start), Duration::ZERO);
        m.record(&q, "u", "other", 1000, start);
        assert_eq!(m.throttle(&q, "u", "other", start), Duration::ZERO);
    }

    #[test]
    fn the_quota_user_is_the_principals_name() {
        assert_eq!(quota_user("User:alice"), "alice");
        assert_eq!(quota_user("User:ANONYMOUS"), "ANONYMOUS");
    }
}
