//! Operator at scale: N tenants created at once on the local control plane
//! (`scripts/kube.sh`: real kube-apiserver, controller-manager and scheduler; kwok nodes
//! and pods) against one PostgreSQL. Measures the time until every tenant is Ready, the
//! operator's API requests (from the API server's audit log, which records every request
//! of the operator's ServiceAccount) and reconciliations per tenant, both while the
//! tenants come up and during a quiet period after (a reconcile storm from status
//! updates shows there), and the operator's memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use faceid_operator::crd::FaceIdTenant;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Platform, f, load_average, machine_line, percentile, rss_mib, run_id};
use crate::control_plane::{ControlPlane, OperatorProcess};

const RELEASE: &str = "faceid-operator";
const OPERATOR_NAMESPACE: &str = "faceid-system";
const OPERATOR_USER: &str = "system:serviceaccount:faceid-system:faceid-operator";

/// Options of `faceid-bench operator-scale`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tenants created at once.
    pub tenants: usize,
    /// The `faceid-operator` binary (default: the release build).
    pub operator: Option<PathBuf>,
    /// Quiet period after all are Ready, in which requests and reconciles are counted.
    pub settle: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What the operator did in one phase.
#[derive(Debug, Default)]
struct Activity {
    requests: BTreeMap<String, u64>,
    reconciles: f64,
}

impl Activity {
    fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// Runs the bench; returns the Markdown report.
pub async fn run(opts: &Options) -> Result<String> {
    let platform = Platform::from_env()?;
    let cp = ControlPlane::from_env()?;
    cp.ensure_chart(OPERATOR_NAMESPACE, RELEASE)?;
    let binary = operator_path(opts.operator.as_deref())?;
    let audit_log = cp
        .kubeconfig
        .parent()
        .context("kubeconfig has no folder")?
        .join("logs/audit.log");
    let run = run_id();
    let ns = format!("bench-operator-{run}");
    let started = chrono::Utc::now();
    let load_before = load_average();

    let kubeconfig = cp.service_account_kubeconfig(
        OPERATOR_NAMESPACE,
        RELEASE,
        Duration::from_secs(3 * 3600),
        &std::env::temp_dir().join(format!("faceid-bench-operator-{run}.kubeconfig")),
    )?;
    // The chart's arguments and Lease: nobody else holds it here (the chart's own pods
    // are kwok's and run nothing).
    let (args, env) = cp
        .chart_operator_command(OPERATOR_NAMESPACE, RELEASE)
        .await?;
    let operator =
        OperatorProcess::start_binary(&binary, &kubeconfig, &args, &env, "bench").await?;
    let client = cp.admin_client().await?;
    let outcome = measure(opts, &platform, &client, &ns, &operator, &audit_log).await;
    let cleanup = cleanup(&client, &ns).await;
    let (up, quiet, ready_times, total, rss) = outcome?;
    cleanup?;

    let per = |x: f64| f(x / opts.tenants as f64, 1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Operator at scale\n\nRun {} UTC on {}; load average before {load_before}, after {}. \
         `{}` with the chart's arguments and ServiceAccount (concurrency from the chart), \
         {} tenants created at once in one namespace on one admin database URL \
         (1 replica each, `Delete` policy), kwok nodes and pods, the local PostgreSQL. \
         API requests are the API server's audit log entries of the operator's \
         ServiceAccount (`ResponseComplete`; a watch counts once when it ends); reconciles \
         are `faceid_operator_reconciliations_total`; memory is the operator's `VmRSS` / \
         `VmHWM`.\n",
        started.format("%Y-%m-%d %H:%M"),
        machine_line(),
        load_average(),
        super::relative(&binary).display(),
        opts.tenants,
    );
    let _ = writeln!(
        out,
        "| tenants | all Ready | Ready p50 / p90 | API requests per tenant (up) | reconciles per tenant (up) | requests / reconciles in {} s quiet | RSS / peak |\n|---|---|---|---|---|---|---|",
        opts.settle.as_secs()
    );
    let _ = writeln!(
        out,
        "| {} | {} s | {} / {} s | {} | {} | {} / {} | {} / {} MiB |",
        opts.tenants,
        f(total, 1),
        f(percentile(&ready_times, 50.0), 1),
        f(percentile(&ready_times, 90.0), 1),
        per(up.total_requests() as f64),
        per(up.reconciles),
        quiet.total_requests(),
        f(quiet.reconciles, 0),
        f(rss.0, 0),
        f(rss.1, 0),
    );
    let _ = writeln!(
        out,
        "\nRequests while the tenants came up, by verb and resource:\n"
    );
    for (k, v) in &up.requests {
        let _ = writeln!(out, "- `{k}`: {v} ({} per tenant)", per(*v as f64));
    }
    if !quiet.requests.is_empty() {
        let _ = writeln!(out, "\nRequests in the quiet period:\n");
        for (k, v) in &quiet.requests {
            let _ = writeln!(out, "- `{k}`: {v}");
        }
    }
    Ok(out)
}

type Measured = (Activity, Activity, Vec<f64>, f64, (f64, f64));

async fn measure(
    opts: &Options,
    platform: &Platform,
    client: &kube::Client,
    ns: &str,
    operator: &OperatorProcess,
    audit_log: &Path,
) -> Result<Measured> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "pg"},
                "stringData": {"url": platform.database_url},
            }))?,
        )
        .await?;
    let tenants: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    let audit_start = file_len(audit_log);
    let reconciles_start = reconciles(operator).await?;
    let start = Instant::now();
    let creates = (0..opts.tenants).map(|i| {
        let tenants = tenants.clone();
        let name = format!("t{i:03}");
        async move {
            let t: FaceIdTenant = serde_json::from_value(json!({
                "apiVersion": "faceid.dev/v1alpha1", "kind": "FaceIdTenant",
                "metadata": {"name": name},
                "spec": {
                    "database": {
                        "connectionSecretRef": {"name": "pg"},
                        "schema": format!("{}_{name}", ns.replace('-', "_")),
                        "deletionPolicy": "Delete",
                    },
                    "workload": {"replicas": 1},
                },
            }))?;
            tenants.create(&PostParams::default(), &t).await?;
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(creates).await?;
    let mut ready_at: BTreeMap<String, f64> = BTreeMap::new();
    while ready_at.len() < opts.tenants {
        if start.elapsed() > opts.timeout {
            bail!(
                "{} of {} tenants Ready after {:?}",
                ready_at.len(),
                opts.tenants,
                opts.timeout
            );
        }
        for t in tenants.list(&ListParams::default()).await?.items {
            let ready = t.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if ready {
                ready_at
                    .entry(t.name_any())
                    .or_insert_with(|| start.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let total = start.elapsed().as_secs_f64();
    let up = Activity {
        requests: operator_requests(audit_log, audit_start)?,
        reconciles: reconciles(operator).await? - reconciles_start,
    };
    let quiet_audit = file_len(audit_log);
    let quiet_reconciles = reconciles(operator).await?;
    tokio::time::sleep(opts.settle).await;
    let quiet = Activity {
        requests: operator_requests(audit_log, quiet_audit)?,
        reconciles: reconciles(operator).await? - quiet_reconciles,
    };
    let rss = rss_mib(operator.pid)?;
    Ok((up, quiet, ready_at.into_values().collect(), total, rss))
}

async fn cleanup(client: &kube::Client, ns: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(ns, &DeleteParams::default()).await.ok();
    let deadline = Instant::now() + Duration::from_secs(600);
    while namespaces.get_opt(ns).await?.is_some() {
        if Instant::now() > deadline {
            bail!("namespace {ns} not deleted after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The operator's requests in the audit log after byte `from`, by "verb resource".
fn operator_requests(audit_log: &Path, from: u64) -> Result<BTreeMap<String, u64>> {
    let text =
        std::fs::read(audit_log).with_context(|| format!("reading {}", audit_log.display()))?;
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&text[from..]).lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if entry["user"]["username"] != OPERATOR_USER || entry["stage"] != "ResponseComplete" {
            continue;
        }
        let mut resource = entry["objectRef"]["resource"]
            .as_str()
            .unwrap_or("-")
            .to_owned();
        if let Some(sub) = entry["objectRef"]["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let key = format!("{} {resource}", entry["verb"].as_str().unwrap_or("-"));
        *counts.entry(key).or_insert(0) += 1;
    }
    Ok(counts)
}

/// `faceid_operator_reconciliations_total`, all results together.
async fn reconciles(operator: &OperatorProcess) -> Result<f64> {
    let text = reqwest::get(format!("{}/metrics", operator.http_url))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("faceid_operator_reconciliations_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// The operator binary: explicit, else the release build, else the debug build.
fn operator_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let target = crate::repo_root().join("target");
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("faceid-operator");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("no faceid-operator binary: `cargo build --release -p faceid-operator`")
}
