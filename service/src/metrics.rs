//! Prometheus metrics: every name of the original service, plus HTTP request metrics.
//! Labels are small fixed sets (status, reason, route template), never user data.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The service's metrics, registered in their own registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// `faceid_registration_attempts_total{status}`.
    pub registration_attempts: IntCounterVec,
    /// `faceid_login_attempts_total{status,reason}`.
    pub login_attempts: IntCounterVec,
    /// `faceid_liveness_checks_total{result}`.
    pub liveness_checks: IntCounterVec,
    /// `faceid_photo_decodes_total{reduced_by}`.
    pub photo_decodes: IntCounterVec,
    /// `faceid_face_match_latency_seconds{stage}`: face analysis and matching time.
    pub face_match_latency: HistogramVec,
    /// `faceid_vector_search_duration_seconds{kind}`: the nearest-neighbour query.
    pub vector_search_duration: HistogramVec,
    /// `faceid_rate_limit_hits_total{endpoint}`: refused requests.
    pub rate_limit_hits: IntCounterVec,
    /// `faceid_active_users_total`.
    pub active_users: IntGauge,
    /// `faceid_locked_accounts_total`.
    pub locked_accounts: IntGauge,
    /// `faceid_http_requests_total{method,route,status_class}`.
    pub http_requests: IntCounterVec,
    /// `faceid_http_request_duration_seconds{method,route}`.
    pub http_duration: HistogramVec,
    /// `faceid_dependency_errors_total{dependency}`: Redis/PostgreSQL failures seen.
    pub dependency_errors: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let metrics = Self {
            registration_attempts: counter(
                "faceid_registration_attempts_total",
                "Registration attempts by outcome",
                &["status"],
            )?,
            login_attempts: counter(
                "faceid_login_attempts_total",
                "Login attempts by outcome and failure reason",
                &["status", "reason"],
            )?,
            liveness_checks: counter(
                "faceid_liveness_checks_total",
                "Liveness checks by result",
                &["result"],
            )?,
            photo_decodes: counter(
                "faceid_photo_decodes_total",
                "Analysed photos by decoding scale: 1 full size; 2, 4 or 8 a JPEG above the pixel limit (a phone photo) decoded at that fraction",
                &["reduced_by"],
            )?,
            face_match_latency: histogram(
                "faceid_face_match_latency_seconds",
                "Face analysis (decode, detect, embed, liveness) and matching time",
                &["stage"],
            )?,
            vector_search_duration: histogram(
                "faceid_vector_search_duration_seconds",
                "Nearest-neighbour query time",
                &["kind"],
            )?,
            rate_limit_hits: counter(
                "faceid_rate_limit_hits_total",
                "Requests refused by the rate limiter",
                &["endpoint"],
            )?,
            active_users: gauge("faceid_active_users_total", "Active users")?,
            locked_accounts: gauge("faceid_locked_accounts_total", "Currently locked accounts")?,
            http_requests: counter(
                "faceid_http_requests_total",
                "HTTP requests by route and status class",
                &["method", "route", "status_class"],
            )?,
            http_duration: histogram(
                "faceid_http_request_duration_seconds",
                "HTTP request duration",
                &["method", "route"],
            )?,
            dependency_errors: counter(
                "faceid_dependency_errors_total",
                "Failures talking to PostgreSQL or Redis",
                &["dependency"],
            )?,
            registry,
        };
        // Every series a dashboard expects exists from the start, at zero.
        metrics
            .registration_attempts
            .with_label_values(&["success"]);
        metrics
            .login_attempts
            .with_label_values(&["success", "none"]);
        metrics
            .login_attempts
            .with_label_values(&["failure", "face_not_recognized"]);
        for result in ["live", "spoof"] {
            metrics.liveness_checks.with_label_values(&[result]);
        }
        for by in ["1", "2", "4", "8"] {
            metrics.photo_decodes.with_label_values(&[by]);
        }
        metrics.face_match_latency.with_label_values(&["analyze"]);
        for kind in ["one_to_one", "one_to_many"] {
            metrics.vector_search_duration.with_label_values(&[kind]);
        }
        for endpoint in ["register", "login", "default"] {
            metrics.rate_limit_hits.with_label_values(&[endpoint]);
        }
        for dependency in ["postgresql", "redis"] {
            metrics.dependency_errors.with_label_values(&[dependency]);
        }
        Ok(metrics)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
