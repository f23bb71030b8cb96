//! A tenant's Prometheus Operator objects (`spec.monitoring.enabled`): a ServiceMonitor
//! scraping its pods' `/metrics` through its Service, and a PrometheusRule with its
//! alerts. Both are `monitoring.coreos.com/v1` custom resources, built here as dynamic
//! objects (pure), so the operator needs no Prometheus Operator types; the reconciler
//! applies them when the cluster serves that API.
//!
//! The alerts select the tenant's series by the `namespace` and `service` labels the
//! Prometheus Operator adds to every target of a ServiceMonitor, and the operator's own
//! `faceid_operator_tenant_ready` gauge by the tenant's namespace and name.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::crd::FaceIdTenant;
use crate::resources::{labels, selector_labels, workload_name};

/// `monitoring.coreos.com/v1` `kind`.
pub fn api_resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind))
}

/// The two objects of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitoring {
    /// Scrapes the tenant's pods through its Service's `http` port.
    pub service_monitor: DynamicObject,
    /// The tenant's alerts ([`ALERTS`]).
    pub prometheus_rule: DynamicObject,
}

/// One alert of a tenant's PrometheusRule: the name, how long the condition must hold,
/// the severity, the PromQL (`{sel}` stands for the tenant's label matchers, `{ns}` and
/// `{name}` for its namespace and name) and what it means.
#[derive(Debug)]
pub struct Alert {
    /// Alert name.
    pub name: &'static str,
    /// `for:` duration.
    pub hold: &'static str,
    /// `severity` label.
    pub severity: &'static str,
    /// PromQL with placeholders.
    pub expr: &'static str,
    /// The `summary` annotation.
    pub summary: &'static str,
}

/// The alerts of every tenant (docs/OPERATOR.md, "Monitoring").
pub const ALERTS: &[Alert] = &[
    Alert {
        name: "FaceIdTenantNotReady",
        hold: "10m",
        severity: "critical",
        expr: r#"faceid_operator_tenant_ready{tenant_namespace="{ns}",tenant_name="{name}"} == 0"#,
        summary: "FaceIdTenant {ns}/{name} has not been Ready for 10 minutes: see `kubectl describe faceidtenant -n {ns} {name}`",
    },
    Alert {
        name: "FaceIdHighErrorRate",
        hold: "10m",
        severity: "warning",
        expr: r#"sum(rate(faceid_http_requests_total{{sel},status_class="5xx"}[5m])) / sum(rate(faceid_http_requests_total{{sel}}[5m])) > 0.05"#,
        summary: "More than 5% of {ns}/{name}'s requests fail with a server error",
    },
    Alert {
        name: "FaceIdSlowLogins",
        hold: "10m",
        severity: "warning",
        expr: r#"histogram_quantile(0.95, sum by (le) (rate(faceid_http_request_duration_seconds_bucket{{sel},route="/api/v1/auth/login"}[5m]))) > 1"#,
        summary: "95th percentile login latency of {ns}/{name} above 1 s",
    },
    Alert {
        name: "FaceIdLockoutSpike",
        hold: "5m",
        severity: "warning",
        expr: r#"sum(increase(faceid_login_attempts_total{{sel},reason=~"account_locked|client_locked_out|login_throttled"}[10m])) > 50"#,
        summary: "More than 50 locked-out or throttled logins at {ns}/{name} in 10 minutes: a guessing attack or a broken client",
    },
    Alert {
        name: "FaceIdLivenessRejections",
        hold: "15m",
        severity: "warning",
        expr: r#"sum(rate(faceid_liveness_checks_total{{sel},result="spoof"}[10m])) / sum(rate(faceid_liveness_checks_total{{sel}}[10m])) > 0.2"#,
        summary: "More than 20% of {ns}/{name}'s faces judged spoofs: a spoofing attempt, or a camera or threshold problem",
    },
];

fn meta_of(
    tenant: &FaceIdTenant,
    kind: &str,
    extra: &std::collections::BTreeMap<String, String>,
) -> Value {
    let mut all = labels(tenant);
    all.extend(extra.clone());
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": kind,
        "metadata": {
            "name": workload_name(tenant),
            "namespace": tenant.namespace(),
            "labels": all,
            "ownerReferences": tenant.controller_owner_ref(&()).map(|r| vec![r]),
        },
    })
}

fn fill(template: &str, tenant: &FaceIdTenant) -> String {
    let ns = tenant.namespace().unwrap_or_default();
    let name = workload_name(tenant);
    template
        .replace("{sel}", &format!(r#"namespace="{ns}",service="{name}""#))
        .replace("{ns}", &ns)
        .replace("{name}", &name)
}

/// The tenant's monitoring objects, `None` unless `spec.monitoring.enabled`.
pub fn build(tenant: &FaceIdTenant) -> Option<Monitoring> {
    let spec = &tenant.spec.monitoring;
    if !spec.enabled {
        return None;
    }
    let mut monitor = meta_of(tenant, "ServiceMonitor", &spec.labels);
    monitor["spec"] = json!({
        "selector": {"matchLabels": selector_labels(tenant)},
        "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
    });
    let rules: Vec<Value> = ALERTS
        .iter()
        .map(|a| {
            json!({
                "alert": a.name,
                "expr": fill(a.expr, tenant),
                "for": a.hold,
                "labels": {"severity": a.severity},
                "annotations": {"summary": fill(a.summary, tenant)},
            })
        })
        .collect();
    let mut rule = meta_of(tenant, "PrometheusRule", &spec.labels);
    rule["spec"] =
        json!({"groups": [{"name": format!("faceid-{}", workload_name(tenant)), "rules": rules}]});
    let object = |v: Value| serde_json::from_value::<DynamicObject>(v).ok();
    Some(Monitoring {
        service_monitor: object(monitor)?,
        prometheus_rule: object(rule)?,
    })
}

/// The name both objects carry.
pub fn name(tenant: &FaceIdTenant) -> String {
    workload_name(tenant)
}

/// Whether `obj` is controlled by `tenant`.
pub fn controlled_by(obj: &DynamicObject, tenant: &FaceIdTenant) -> bool {
    crate::resources::is_controlled_by(obj.owner_references(), tenant)
        && obj.meta().name.as_deref() == Some(&workload_name(tenant))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tenant(monitoring: Value) -> FaceIdTenant {
        let mut t: FaceIdTenant = serde_json::from_value(json!({
            "apiVersion": "faceid.dev/v1alpha1", "kind": "FaceIdTenant",
            "metadata": {"name": "acme", "namespace": "team-a", "uid": "u-1"},
            "spec": {
                "database": {"connectionSecretRef": {"name": "pg"}, "schema": "acme"},
                "monitoring": monitoring,
            },
        }))
        .unwrap();
        t.metadata.uid = Some("u-1".into());
        t
    }

    #[test]
    fn nothing_unless_enabled() {
        assert!(build(&tenant(json!({}))).is_none());
        assert!(build(&tenant(json!({"enabled": false}))).is_none());
    }

    #[test]
    fn the_service_monitor_scrapes_the_tenant_service_and_is_owned_by_the_tenant() {
        let t = tenant(json!({"enabled": true, "labels": {"release": "kube-prometheus-stack"}}));
        let m = build(&t).unwrap();
        let sm = serde_json::to_value(&m.service_monitor).unwrap();
        assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(sm["kind"], "ServiceMonitor");
        assert_eq!(sm["metadata"]["name"], "acme");
        assert_eq!(sm["metadata"]["namespace"], "team-a");
        assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
        assert_eq!(sm["metadata"]["ownerReferences"][0]["kind"], "FaceIdTenant");
        assert_eq!(sm["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            sm["spec"]["selector"]["matchLabels"],
            serde_json::to_value(selector_labels(&t)).unwrap()
        );
        assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
        assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
        assert!(controlled_by(&m.service_monitor, &t));
    }

    #[test]
    fn every_alert_selects_only_this_tenant() {
        let t = tenant(json!({"enabled": true}));
        let rule = serde_json::to_value(build(&t).unwrap().prometheus_rule).unwrap();
        let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "FaceIdTenantNotReady",
                "FaceIdHighErrorRate",
                "FaceIdSlowLogins",
                "FaceIdLockoutSpike",
                "FaceIdLivenessRejections"
            ]
        );
        for r in rules {
            let expr = r["expr"].as_str().unwrap();
            assert!(!expr.contains("{sel}") && !expr.contains("{ns}"), "{expr}");
            assert!(
                expr.contains(r#"namespace="team-a",service="acme""#)
                    || expr.contains(r#"tenant_namespace="team-a",tenant_name="acme""#),
                "{expr}"
            );
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{expr}"
            );
            assert_eq!(
                expr.matches('{').count(),
                expr.matches('}').count(),
                "{expr}"
            );
            assert!(r["for"].is_string() && r["labels"]["severity"].is_string());
        }
    }

    #[test]
    fn the_alerts_use_metrics_that_exist() {
        // The series names the service and the operator really export.
        let service = include_str!("../../service/src/metrics.rs");
        let operator = include_str!("metrics.rs");
        for a in ALERTS {
            let metric = a
                .expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .find(|w| w.starts_with("faceid_"))
                .unwrap();
            let base = metric.trim_end_matches("_bucket");
            assert!(
                service.contains(&format!("\"{base}\""))
                    || operator.contains(&format!("\"{base}\"")),
                "{}: no metric {base}",
                a.name
            );
        }
        // Label values the alerts match on.
        for value in ["\"5xx\"", "\"spoof\""] {
            assert!(
                service.contains(value)
                    || include_str!("../../service/src/http/mod.rs").contains(value)
                    || include_str!("../../service/src/flows.rs").contains(value),
                "{value}"
            );
        }
    }
}
