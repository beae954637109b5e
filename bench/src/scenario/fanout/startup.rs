//! Start-up: how long the server took to make every subscription live once the bench had sent
//! them all. Every connection is open before any subscription is sent, then all are sent at
//! once; a subscription is live when the server shows it is (see `connection::Seen::live_at`).
//! The figure the bench cannot inflate is from the last `subscribe` sent to the last
//! subscription live: by then the bench has nothing left to send, and what remains is the
//! server's work (and the delivery of one message).

use std::time::Instant;

use serde::Serialize;

/// One subscription's start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Start {
    /// `incidentEvents` (live by its replay) or `incidentChanged` (live by its canary).
    pub timeline: bool,
    /// When its first `subscribe` was sent; None when it never was (its connection failed).
    pub subscribed: Option<Instant>,
    pub live: Option<Instant>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StartupReport {
    /// From the first `subscribe` sent to the last: the bench's own sending.
    pub sending_ms: f64,
    pub all: Spread,
    /// `incidentEvents`: live when its replay arrived (its tenancy check and catch-up read
    /// done, registered for what follows).
    pub timelines: Spread,
    /// `incidentChanged`: live when its first canary change arrived; canaries are written in
    /// rounds from the last `subscribe` sent, so this is an upper bound, to within a round.
    pub changed: Spread,
}

/// Some subscriptions' starts, summed up.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Spread {
    pub subscriptions: usize,
    /// Those that were live in time.
    pub live: usize,
    /// From the last `subscribe` sent (of all subscriptions) until the last of these was live;
    /// 0 when they were all live before it.
    pub after_last_subscribe_ms: f64,
    /// Per subscription, its `subscribe` sent → it was live.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub(super) fn summarize(starts: &[Start]) -> StartupReport {
    let sent = || starts.iter().filter_map(|s| s.subscribed);
    let (Some(first), Some(last)) = (sent().min(), sent().max()) else {
        return StartupReport::default();
    };
    let spread = |timeline: Option<bool>| {
        let mine: Vec<&Start> = starts
            .iter()
            .filter(|s| timeline.is_none_or(|t| s.timeline == t))
            .collect();
        let mut waits: Vec<f64> = mine
            .iter()
            .filter_map(|s| Some(ms(s.live?.saturating_duration_since(s.subscribed?))))
            .collect();
        waits.sort_by(f64::total_cmp);
        let last_live = mine.iter().filter_map(|s| s.subscribed.and(s.live)).max();
        Spread {
            subscriptions: mine.len(),
            live: waits.len(),
            after_last_subscribe_ms: last_live
                .map_or(0.0, |l| ms(l.saturating_duration_since(last))),
            p50_ms: quantile(&waits, 0.50),
            p99_ms: quantile(&waits, 0.99),
            max_ms: waits.last().copied().unwrap_or(0.0),
        }
    };
    StartupReport {
        sending_ms: ms(last - first),
        all: spread(None),
        timelines: spread(Some(true)),
        changed: spread(Some(false)),
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank quantile of sorted values (0 when there are none).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(base: Instant, ms: u64) -> Option<Instant> {
        Some(base + Duration::from_millis(ms))
    }

    #[test]
    fn measures_from_the_last_subscribe_sent_to_the_last_subscription_live() {
        let t = Instant::now();
        let starts = [
            // Sent first, live before the last was sent.
            Start {
                timeline: true,
                subscribed: at(t, 0),
                live: at(t, 30),
            },
            Start {
                timeline: true,
                subscribed: at(t, 10),
                live: at(t, 250),
            },
            // The last sent; a change subscription, live by a canary.
            Start {
                timeline: false,
                subscribed: at(t, 50),
                live: at(t, 170),
            },
            // Never live: counted, not measured.
            Start {
                timeline: true,
                subscribed: at(t, 20),
                live: None,
            },
            // Never sent (its connection failed): counted, not measured.
            Start {
                timeline: false,
                subscribed: None,
                live: None,
            },
        ];
        let r = summarize(&starts);
        assert_eq!(r.sending_ms, 50.0);
        let all = Spread {
            subscriptions: 5,
            live: 3,
            after_last_subscribe_ms: 200.0,
            p50_ms: 120.0,
            p99_ms: 240.0,
            max_ms: 240.0,
        };
        assert_eq!(r.all, all);
        assert_eq!(r.timelines.subscriptions, 3);
        assert_eq!(r.timelines.live, 2);
        assert_eq!(r.timelines.after_last_subscribe_ms, 200.0);
        assert_eq!((r.timelines.p50_ms, r.timelines.max_ms), (30.0, 240.0));
        assert_eq!(r.changed.subscriptions, 2);
        assert_eq!(r.changed.after_last_subscribe_ms, 120.0);
    }

    #[test]
    fn subscriptions_live_before_the_last_was_sent_count_zero_after_it() {
        let t = Instant::now();
        let starts = [
            Start {
                timeline: true,
                subscribed: at(t, 0),
                live: at(t, 5),
            },
            Start {
                timeline: false,
                subscribed: at(t, 100),
                live: at(t, 140),
            },
        ];
        let r = summarize(&starts);
        assert_eq!(r.timelines.after_last_subscribe_ms, 0.0);
        assert_eq!(r.all.after_last_subscribe_ms, 40.0);
    }

    #[test]
    fn nothing_sent_is_an_empty_report() {
        let r = summarize(&[Start {
            timeline: true,
            subscribed: None,
            live: None,
        }]);
        assert_eq!(r.all, Spread::default());
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.50), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
