//! The operator against a real Kubernetes control plane (`scripts/kube.sh`: kube-apiserver
//! with RBAC and service-account tokens, kube-controller-manager, kube-scheduler, etcd,
//! kwok nodes), the real PostgreSQL + pgvector of `scripts/platform.sh`, and real faces.
//!
//! Once per run (the first test that needs it): the README's cluster quick start is run
//! command for command (`helm install` of the chart, Secrets, the examples), then the
//! operator binary starts from the test with exactly the arguments of the Deployment the
//! chart created, authenticated as the chart's ServiceAccount with a token from the
//! TokenRequest API, so the chart's RBAC is what it is proven to need. Every test uses a
//! namespace of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use faceid_e2e::control_plane::{
    ControlPlane, OperatorProcess, Poll, client_from, delete_namespace, eventually,
};
use faceid_e2e::{ServiceProcess, faces_dir, free_port, repo_root, required_env};
use faceid_operator::crd::FaceIdTenant;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const RELEASE: &str = "faceid-operator";
const OPERATOR_NAMESPACE: &str = "faceid-system";
const README_NAMESPACE: &str = "acme";

/// What every test shares: the control plane and the operator started from the chart.
struct Shared {
    cp: ControlPlane,
    operator_kubeconfig: PathBuf,
    // Kept alive for the whole test process (its watchdog ends it with the process).
    _operator: OperatorProcess,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

/// The shared setup, run once on a thread of its own (tests each have their own runtime).
fn shared() -> &'static Shared {
    let shared = SHARED.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(setup())
                .map_err(|e| format!("{e:#}"))
        })
        .join()
        .unwrap_or_else(|_| Err("the setup panicked".to_owned()))
    });
    match shared {
        Ok(s) => s,
        Err(e) => panic!("control-plane setup failed: {e}"),
    }
}

async fn setup() -> Result<Shared> {
    let cp = ControlPlane::from_env()?;
    run_readme_quick_start(&cp).await?;
    let dir = std::env::temp_dir().join(format!("faceid-e2e-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let operator_kubeconfig = cp.service_account_kubeconfig(
        OPERATOR_NAMESPACE,
        RELEASE,
        Duration::from_secs(3 * 3600),
        &dir.join("operator.kubeconfig"),
    )?;
    let (args, env) = cp
        .chart_operator_command(OPERATOR_NAMESPACE, RELEASE)
        .await?;
    let operator = OperatorProcess::start(&operator_kubeconfig, &args, &env, "chart").await?;
    Ok(Shared {
        cp,
        operator_kubeconfig,
        _operator: operator,
    })
}

/// The fenced `sh` block of the README's "Deploying to a cluster", run line by line
/// with the local database and Redis in place of the placeholders.
async fn run_readme_quick_start(cp: &ControlPlane) -> Result<()> {
    let readme = std::fs::read_to_string(repo_root().join("README.md"))?;
    let section = readme
        .split("## Deploying to a cluster")
        .nth(1)
        .context("README has no \"Deploying to a cluster\" section")?;
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .context("no ```sh block in \"Deploying to a cluster\"")?;
    let admin_url = required_env("DATABASE_URL")?;
    let redis_url = required_env("REDIS_URL")?;
    // A previous binary of this run may have installed the release for its own tests;
    // the quick start begins on a cluster without it.
    if cp
        .helm(&["status", RELEASE, "-n", OPERATOR_NAMESPACE])
        .is_ok()
    {
        cp.helm(&["uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait"])?;
    }
    delete_namespace(&cp.admin_client().await?, README_NAMESPACE).await?;
    // Helm never upgrades a CRD it finds; an older one left by an earlier run on this
    // cluster is brought up to date the way docs/OPERATOR.md says to upgrade.
    if cp
        .kubectl(&["get", "crd", "faceidtenants.faceid.dev"])
        .is_ok()
    {
        let crd = repo_root().join("crds/faceidtenant.yaml");
        cp.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crd.to_str().unwrap(),
        ])?;
    }
    let bin_dir = cp.kubectl.parent().unwrap().to_owned();
    let helm_dir = cp.helm.parent().unwrap().to_owned();
    for line in block.lines() {
        let command = line.split("  #").next().unwrap().trim();
        if command.is_empty() || command.starts_with('#') {
            continue;
        }
        let command = command
            .replace("postgres://ADMIN:PASSWORD@HOST:5432/faceid", &admin_url)
            .replace("redis://HOST:6379/0", &redis_url);
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&command)
            .current_dir(repo_root())
            .env("KUBECONFIG", &cp.kubeconfig)
            .env(
                "PATH",
                format!(
                    "{}:{}:{}",
                    bin_dir.display(),
                    helm_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()?;
        if !out.status.success() {
            bail!(
                "README quick start: `{line}` failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------ helpers

async fn admin() -> Client {
    shared().cp.admin_client().await.unwrap()
}

/// A fresh, empty namespace `name` (any earlier one of that name deleted first).
async fn fresh_namespace(client: &Client, name: &str) {
    delete_namespace(client, name).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
}

/// A fresh namespace holding the database connection Secret `pg` (key `url`).
async fn namespace_with_database(client: &Client, name: &str) {
    fresh_namespace(client, name).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pg"},
        "stringData": {"url": required_env("DATABASE_URL").unwrap()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// `base` with this run's suffix: schemas outlive a cluster reset (a rerun against the
/// same database must not meet the last run's schemas).
fn schema(base: &str) -> String {
    static RUN: OnceLock<String> = OnceLock::new();
    let run = RUN.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..6].to_owned());
    format!("{base}_{run}")
}

/// A tenant `name` on schema `schema(schema_base)`, `Delete` policy, 2 replicas, with
/// `extra_spec` merged in.
fn tenant(name: &str, schema_base: &str, extra_spec: Value) -> FaceIdTenant {
    let mut spec = json!({
        "database": {
            "connectionSecretRef": {"name": "pg"},
            "schema": schema(schema_base),
            "deletionPolicy": "Delete",
        },
        "workload": {"replicas": 2},
    });
    merge(&mut spec, extra_spec);
    serde_json::from_value(json!({
        "apiVersion": "faceid.dev/v1alpha1",
        "kind": "FaceIdTenant",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

fn condition(t: &FaceIdTenant, kind: &str) -> Option<(String, String, String)> {
    t.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    })
}

fn describe(t: &FaceIdTenant) -> String {
    match &t.status {
        None => "no status".to_owned(),
        Some(s) => s
            .conditions
            .iter()
            .map(|c| format!("{}={} {} ({})", c.type_, c.status, c.reason, c.message))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Waits until tenant `name` has condition `kind` with `status` (and `reason`, when
/// given) for its current generation.
async fn wait_condition(
    api: &Api<FaceIdTenant>,
    name: &str,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> FaceIdTenant {
    eventually(
        &format!("tenant {name}: {kind}={status} {}", reason.unwrap_or("")),
        timeout,
        || async {
            let t = api.get(name).await?;
            let current = t
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .zip(t.metadata.generation)
                .is_some_and(|(o, g)| o >= g);
            let ok = condition(&t, kind)
                .is_some_and(|(s, r, _)| s == status && reason.is_none_or(|want| want == r));
            Ok(if ok && current {
                Poll::Done(t)
            } else {
                Poll::Pending(format!("tenant {name}: {}", describe(&t)))
            })
        },
    )
    .await
    .unwrap()
}

async fn wait_ready(api: &Api<FaceIdTenant>, name: &str) -> FaceIdTenant {
    wait_condition(api, name, "Ready", "True", None, Duration::from_secs(180)).await
}

async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: kube::Resource + Clone + for<'de> k8s_openapi::serde::Deserialize<'de> + std::fmt::Debug,
{
    eventually(&format!("{name} deleted"), timeout, || async {
        Ok(match api.get_opt(name).await? {
            None => Poll::Done(()),
            Some(o) => Poll::Pending(format!(
                "{name} still there (deletionTimestamp {:?}, finalizers {:?})",
                o.meta().deletion_timestamp,
                o.meta().finalizers
            )),
        })
    })
    .await
    .unwrap();
}

/// Warning Events about tenant `name`, as "reason: message".
async fn warnings(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), namespace);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.type_.as_deref() == Some("Warning")
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect()
}

/// The environment of the tenant's pod template, resolved from the API server as the
/// kubelet would (`value`, `secretKeyRef`, `configMapKeyRef`, `envFrom`).
async fn pod_environment(client: &Client, namespace: &str, name: &str) -> BTreeMap<String, String> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap();
    let container = deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .next()
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut env = BTreeMap::new();
    for from in container.env_from.unwrap_or_default() {
        if let Some(r) = from.config_map_ref {
            let cm = config_maps.get(&r.name).await.unwrap();
            env.extend(cm.data.unwrap_or_default());
        }
        if let Some(r) = from.secret_ref {
            let s = secrets.get(&r.name).await.unwrap();
            for (k, v) in s.data.unwrap_or_default() {
                env.insert(k, String::from_utf8(v.0).unwrap());
            }
        }
    }
    for var in container.env.unwrap_or_default() {
        let value = if let Some(v) = var.value {
            v
        } else if let Some(from) = var.value_from {
            if let Some(r) = from.secret_key_ref {
                let s = secrets.get(&r.name).await.unwrap();
                let bytes = s
                    .data
                    .unwrap_or_default()
                    .remove(&r.key)
                    .unwrap_or_else(|| panic!("Secret {} has no key {}", r.name, r.key));
                String::from_utf8(bytes.0).unwrap()
            } else if let Some(r) = from.config_map_key_ref {
                config_maps
                    .get(&r.name)
                    .await
                    .unwrap()
                    .data
                    .unwrap_or_default()
                    .remove(&r.key)
                    .unwrap_or_else(|| panic!("ConfigMap {} has no key {}", r.name, r.key))
            } else {
                panic!("env {} has a source this test does not resolve", var.name)
            }
        } else {
            String::new()
        };
        env.insert(var.name, value);
    }
    env
}

/// `faceid serve` started locally with exactly the environment of the tenant's pods.
async fn serve_like_the_pod(client: &Client, namespace: &str, name: &str) -> ServiceProcess {
    let mut env = pod_environment(client, namespace, name).await;
    // What the container image provides beside the rendered environment.
    env.insert(
        "ORT_DYLIB_PATH".into(),
        required_env("ORT_DYLIB_PATH").unwrap(),
    );
    env.insert(
        "MODELS_DIR".into(),
        repo_root().join("models").display().to_string(),
    );
    ServiceProcess::start(&env, free_port().unwrap(), &format!("{namespace}-{name}"))
        .await
        .unwrap()
}

async fn post_face(url: &str, path: &str, fields: &[(&str, &str)], photo: &str) -> (u16, Value) {
    let image = std::fs::read(faces_dir().join("genuine").join(photo)).unwrap();
    let mut form = Form::new().part("face_image", Part::bytes(image).file_name("face.jpg"));
    for (k, v) in fields {
        form = form.text((*k).to_owned(), (*v).to_owned());
    }
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn register_bush(url: &str) {
    let (status, body) = post_face(
        url,
        "/api/v1/auth/register",
        &[
            ("username", "bush"),
            ("email", "bush@example.com"),
            ("password", "correct horse battery"),
        ],
        "george_w_bush_1.jpg",
    )
    .await;
    assert_eq!(status, 201, "register: {body}");
}

async fn login_bush(url: &str) -> (u16, Value) {
    post_face(
        url,
        "/api/v1/auth/login",
        &[("username", "bush")],
        "george_w_bush_3.jpg",
    )
    .await
}

async fn schema_exists(schema: &str) -> bool {
    let pool = sqlx::PgPool::connect(&required_env("DATABASE_URL").unwrap())
        .await
        .unwrap();
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(&pool)
        .await
        .unwrap()
}

async fn role_exists(role: &str) -> bool {
    let pool = sqlx::PgPool::connect(&required_env("DATABASE_URL").unwrap())
        .await
        .unwrap();
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(role)
        .fetch_one(&pool)
        .await
        .unwrap()
}

// -------------------------------------------------------------------------- tests

/// The README's quick start, step for step, ends with both example tenants Ready.
#[tokio::test]
async fn readme_quick_start_ends_with_ready_tenants() {
    let client = admin().await;
    let api: Api<FaceIdTenant> = Api::namespaced(client, README_NAMESPACE);
    for name in ["acme", "globex"] {
        let t = wait_ready(&api, name).await;
        let status = t.status.unwrap();
        assert_eq!(status.schema.as_deref(), Some(name));
        assert!(status.ready_replicas >= 2, "{name}: {status:?}");
    }
    // The examples' Ingress, as the API server stored it, fronts acme's Service.
    let ingress = Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(
        admin().await,
        README_NAMESPACE,
    )
    .get("acme")
    .await
    .expect("the Ingress example applied with the others");
    let rules = ingress.spec.unwrap().rules.unwrap();
    let backend = rules[0].http.as_ref().unwrap().paths[0]
        .backend
        .service
        .clone()
        .unwrap();
    assert_eq!(backend.name, "acme");
}

/// The operator works with the chart's ServiceAccount (the shared operator runs as it)
/// and that account is refused what the operator does not need.
#[tokio::test]
async fn chart_service_account_is_sufficient_and_least_privilege() {
    let s = shared();
    let sa = client_from(&s.operator_kubeconfig).await.unwrap();
    // What it needs.
    Api::<FaceIdTenant>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .unwrap();
    // What it must not have: reading every Secret, deleting namespaces, touching pods.
    let forbidden = |r: Result<_, kube::Error>, what: &str| match r {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("the operator's ServiceAccount may {what}: {other:?}"),
    };
    forbidden(
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "list all Secrets",
    );
    forbidden(
        Api::<Namespace>::all(sa.clone())
            .delete("default", &DeleteParams::default())
            .await
            .map(|_| ()),
        "delete a namespace",
    );
    forbidden(
        Api::<Pod>::namespaced(sa.clone(), "default")
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .map(|_| ()),
        "delete pods",
    );
}

/// Two tenants become Ready with every child as the API server stores it (defaults
/// applied), pods scheduled on kwok nodes and Running; a rollout that never becomes
/// ready is reported honestly once it exceeds its progress deadline.
#[tokio::test]
async fn two_tenants_ready_with_their_children() {
    let client = admin().await;
    let ns = "e2e-children";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &tenant("one", "e2e_children_one", json!({})),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &tenant(
            "two",
            "e2e_children_two",
            json!({"workload": {"autoscaling": {"minReplicas": 2, "maxReplicas": 4}}}),
        ),
    )
    .await
    .unwrap();
    for name in ["one", "two"] {
        let t = wait_ready(&api, name).await;
        let (_, reason, _) = condition(&t, "WorkloadReady").unwrap();
        assert_eq!(reason, "DeploymentAvailable");

        let d = Api::<Deployment>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .unwrap();
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2), "{name}: Deployment replicas");
        // Defaults the API server applied.
        assert_eq!(spec.revision_history_limit, Some(10));
        assert_eq!(spec.progress_deadline_seconds, Some(600));
        assert!(
            d.owner_references()
                .iter()
                .any(|o| o.kind == "FaceIdTenant" && o.controller == Some(true))
        );

        let svc = Api::<Service>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .unwrap();
        let svc_spec = svc.spec.unwrap();
        assert!(
            svc_spec
                .cluster_ip
                .is_some_and(|ip| ip.starts_with("10.96.")),
            "{name}: Service has a cluster IP"
        );
        assert_eq!(svc_spec.type_.as_deref(), Some("ClusterIP"));

        let creds = Api::<Secret>::namespaced(client.clone(), ns)
            .get(&format!("{name}-credentials"))
            .await
            .unwrap();
        let keys: Vec<_> = creds.data.unwrap().into_keys().collect();
        for key in [
            "SECRET_KEY",
            "ADMIN_API_KEY",
            "TEMPLATE_KEY",
            "DATABASE_URL",
            "SIGNING_KEYS",
        ] {
            assert!(
                keys.iter().any(|k| k == key),
                "{name}: credentials lack {key}: {keys:?}"
            );
        }

        let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .unwrap();
        let pdb_spec = pdb.spec.unwrap();
        assert_eq!(
            pdb_spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow"),
            "{name}: PDB must let unhealthy pods be evicted"
        );

        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
            .await
            .unwrap();
        let running: Vec<_> = pods
            .items
            .iter()
            .filter(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| n.starts_with("kwok-node-"))
            })
            .collect();
        assert_eq!(
            running.len(),
            2,
            "{name}: pods Running on kwok nodes: {:?}",
            pods.items
                .iter()
                .map(|p| (
                    p.name_any(),
                    p.status.as_ref().and_then(|s| s.phase.clone())
                ))
                .collect::<Vec<_>>()
        );
    }
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns);
    assert!(
        hpa.get_opt("one").await.unwrap().is_none(),
        "one: no autoscaler"
    );
    let two = hpa.get("two").await.unwrap().spec.unwrap();
    assert_eq!((two.min_replicas, two.max_replicas), (Some(2), 4));

    // A rollout whose pods never turn Ready (kwok leaves pods with this annotation
    // Pending), with a short progress deadline set by someone else: the tenant says so.
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            "one",
            &PatchParams::apply("e2e-deadline").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "one"},
                "spec": {"progressDeadlineSeconds": 5},
            })),
        )
        .await
        .unwrap();
    api.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"workload": {"podAnnotations": {"faceid.dev/e2e-never-ready": "true"}}}})),
    )
    .await
    .unwrap();
    let t = wait_condition(
        &api,
        "one",
        "WorkloadReady",
        "False",
        Some("ProgressDeadlineExceeded"),
        Duration::from_secs(90),
    )
    .await;
    let (ready, _, _) = condition(&t, "Ready").unwrap();
    assert_eq!(ready, "False", "{}", describe(&t));
}

/// The Deployment the operator rendered really works: its environment, resolved from
/// the API server, starts `faceid serve` against the schema the operator provisioned,
/// which registers and logs in a real face.
#[tokio::test]
async fn rendered_deployment_serves_a_real_face() {
    let client = admin().await;
    let ns = "e2e-serve";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &tenant("serve", "e2e_serve", json!({})),
    )
    .await
    .unwrap();
    wait_ready(&api, "serve").await;
    let service = serve_like_the_pod(&client, ns, "serve").await;
    register_bush(&service.url).await;
    let (status, body) = login_bush(&service.url).await;
    assert_eq!(status, 200, "login: {body}\n{}", service.log_tail());
    assert!(body["access_token"].is_string(), "{body}");
}

/// `spec.workload.replicas` reaches the Deployment (through the scale subresource too),
/// and switching autoscaling on and off never drops the Deployment below what ran.
#[tokio::test]
async fn scaling_and_autoscaling_handover() {
    let client = admin().await;
    let ns = "e2e-scale";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &tenant("scale", "e2e_scale", json!({})),
    )
    .await
    .unwrap();
    wait_ready(&api, "scale").await;
    shared()
        .cp
        .kubectl(&["scale", "-n", ns, "faceidtenant/scale", "--replicas=4"])
        .unwrap();
    let replicas = |want: i32| {
        let deployments = deployments.clone();
        async move {
            eventually(
                &format!("Deployment scale at {want} replicas"),
                Duration::from_secs(60),
                || async {
                    let d = deployments.get("scale").await?;
                    let r = d.spec.and_then(|s| s.replicas);
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
    };
    replicas(4).await;
    wait_ready(&api, "scale").await;

    // Autoscaling on (min 2): the Deployment keeps its 4 replicas until the autoscaler
    // decides otherwise; it must never fall to the API default of 1 on the way.
    let watch_min = {
        let deployments = deployments.clone();
        tokio::spawn(async move {
            let mut min = i32::MAX;
            for _ in 0..80 {
                if let Ok(d) = deployments.get("scale").await {
                    min = min.min(d.spec.and_then(|s| s.replicas).unwrap_or(1));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            min
        })
    };
    api.patch(
        "scale",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"workload": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}}),
        ),
    )
    .await
    .unwrap();
    let min = watch_min.await.unwrap();
    assert!(
        min >= 2,
        "turning autoscaling on dropped the Deployment to {min} replicas"
    );
    assert!(
        Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns)
            .get_opt("scale")
            .await
            .unwrap()
            .is_some(),
        "autoscaler created"
    );

    // Autoscaling off again with 3 replicas: the operator owns replicas once more.
    api.patch(
        "scale",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"workload": {"autoscaling": null, "replicas": 3}}})),
    )
    .await
    .unwrap();
    replicas(3).await;
    wait_gone(
        &Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns),
        "scale",
        Duration::from_secs(60),
    )
    .await;
}

/// Bad specs are refused at admission where the schema can say it, otherwise reported
/// as a condition and a Warning Event naming the field, never a silent retry loop.
#[tokio::test]
async fn bad_specs_are_refused_or_reported() {
    let client = admin().await;
    let ns = "e2e-bad";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    let refused = |r: Result<FaceIdTenant, kube::Error>, what: &str, field: &str| match r {
        Err(kube::Error::Api(e)) if e.code == 422 => {
            assert!(
                e.message.contains(field),
                "{what}: refusal does not name {field}: {}",
                e.message
            )
        }
        other => panic!("{what}: admitted (or not refused as invalid): {other:?}"),
    };
    // Not a DNS-1035 label (a Service name must start with a letter).
    refused(
        api.create(
            &PostParams::default(),
            &tenant("1abc", "e2e_bad_a", json!({})),
        )
        .await,
        "name starting with a digit",
        "metadata.name",
    );
    // Too long for the children's names and label values.
    let long = "a".repeat(60);
    refused(
        api.create(
            &PostParams::default(),
            &tenant(&long, "e2e_bad_b", json!({})),
        )
        .await,
        "60-character name",
        "metadata.name",
    );
    refused(
        api.create(
            &PostParams::default(),
            &tenant(
                "annotations",
                "e2e_bad_c",
                json!({"workload": {"podAnnotations": {"not a key!": "x"}}}),
            ),
        )
        .await,
        "bad annotation key",
        "podAnnotations",
    );
    // A quantity the schema admits or not: either refused naming the field, or
    // reported as a condition and a Warning Event naming it.
    let r = api
        .create(
            &PostParams::default(),
            &tenant(
                "quantity",
                "e2e_bad_d",
                json!({"workload": {"resources": {"requests": {"memory": "lots"}}}}),
            ),
        )
        .await;
    match r {
        Err(kube::Error::Api(e)) if e.code == 422 => {
            assert!(
                e.message.contains("resources"),
                "refusal does not name the field: {}",
                e.message
            )
        }
        Err(e) => panic!("bad quantity: {e}"),
        Ok(_) => {
            let t = wait_condition(
                &api,
                "quantity",
                "Ready",
                "False",
                None,
                Duration::from_secs(60),
            )
            .await;
            let (_, _, message) = condition(&t, "Ready").unwrap();
            assert!(message.contains("resources"), "{}", describe(&t));
            let events = warnings(&client, ns, "quantity").await;
            assert!(
                events.iter().any(|e| e.contains("resources")),
                "no Warning Event names the field: {events:?}"
            );
        }
    }
}

/// Deletion: `Delete` drops the schema and role while a pod's connection is open;
/// `Retain` keeps the schema and the credentials, and a tenant created again adopts them
/// so its users still log in; children go with the garbage collector.
#[tokio::test]
async fn deletion_policies_and_adoption() {
    let client = admin().await;
    let ns = "e2e-delete";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);

    // Delete, with a live connection of the tenant's role.
    api.create(
        &PostParams::default(),
        &tenant("gone", "e2e_delete_gone", json!({})),
    )
    .await
    .unwrap();
    wait_ready(&api, "gone").await;
    let env = pod_environment(&client, ns, "gone").await;
    let live = sqlx::PgPool::connect(&env["DATABASE_URL"]).await.unwrap();
    sqlx::query("SELECT 1").execute(&live).await.unwrap();
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "gone", Duration::from_secs(60)).await;
    assert!(
        !schema_exists(&schema("e2e_delete_gone")).await,
        "schema dropped"
    );
    assert!(
        !role_exists(&format!("faceid_{}", schema("e2e_delete_gone"))).await,
        "role dropped"
    );
    // The children went with the garbage collector of the controller-manager.
    wait_gone(
        &Api::<Deployment>::namespaced(client.clone(), ns),
        "gone",
        Duration::from_secs(60),
    )
    .await;
    wait_gone(
        &Api::<Service>::namespaced(client.clone(), ns),
        "gone",
        Duration::from_secs(60),
    )
    .await;
    wait_gone(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        "gone-config",
        Duration::from_secs(60),
    )
    .await;
    wait_gone(
        &Api::<Secret>::namespaced(client.clone(), ns),
        "gone-credentials",
        Duration::from_secs(60),
    )
    .await;

    // Retain: a user registered, the tenant deleted and created again.
    let retained = tenant(
        "kept",
        "e2e_delete_kept",
        json!({"database": {"deletionPolicy": "Retain"}}),
    );
    api.create(&PostParams::default(), &retained).await.unwrap();
    wait_ready(&api, "kept").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let template_key = |s: Secret| s.data.unwrap()["TEMPLATE_KEY"].0.clone();
    let key_before = template_key(secrets.get("kept-credentials").await.unwrap());
    {
        let service = serve_like_the_pod(&client, ns, "kept").await;
        register_bush(&service.url).await;
    }
    api.delete("kept", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "kept", Duration::from_secs(60)).await;
    wait_gone(
        &Api::<Deployment>::namespaced(client.clone(), ns),
        "kept",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        schema_exists(&schema("e2e_delete_kept")).await,
        "Retain kept the schema"
    );
    let kept = secrets
        .get_opt("kept-credentials")
        .await
        .unwrap()
        .expect("Retain keeps the credentials Secret");
    assert!(
        kept.owner_references().is_empty(),
        "the retained Secret has no owner: {:?}",
        kept.owner_references()
    );

    api.create(&PostParams::default(), &retained).await.unwrap();
    wait_ready(&api, "kept").await;
    let adopted = secrets.get("kept-credentials").await.unwrap();
    assert!(
        adopted
            .owner_references()
            .iter()
            .any(|o| o.kind == "FaceIdTenant" && o.name == "kept"),
        "the new tenant adopted the Secret"
    );
    assert_eq!(
        template_key(adopted),
        key_before,
        "TEMPLATE_KEY never regenerated"
    );
    let service = serve_like_the_pod(&client, ns, "kept").await;
    let (status, body) = login_bush(&service.url).await;
    assert_eq!(
        status,
        200,
        "the retained user logs in after adoption: {body}\n{}",
        service.log_tail()
    );
    drop(service);
    api.patch(
        "kept",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"database": {"deletionPolicy": "Delete"}}})),
    )
    .await
    .unwrap();
    api.delete("kept", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "kept", Duration::from_secs(60)).await;
}

/// Deleting a namespace with tenants completes: one provisioned with `Delete`, one
/// whose database was never reachable.
#[tokio::test]
async fn namespace_deletion_completes() {
    let client = admin().await;
    let ns = "e2e-nsdelete";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &tenant("live", "e2e_nsdelete_live", json!({})),
    )
    .await
    .unwrap();
    let unreachable: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pg-unreachable"},
        "stringData": {"url": "postgres://nobody:nothing@127.0.0.1:1/faceid"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &unreachable)
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &tenant(
            "unreachable",
            "e2e_nsdelete_unreachable",
            json!({"database": {"connectionSecretRef": {"name": "pg-unreachable"}}}),
        ),
    )
    .await
    .unwrap();
    wait_ready(&api, "live").await;
    wait_condition(
        &api,
        "unreachable",
        "DatabaseReady",
        "False",
        Some("DatabaseUnavailable"),
        Duration::from_secs(60),
    )
    .await;
    Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(
        &Api::<Namespace>::all(client.clone()),
        ns,
        Duration::from_secs(120),
    )
    .await;
    assert!(
        !schema_exists(&schema("e2e_nsdelete_live")).await,
        "schema of the Delete tenant dropped"
    );
}

/// The operator repairs a child someone deleted.
#[tokio::test]
async fn deleted_children_are_repaired() {
    let client = admin().await;
    let ns = "e2e-repair";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &tenant("repair", "e2e_repair", json!({})),
    )
    .await
    .unwrap();
    wait_ready(&api, "repair").await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let uid = services.get("repair").await.unwrap().uid();
    services
        .delete("repair", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Service recreated", Duration::from_secs(60), || async {
        Ok(match services.get_opt("repair").await? {
            Some(s) if s.uid() != uid => Poll::Done(()),
            other => Poll::Pending(format!("Service: {:?}", other.map(|s| s.uid()))),
        })
    })
    .await
    .unwrap();
}

/// Twenty tenants created at once on one admin database URL all become Ready.
#[tokio::test]
async fn twenty_tenants_at_once() {
    let client = admin().await;
    let ns = "e2e-twenty";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    let names: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
    futures::future::try_join_all(names.iter().map(|n| {
        let api = api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &tenant(
                    n,
                    &format!("e2e_twenty_{n}"),
                    json!({"workload": {"replicas": 1}}),
                ),
            )
            .await
        }
    }))
    .await
    .unwrap();
    eventually(
        "all twenty tenants Ready",
        Duration::from_secs(300),
        || async {
            let list = api.list(&ListParams::default()).await?;
            let not_ready: Vec<String> = list
                .items
                .iter()
                .filter(|t| condition(t, "Ready").is_none_or(|(s, _, _)| s != "True"))
                .map(|t| format!("{}: {}", t.name_any(), describe(t)))
                .collect();
            Ok(if list.items.len() == 20 && not_ready.is_empty() {
                Poll::Done(())
            } else {
                Poll::Pending(not_ready.join(" | "))
            })
        },
    )
    .await
    .unwrap();
}

/// A structural stand-in for one Prometheus Operator CRD (`monitoring.coreos.com/v1`):
/// the real schemas are not vendored here, so `spec` is kept as sent.
fn stand_in_crd(kind: &str, plural: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                }},
            }],
        },
    })
}

/// `spec.monitoring.enabled`: on a cluster without the Prometheus Operator the tenant
/// says so and stays Ready; once the API is served the ServiceMonitor and the
/// PrometheusRule appear, owned by the tenant; turned off, they go.
#[tokio::test]
async fn monitoring_objects_follow_the_spec_and_the_cluster() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let client = admin().await;
    let ns = "e2e-monitoring";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &tenant(
            "watched",
            "e2e_monitoring",
            json!({"monitoring": {"enabled": true, "labels": {"release": "prometheus"}}}),
        ),
    )
    .await
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let served = crds
        .get_opt("servicemonitors.monitoring.coreos.com")
        .await
        .unwrap()
        .is_some();
    if !served {
        wait_condition(
            &api,
            "watched",
            "Monitoring",
            "False",
            Some("PrometheusOperatorMissing"),
            Duration::from_secs(120),
        )
        .await;
        let t = wait_ready(&api, "watched").await;
        assert_eq!(
            condition(&t, "Monitoring").map(|c| c.1),
            Some("PrometheusOperatorMissing".to_owned()),
            "Ready while monitoring cannot be set up: {}",
            describe(&t)
        );
        let events = warnings(&client, ns, "watched").await;
        assert!(
            events
                .iter()
                .any(|e| e.starts_with("PrometheusOperatorMissing")),
            "{events:?}"
        );
        for (kind, plural) in [
            ("ServiceMonitor", "servicemonitors"),
            ("PrometheusRule", "prometheusrules"),
        ] {
            crds.patch(
                &format!("{plural}.monitoring.coreos.com"),
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(stand_in_crd(kind, plural)),
            )
            .await
            .unwrap();
        }
    }
    let ar = |kind: &str| {
        ApiResource::from_gvk(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind))
    };
    let monitors: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &ar("ServiceMonitor"));
    let rules: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar("PrometheusRule"));
    // Any change of the tenant wakes the operator; the API is served by then.
    let mut n = 0;
    let t = eventually("Monitoring configured", Duration::from_secs(120), || {
        n += 1;
        let api = api.clone();
        let touch = n;
        async move {
            api.patch(
                "watched",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"e2e/touch": touch.to_string()}}}),
                ),
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t = api.get("watched").await?;
            Ok(
                if condition(&t, "Monitoring").is_some_and(|(s, _, _)| s == "True") {
                    Poll::Done(t)
                } else {
                    Poll::Pending(describe(&t))
                },
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(
        condition(&t, "Monitoring").unwrap().1,
        "MonitoringConfigured"
    );
    let sm = monitors.get("watched").await.unwrap();
    assert!(
        sm.owner_references()
            .iter()
            .any(|o| o.kind == "FaceIdTenant" && o.controller == Some(true))
    );
    assert_eq!(
        sm.labels().get("release").map(String::as_str),
        Some("prometheus")
    );
    let rule = rules.get("watched").await.unwrap();
    let alerts = rule.data["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(alerts, 5, "{:?}", rule.data);

    api.patch(
        "watched",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"monitoring": {"enabled": false}}})),
    )
    .await
    .unwrap();
    wait_gone(&monitors, "watched", Duration::from_secs(60)).await;
    wait_gone(&rules, "watched", Duration::from_secs(60)).await;
    let t = wait_ready(&api, "watched").await;
    assert!(condition(&t, "Monitoring").is_none(), "{}", describe(&t));
}

/// `spec.oidc`: each confidential client gets a Secret with what its app mounts; the
/// service gets the issuer and the clients with only the secret's hash, and serves them
/// (started with the pod's environment: discovery names the issuer, the client's login
/// page opens); a spec change keeps the secret; a client removed loses its Secret; a bad
/// redirect URI is refused at admission, naming the field.
#[tokio::test]
async fn oidc_clients_get_their_secrets_and_the_service_its_settings() {
    use sha2::{Digest, Sha256};
    let client = admin().await;
    let ns = "e2e-oidc";
    namespace_with_database(&client, ns).await;
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    let clients = |shop: bool| {
        let mut list = vec![json!({"clientId": "mobile", "type": "public",
            "redirectUris": ["com.acme.shop:/cb"], "idTokenSignedResponseAlg": "ES256"})];
        if shop {
            list.push(json!({"clientId": "shop",
                "redirectUris": ["https://shop.acme.example/callback"],
                "postLogoutRedirectUris": ["https://shop.acme.example/"]}));
        }
        json!({"oidc": {"issuerUrl": "https://login.acme.example", "clients": list}})
    };
    api.create(
        &PostParams::default(),
        &tenant("oidc", "e2e_oidc", clients(true)),
    )
    .await
    .unwrap();
    let t = wait_ready(&api, "oidc").await;
    let status = t.status.clone().unwrap();
    assert_eq!(status.oidc_client_secrets, ["faceid-oidc-oidc-shop"]);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let read =
        |s: &Secret, k: &str| String::from_utf8(s.data.as_ref().unwrap()[k].0.clone()).unwrap();
    let shop = secrets.get("faceid-oidc-oidc-shop").await.unwrap();
    let secret = read(&shop, "client_secret");
    assert!(secret.len() >= 32);
    assert_eq!(read(&shop, "issuer"), "https://login.acme.example");
    assert_eq!(read(&shop, "client_id"), "shop");
    let config = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("oidc-config")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(config["ISSUER_URL"], "https://login.acme.example");
    assert!(!config["OIDC_CLIENTS"].contains(&secret));
    let rendered: Value = serde_json::from_str(&config["OIDC_CLIENTS"]).unwrap();
    let hash: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let by_id = |id: &str| {
        rendered
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("shop")["secret_sha256"], hash);
    assert!(by_id("mobile").get("secret_sha256").is_none());
    assert_eq!(by_id("mobile")["id_token_signed_response_alg"], "ES256");

    // The service accepts what was rendered.
    let service = serve_like_the_pod(&client, ns, "oidc").await;
    let discovery: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", service.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(discovery["issuer"], "https://login.acme.example");
    let page = reqwest::get(format!(
        "{}/authorize?client_id=shop&redirect_uri=https%3A%2F%2Fshop.acme.example%2Fcallback&response_type=code&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        service.url
    ))
    .await
    .unwrap();
    assert_eq!(page.status().as_u16(), 200, "{}", service.log_tail());
    drop(service);

    // Removing the confidential client deletes its Secret; the public one never had one.
    api.patch(
        "oidc",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": clients(false)})),
    )
    .await
    .unwrap();
    eventually("client Secret deleted", Duration::from_secs(60), || async {
        Ok(match secrets.get_opt("faceid-oidc-oidc-shop").await? {
            None => Poll::Done(()),
            Some(_) => Poll::Pending("still there".to_owned()),
        })
    })
    .await
    .unwrap();
    // Declared again: a new secret (the old one is gone with its Secret), kept across a
    // later spec change.
    api.patch(
        "oidc",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": clients(true)})),
    )
    .await
    .unwrap();
    let again = eventually(
        "client Secret recreated",
        Duration::from_secs(60),
        || async {
            Ok(match secrets.get_opt("faceid-oidc-oidc-shop").await? {
                Some(s) => Poll::Done(read(&s, "client_secret")),
                None => Poll::Pending("absent".to_owned()),
            })
        },
    )
    .await
    .unwrap();
    assert_ne!(again, secret);
    api.patch(
        "oidc",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"rateLimits": {"login": "20/minute"}}})),
    )
    .await
    .unwrap();
    let generation = api.get("oidc").await.unwrap().metadata.generation;
    eventually("spec change observed", Duration::from_secs(60), || async {
        let t = api.get("oidc").await?;
        Ok(
            match t.status.as_ref().and_then(|s| s.observed_generation) {
                g if g == generation => Poll::Done(()),
                g => Poll::Pending(format!("observed {g:?}")),
            },
        )
    })
    .await
    .unwrap();
    let kept = secrets.get("faceid-oidc-oidc-shop").await.unwrap();
    assert_eq!(read(&kept, "client_secret"), again);

    // Bad redirect URIs and a missing issuer are refused at admission.
    let refused = |r: Result<FaceIdTenant, kube::Error>, what: &str, field: &str| match r {
        Err(kube::Error::Api(e)) if e.code == 422 => {
            assert!(e.message.contains(field), "{what}: {}", e.message)
        }
        other => panic!("{what}: admitted: {other:?}"),
    };
    for uri in [
        "http://shop.acme.example/cb",
        "https://shop.acme.example/cb#x",
        "https://user@shop.acme.example/cb",
        "javascript:alert(1)",
    ] {
        refused(
            api.create(
                &PostParams::default(),
                &tenant(
                    "oidc-bad",
                    "e2e_oidc_bad",
                    json!({"oidc": {"issuerUrl": "https://login.acme.example",
                        "clients": [{"clientId": "x", "redirectUris": [uri]}]}}),
                ),
            )
            .await,
            uri,
            "redirectUris",
        );
    }
    refused(
        api.create(
            &PostParams::default(),
            &tenant(
                "oidc-bad",
                "e2e_oidc_bad",
                json!({"oidc": {"clients": [{"clientId": "x", "redirectUris": ["https://a.example/cb"]}]}}),
            ),
        )
        .await,
        "clients without an issuer",
        "spec.oidc.issuerUrl",
    );
}

/// A confidential client's Secret goes into the app's own namespace once that namespace
/// accepts it (refused, and said so, before), carries no owner reference there, and is
/// deleted with the tenant.
#[tokio::test]
async fn an_oidc_client_secret_reaches_the_apps_namespace_only_with_its_consent() {
    let client = admin().await;
    let (ns, app_ns) = ("e2e-oidc-idp", "e2e-oidc-app");
    namespace_with_database(&client, ns).await;
    fresh_namespace(&client, app_ns).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let api: Api<FaceIdTenant> = Api::namespaced(client.clone(), ns);
    let web = json!({"clientId": "web", "secretNamespace": app_ns,
        "redirectUris": ["https://shop.acme.example/callback"]});
    let oidc = |clients: Value| json!({"oidc": {"issuerUrl": "https://login.acme.example", "clients": clients}});
    api.create(
        &PostParams::default(),
        &tenant("idp", "e2e_oidc_idp", oidc(json!([web]))),
    )
    .await
    .unwrap();

    // Without the namespace's consent: nothing written there, and the status says why.
    let t = wait_condition(
        &api,
        "idp",
        "SecretsReady",
        "False",
        Some("SecretNamespaceNotAccepted"),
        Duration::from_secs(60),
    )
    .await;
    let (_, _, message) = condition(&t, "SecretsReady").unwrap();
    assert!(
        message.contains("faceid.dev/accept-oidc-client-secrets-from"),
        "{message}"
    );
    let app_secrets: Api<Secret> = Api::namespaced(client.clone(), app_ns);
    assert!(
        app_secrets
            .get_opt("faceid-oidc-idp-web")
            .await
            .unwrap()
            .is_none()
    );

    // The app's namespace accepts this tenant namespace (among others): the operator,
    // watching namespaces, writes the Secret there without any change to the tenant.
    namespaces
        .patch(
            app_ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "faceid.dev/accept-oidc-client-secrets-from": format!("billing, {ns}")}}})),
        )
        .await
        .unwrap();
    let t = wait_condition(&api, "idp", "Ready", "True", None, Duration::from_secs(60)).await;
    let entry = format!("{app_ns}/faceid-oidc-idp-web");
    assert_eq!(t.status.unwrap().oidc_client_secrets, [entry]);
    let mounted = app_secrets.get("faceid-oidc-idp-web").await.unwrap();
    assert!(mounted.metadata.owner_references.is_none());
    assert_eq!(
        mounted.annotations()["faceid.dev/oidc-client-of-uid"],
        t.metadata.uid.unwrap()
    );
    let data = mounted.data.unwrap();
    assert!(data["client_secret"].0.len() >= 32);
    assert_eq!(data["issuer"].0, b"https://login.acme.example");
    assert!(
        Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt("faceid-oidc-idp-web")
            .await
            .unwrap()
            .is_none(),
        "the Secret is in the app's namespace only"
    );

    // A public client has no Secret to place, and a namespace is a DNS label.
    for (clients, field) in [
        (
            json!([{"clientId": "spa", "type": "public", "secretNamespace": app_ns,
                "redirectUris": ["https://spa.acme.example/cb"]}]),
            "secretNamespace is only for confidential clients",
        ),
        (
            json!([{"clientId": "web", "secretNamespace": "Not_A_Namespace",
                "redirectUris": ["https://shop.acme.example/callback"]}]),
            "secretNamespace",
        ),
    ] {
        match api
            .create(
                &PostParams::default(),
                &tenant("idp-bad", "e2e_oidc_idp_bad", oidc(clients)),
            )
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 422 => {
                assert!(e.message.contains(field), "{}", e.message)
            }
            other => panic!("admitted: {other:?}"),
        }
    }

    // Deleting the tenant deletes the Secret it placed elsewhere.
    api.delete("idp", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "idp", Duration::from_secs(120)).await;
    assert!(
        app_secrets
            .get_opt("faceid-oidc-idp-web")
            .await
            .unwrap()
            .is_none()
    );
    delete_namespace(&client, app_ns).await.unwrap();
}
