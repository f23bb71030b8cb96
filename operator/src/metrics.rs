//! The operator's own Prometheus metrics. Every label takes values from a small fixed
//! set (results, error categories, readiness), never an error text; the one per-tenant
//! gauge (`faceid_operator_tenant_ready`, which the tenants' alerts need) has one series
//! per existing tenant and drops it when the tenant goes.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Readiness of one tenant as counted by `faceid_operator_tenants`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Readiness {
    /// `Ready=True`.
    Ready,
    /// `Ready=False`.
    NotReady,
    /// Paused by annotation.
    Paused,
}

impl Readiness {
    fn label(self) -> &'static str {
        match self {
            Readiness::Ready => "true",
            Readiness::NotReady => "false",
            Readiness::Paused => "paused",
        }
    }
}

/// Metrics registry and handles.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciliations: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    tenants: IntGaugeVec,
    tenant_ready: IntGaugeVec,
    states: Mutex<HashMap<String, Readiness>>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "faceid_operator_reconciliations_total",
                "Reconciliations of FaceIdTenant objects by result (success, error)",
            ),
            &["result"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "faceid_operator_reconcile_failures_total",
                "Failed or refused reconciliations by category",
            ),
            &["category"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "faceid_operator_reconcile_duration_seconds",
                "Time taken by one reconciliation",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
            ]),
            &[],
        )?;
        let tenants = IntGaugeVec::new(
            Opts::new(
                "faceid_operator_tenants",
                "FaceIdTenant objects by readiness (true, false, paused)",
            ),
            &["ready"],
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        let tenant_ready = IntGaugeVec::new(
            Opts::new(
                "faceid_operator_tenant_ready",
                "1 while a FaceIdTenant is Ready, 0 otherwise (paused included)",
            ),
            &["tenant_namespace", "tenant_name"],
        )?;
        registry.register(Box::new(tenants.clone()))?;
        registry.register(Box::new(tenant_ready.clone()))?;
        for r in [Readiness::Ready, Readiness::NotReady, Readiness::Paused] {
            tenants.with_label_values(&[r.label()]).set(0);
        }
        Ok(Self {
            registry,
            reconciliations,
            failures,
            duration,
            tenants,
            tenant_ready,
            states: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one reconciliation and its duration.
    pub fn reconciled(&self, ok: bool, seconds: f64) {
        self.reconciliations
            .with_label_values(&[if ok { "success" } else { "error" }])
            .inc();
        self.duration
            .with_label_values(&[] as &[&str])
            .observe(seconds);
    }

    /// Counts one failure of a static `category`.
    pub fn failed(&self, category: &'static str) {
        self.failures.with_label_values(&[category]).inc();
    }

    /// Records a tenant's readiness (`None`: the tenant is gone).
    pub fn set_tenant(&self, key: &str, state: Option<Readiness>) {
        let Ok(mut states) = self.states.lock() else {
            return;
        };
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        match state {
            Some(s) => {
                states.insert(key.to_owned(), s);
                self.tenant_ready
                    .with_label_values(&[namespace, name])
                    .set(i64::from(s == Readiness::Ready));
            }
            None => {
                states.remove(key);
                let _ = self.tenant_ready.remove_label_values(&[namespace, name]);
            }
        }
        for r in [Readiness::Ready, Readiness::NotReady, Readiness::Paused] {
            let n = states.values().filter(|v| **v == r).count();
            self.tenants
                .with_label_values(&[r.label()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_gauge_counts_states() {
        let m = Metrics::new().unwrap();
        m.set_tenant("a/x", Some(Readiness::Ready));
        m.set_tenant("a/y", Some(Readiness::NotReady));
        m.set_tenant("a/y", Some(Readiness::Ready));
        m.failed("database");
        m.reconciled(true, 0.2);
        let text = m.render();
        assert!(
            text.contains("faceid_operator_tenants{ready=\"true\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("faceid_operator_tenants{ready=\"false\"} 0"),
            "{text}"
        );
        assert!(text.contains("faceid_operator_reconcile_failures_total{category=\"database\"} 1"));
        assert!(
            text.contains(
                "faceid_operator_tenant_ready{tenant_name=\"y\",tenant_namespace=\"a\"} 1"
            ),
            "{text}"
        );
        m.set_tenant("a/x", None);
        let text = m.render();
        assert!(text.contains("faceid_operator_tenants{ready=\"true\"} 1"));
        assert!(!text.contains("tenant_name=\"x\""), "{text}");
    }
}
