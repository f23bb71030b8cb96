//! Leader election of two operator processes on the real control plane of
//! `scripts/kube.sh`: one reconciles; freezing it (SIGSTOP) past its lease hands over to
//! the other; the frozen one, resumed, writes nothing and steps down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::time::Duration;

use faceid_e2e::control_plane::{
    ControlPlane, OperatorProcess, Poll, delete_namespace, eventually,
};
use faceid_e2e::{repo_root, required_env};
use faceid_operator::crd::FaceIdTenant;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const RELEASE: &str = "faceid-operator";
const OPERATOR_NAMESPACE: &str = "faceid-system";
const LEASE: &str = "faceid-operator-leader";
const NS: &str = "e2e-leader";
const LEASE_SECONDS: u64 = 6;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn wait_holder(leases: &Api<Lease>, want: &str, timeout: Duration) {
    eventually(&format!("Lease held by {want}"), timeout, || async {
        let h = holder(leases).await;
        Ok(if h.as_deref() == Some(want) {
            Poll::Done(())
        } else {
            Poll::Pending(format!("holder {h:?}"))
        })
    })
    .await
    .unwrap();
}

/// Events the operator instance `instance` published in the test namespace.
async fn events_of(client: &Client, instance: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reporting_instance.as_deref() == Some(instance))
        .collect()
}

async fn deployment_replicas(client: &Client) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), NS)
        .get_opt("leader")
        .await
        .ok()
        .flatten()
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas)
}

async fn wait_replicas(client: &Client, want: i32, timeout: Duration) {
    eventually(
        &format!("Deployment at {want} replicas"),
        timeout,
        || async {
            let r = deployment_replicas(client).await;
            Ok(if r == Some(want) {
                Poll::Done(())
            } else {
                Poll::Pending(format!("spec.replicas {r:?}"))
            })
        },
    )
    .await
    .unwrap();
}

async fn start(cp: &ControlPlane, kubeconfig: &std::path::Path, identity: &str) -> OperatorProcess {
    let args: Vec<String> = [
        "--leader-election=true".to_owned(),
        format!("--lease-name={LEASE}"),
        format!("--lease-duration-seconds={LEASE_SECONDS}"),
    ]
    .into();
    let env = BTreeMap::from([
        ("POD_NAME".to_owned(), identity.to_owned()),
        ("POD_NAMESPACE".to_owned(), OPERATOR_NAMESPACE.to_owned()),
    ]);
    let _ = cp;
    OperatorProcess::start(kubeconfig, &args, &env, identity)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_leader_reconciles_and_a_frozen_one_hands_over() {
    let cp = ControlPlane::from_env().unwrap();
    if cp
        .helm(&["status", RELEASE, "-n", OPERATOR_NAMESPACE])
        .is_err()
    {
        cp.helm(&[
            "install",
            RELEASE,
            repo_root().join("charts/faceid-operator").to_str().unwrap(),
            "-n",
            OPERATOR_NAMESPACE,
            "--create-namespace",
        ])
        .unwrap();
    }
    let client = cp.admin_client().await.unwrap();
    let kubeconfig = cp
        .service_account_kubeconfig(
            OPERATOR_NAMESPACE,
            RELEASE,
            Duration::from_secs(3600),
            &std::env::temp_dir().join(format!(
                "faceid-e2e-leader-{}.kubeconfig",
                std::process::id()
            )),
        )
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    // Nobody else holds the Lease: the chart's own pods are kwok's and run nothing.
    if let Some(l) = leases.get_opt(LEASE).await.unwrap() {
        let _ = l;
        leases
            .delete(LEASE, &DeleteParams::default())
            .await
            .unwrap();
    }

    let namespaces: Api<Namespace> = Api::all(client.clone());
    delete_namespace(&client, NS).await.unwrap();
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "pg"},
                "stringData": {"url": required_env("DATABASE_URL").unwrap()},
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    // 1. Two operators; the first holds the Lease, the second waits.
    let first = start(&cp, &kubeconfig, "operator-a").await;
    wait_holder(&leases, "operator-a", Duration::from_secs(30)).await;
    let mut second = start(&cp, &kubeconfig, "operator-b").await;

    let tenants: Api<FaceIdTenant> = Api::namespaced(client.clone(), NS);
    let tenant: FaceIdTenant = serde_json::from_value(json!({
        "apiVersion": "faceid.dev/v1alpha1", "kind": "FaceIdTenant",
        "metadata": {"name": "leader"},
        "spec": {
            "database": {"connectionSecretRef": {"name": "pg"}, "schema": "e2e_leader", "deletionPolicy": "Delete"},
            "workload": {"replicas": 2},
        },
    }))
    .unwrap();
    tenants
        .create(&PostParams::default(), &tenant)
        .await
        .unwrap();
    wait_replicas(&client, 2, Duration::from_secs(120)).await;
    eventually(
        "an Event from operator-a",
        Duration::from_secs(60),
        || async {
            let n = events_of(&client, "operator-a").await.len();
            Ok(if n > 0 {
                Poll::Done(())
            } else {
                Poll::Pending("none yet".to_owned())
            })
        },
    )
    .await
    .unwrap();
    assert!(
        events_of(&client, "operator-b").await.is_empty(),
        "the standby published Events"
    );

    // 2. Freeze the leader past its lease: the standby takes over and reconciles.
    first.signal("STOP").unwrap();
    wait_holder(
        &leases,
        "operator-b",
        Duration::from_secs(LEASE_SECONDS * 4),
    )
    .await;
    tenants
        .patch(
            "leader",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workload": {"replicas": 3}}})),
        )
        .await
        .unwrap();
    wait_replicas(&client, 3, Duration::from_secs(60)).await;

    // 3. A change the frozen leader has not seen, then resume it: it must not write
    //    (the Deployment keeps what the new leader set) and it steps down.
    let events_a_before = events_of(&client, "operator-a").await.len();
    tenants
        .patch(
            "leader",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workload": {"replicas": 4}}})),
        )
        .await
        .unwrap();
    wait_replicas(&client, 4, Duration::from_secs(60)).await;
    let mut first = first;
    first.signal("CONT").unwrap();
    eventually(
        "the resumed leader exits",
        Duration::from_secs(LEASE_SECONDS * 3),
        || {
            let exited = first.exited();
            async move {
                Ok(if exited {
                    Poll::Done(())
                } else {
                    Poll::Pending("still running".to_owned())
                })
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("operator-b"),
        "the Lease stays with operator-b"
    );
    assert_eq!(
        events_of(&client, "operator-a").await.len(),
        events_a_before,
        "the resumed leader published Events:\n{}",
        first.log_tail(30)
    );
    assert!(
        first.log_text().contains("lead"),
        "the resumed leader says why it stopped:\n{}",
        first.log_tail(30)
    );
    assert!(
        !second.exited(),
        "operator-b keeps running:\n{}",
        second.log_tail(30)
    );
    let health = reqwest::get(format!("{}/healthz", second.http_url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the leader's /healthz");

    tenants
        .delete("leader", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "tenant deleted by the new leader",
        Duration::from_secs(60),
        || async {
            Ok(match tenants.get_opt("leader").await? {
                None => Poll::Done(()),
                Some(_) => Poll::Pending("still there".to_owned()),
            })
        },
    )
    .await
    .unwrap();
}
