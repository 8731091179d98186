//! A histogram whose `observe` takes no lock: per-bucket atomic counters. The client crate's
//! `Histogram` keeps its buckets behind a mutex, and every request observes the latency of its
//! route, so the HTTP workers met on that mutex whenever they finished requests of one route
//! at once (perf of a server with metrics on, SQLite get at c=16: parking_lot's `unlock_slow`,
//! futex wake-ups and switches that the server with metrics off did not have).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Classic Prometheus histogram (cumulative `le` buckets, `_sum`, `_count`). Clones share
/// their counts, as the client crate's metrics do.
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; the `+Inf` bucket is implied.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more than `bounds` (`+Inf`).
    counts: Box<[AtomicU64]>,
    /// The sum of all observations, an `f64`'s bits.
    sum: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        AtomicHistogram {
            inner: Arc::new(Inner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        // NaN falls through to `+Inf`, as in the client crate.
        let bucket = inner
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(inner.bounds.len());
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = inner
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// `(upper bound, observations in that bucket)`, `+Inf` last; and the total count.
    fn snapshot(&self) -> (Vec<(f64, u64)>, u64) {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (buckets, count)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Read without a lock while requests observe: `_count` is the buckets' total, so the
        // two always agree; `_sum` may include an observation the buckets do not show yet.
        let (buckets, count) = self.snapshot();
        let sum = f64::from_bits(self.inner.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    const BOUNDS: [f64; 3] = [0.1, 1.0, 10.0];

    #[test]
    fn encodes_cumulative_buckets_sum_and_count_like_the_client_crate() {
        let ours = AtomicHistogram::new(&BOUNDS);
        let theirs = prometheus_client::metrics::histogram::Histogram::new(BOUNDS);
        for v in [0.05, 0.1, 0.5, 2.0, 20.0, 20.0] {
            ours.observe(v);
            theirs.observe(v);
        }
        let text = |name: &str, metric: Box<dyn FnOnce(&mut Registry)>| {
            let mut registry = Registry::default();
            metric(&mut registry);
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
            out.replace(name, "x")
        };
        let a = text("ours", Box::new(move |r| r.register("ours", "h", ours)));
        let b = text(
            "theirs",
            Box::new(move |r| r.register("theirs", "h", theirs)),
        );
        assert_eq!(a, b);
        assert!(a.contains("x_bucket{le=\"1.0\"} 3"), "{a}");
        assert!(a.contains("x_bucket{le=\"+Inf\"} 6"), "{a}");
        assert!(a.contains("x_count 6"), "{a}");
        assert!(a.contains("x_sum 42.65"), "{a}");
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = AtomicHistogram::new(&BOUNDS);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        h.observe(0.5);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (buckets, count) = h.snapshot();
        assert_eq!(count, 40_000);
        assert_eq!(buckets[1], (1.0, 40_000));
        assert_eq!(
            f64::from_bits(h.inner.sum.load(Ordering::Relaxed)),
            20_000.0
        );
    }
}
