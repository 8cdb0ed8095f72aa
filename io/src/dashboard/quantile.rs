//! Percentiles from the difference of two readings of a cumulative
//! fixed-bucket histogram (what `histogram_quantile` does in Prometheus):
//! the bucket that holds the rank, interpolated linearly inside it.

/// Cumulative buckets: `(upper bound, count ≤ bound)`, `None` = +Inf.
pub type Buckets = [(Option<u64>, u64)];

/// The per-bucket counts recorded between `before` and `now` (both
/// cumulative readings of the same histogram), cumulative again.
pub fn since(now: &Buckets, before: &Buckets) -> Vec<(Option<u64>, u64)> {
    now.iter()
        .enumerate()
        .map(|(i, &(le, n))| {
            let b = before.get(i).map_or(0, |&(_, b)| b);
            (le, n.saturating_sub(b))
        })
        .collect()
}

/// The `q` quantile (0..=1) of cumulative buckets, in the buckets' unit;
/// `None` when they hold no sample. A rank in the +Inf bucket reads as the
/// largest finite bound.
pub fn quantile(buckets: &Buckets, q: f64) -> Option<f64> {
    let total = buckets.last().map_or(0, |&(_, n)| n);
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for &(le, n) in buckets {
        if n as f64 >= rank && n > lower_count {
            let Some(upper) = le else {
                return Some(lower_bound);
            };
            let upper = upper as f64;
            let inside = (rank - lower_count as f64) / (n - lower_count) as f64;
            return Some(lower_bound + (upper - lower_bound) * inside.clamp(0.0, 1.0));
        }
        if let Some(le) = le {
            lower_bound = le as f64;
        }
        lower_count = n;
    }
    Some(lower_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cumulative(bounds: &[u64], counts: &[u64]) -> Vec<(Option<u64>, u64)> {
        let mut acc = 0;
        let mut v: Vec<_> = bounds
            .iter()
            .zip(counts)
            .map(|(&b, &c)| {
                acc += c;
                (Some(b), acc)
            })
            .collect();
        acc += counts.get(bounds.len()).copied().unwrap_or(0);
        v.push((None, acc));
        v
    }

    #[test]
    fn quantiles_fall_in_the_bucket_holding_their_rank() {
        // 100 samples: 90 in (0, 100], 9 in (100, 200], 1 in (200, 400].
        let b = cumulative(&[100, 200, 400], &[90, 9, 1, 0]);
        let p50 = quantile(&b, 0.5).expect("samples");
        assert!((p50 - 55.555).abs() < 0.1, "{p50}");
        let p99 = quantile(&b, 0.99).expect("samples");
        assert!((p99 - 200.0).abs() < 0.1, "{p99}");
        let p100 = quantile(&b, 1.0).expect("samples");
        assert!((p100 - 400.0).abs() < 0.1, "{p100}");
        assert_eq!(quantile(&cumulative(&[100], &[0, 0]), 0.5), None);
    }

    #[test]
    fn a_rank_past_the_last_bound_reads_as_that_bound() {
        let b = cumulative(&[100, 200], &[1, 0, 99]);
        assert_eq!(quantile(&b, 0.99), Some(200.0));
    }

    #[test]
    fn differences_of_readings_are_the_samples_between_them() {
        let before = cumulative(&[100, 200], &[5, 5, 0]);
        let now = cumulative(&[100, 200], &[5, 15, 1]);
        let d = since(&now, &before);
        assert_eq!(d, vec![(Some(100), 0), (Some(200), 10), (None, 11)]);
        let p50 = quantile(&d, 0.5).expect("samples");
        assert!(p50 > 100.0 && p50 <= 200.0, "{p50}");
    }
}
