//! Logs (tracing, text or JSON), request ids, and Prometheus metrics.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::log::Published;

/// Set up `tracing`: `RUST_LOG`-style filter (default `info`), text or JSON lines.
pub fn init_tracing(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only on a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub struct Metrics {
    registry: Registry,
    pub(crate) requests: IntCounterVec,
    pub(crate) latency: HistogramVec,
    appends: IntCounter,
    batch_size: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "veritrail_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "veritrail_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .expect("metric");
        let appends = IntCounter::new(
            "veritrail_ledger_appends_total",
            "Entries appended since start",
        )
        .expect("metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "veritrail_ledger_batch_entries",
                "Entries per durable batch",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0, 16384.0,
            ]),
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(appends.clone()),
            Box::new(batch_size.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Self {
            registry,
            requests,
            latency,
            appends,
            batch_size,
        }
    }

    /// Called by the writer after each durable batch.
    pub fn batch(&self, entries: usize) {
        self.appends.inc_by(entries as u64);
        self.batch_size.observe(entries as f64);
    }

    pub fn render(&self, latest: &Published) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let age =
            (crate::log::sequencer::now_micros().saturating_sub(latest.signed_at)) as f64 / 1e6;
        let mut out = String::from_utf8(buf).unwrap_or_default();
        out.push_str(&format!(
            "# HELP veritrail_log_size Entries in the log at the latest checkpoint\n# TYPE veritrail_log_size gauge\nveritrail_log_size {}\n\
             # HELP veritrail_checkpoint_age_seconds Seconds since the latest checkpoint was signed\n# TYPE veritrail_checkpoint_age_seconds gauge\nveritrail_checkpoint_age_seconds {age:.3}\n",
            latest.size
        ));
        out
    }
}
