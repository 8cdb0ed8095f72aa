//! Building Prometheus families by hand from the daemon's atomics: a
//! counter or gauge per label set, and histograms from the pipeline's
//! fixed-bucket readings.

use prometheus::proto::{
    Bucket, Counter as CounterValue, Gauge as GaugeValue, Histogram as HistogramValue, LabelPair,
    Metric, MetricFamily, MetricType,
};

/// What a family is, for `# TYPE`.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Counter,
    Gauge,
}

/// A histogram's cumulative buckets (`None`: `+Inf`), sum and count.
pub(super) type Snapshot = (Vec<(Option<u64>, u64)>, u64, u64);

/// The families one scrape collects from the daemon's atomics.
#[derive(Default)]
pub(super) struct Families(pub(super) Vec<MetricFamily>);

pub(super) fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

fn value(kind: Kind, labels: Vec<LabelPair>, v: f64) -> Metric {
    let mut m = Metric::default();
    m.set_label(labels);
    match kind {
        Kind::Counter => {
            let mut c = CounterValue::default();
            c.set_value(v);
            m.set_counter(c);
        }
        Kind::Gauge => {
            let mut g = GaugeValue::default();
            g.set_value(v);
            m.set_gauge(g);
        }
    }
    m
}

impl Families {
    fn push(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(metrics);
        self.0.push(f);
    }

    /// One family with one unlabelled sample.
    pub(super) fn single(&mut self, name: &str, kind: Kind, help: &str, v: f64) {
        self.labelled(name, kind, help, vec![(Vec::new(), v)]);
    }

    /// One family, one sample per label set.
    pub(super) fn labelled(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: Vec<(Vec<LabelPair>, f64)>,
    ) {
        let t = match kind {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
        };
        let metrics = samples
            .into_iter()
            .map(|(l, v)| value(kind, l, v))
            .collect();
        self.push(name, help, t, metrics);
    }

    /// One histogram family: per label set, the cumulative buckets, sum
    /// and count of a snapshot; bounds and sum are divided by `scale` (1e6
    /// turns recorded µs into seconds). The `+Inf` bucket is the count.
    pub(super) fn histogram(
        &mut self,
        name: &str,
        help: &str,
        series: Vec<(Vec<LabelPair>, Snapshot)>,
        scale: f64,
    ) {
        let metrics = series
            .into_iter()
            .map(|(l, (buckets, sum, count))| {
                let mut h = HistogramValue::default();
                h.set_sample_count(count);
                h.set_sample_sum(sum as f64 / scale);
                h.set_bucket(
                    buckets
                        .into_iter()
                        .filter_map(|(le, n)| {
                            let le = le?;
                            let mut b = Bucket::default();
                            b.set_upper_bound(le as f64 / scale);
                            b.set_cumulative_count(n);
                            Some(b)
                        })
                        .collect(),
                );
                let mut m = Metric::default();
                m.set_label(l);
                m.set_histogram(h);
                m
            })
            .collect();
        self.push(name, help, MetricType::HISTOGRAM, metrics);
    }
}
