//! Helpers of the suites that run against the local Kubernetes control plane of
//! `scripts/kube.sh` (real kube-apiserver, controller-manager, scheduler and etcd; kwok
//! for nodes and pods): the admin's kubeconfig, `kubectl` and `helm` as the README uses
//! them, a kubeconfig of a ServiceAccount from the TokenRequest API, the operator binary
//! run as a real process, and polling that says what the cluster showed on a timeout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::repo_root;

/// The control plane of `scripts/kube.sh start`, seen as its administrator.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// The cluster-admin kubeconfig (`.dev/kube/admin.kubeconfig`, or `FACEID_KUBECONFIG`).
    pub kubeconfig: PathBuf,
    /// The `kubectl` built with the control plane (same version as the API server).
    pub kubectl: PathBuf,
    /// Helm (`HELM`, installed by `scripts/platform.sh`).
    pub helm: PathBuf,
}

impl ControlPlane {
    /// The running control plane, or an error that says how to start it.
    pub fn from_env() -> Result<ControlPlane> {
        let kube_dir = repo_root().join(".dev/kube");
        let kubeconfig = std::env::var_os("FACEID_KUBECONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| kube_dir.join("admin.kubeconfig"));
        let kubectl = kube_dir.join("bin/kubectl");
        if !kubeconfig.exists() || !kubectl.exists() {
            bail!(
                "no local control plane ({} missing): run the tests through scripts/test.sh, or `scripts/kube.sh start` first",
                kubeconfig.display()
            );
        }
        let helm = PathBuf::from(crate::required_env("HELM")?);
        let cp = ControlPlane {
            kubeconfig,
            kubectl,
            helm,
        };
        cp.kubectl(&["get", "--raw", "/readyz"])
            .context("the control plane does not answer: `scripts/kube.sh start`")?;
        Ok(cp)
    }

    /// A client of the administrator.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        client_from(&self.kubeconfig).await
    }

    /// Runs `kubectl` as the administrator; its stdout, or an error with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_with_input(args, None)
    }

    /// Runs `kubectl` with `input` on its stdin.
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        run(
            Command::new(&self.kubectl)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            input,
        )
        .with_context(|| format!("kubectl {}", args.join(" ")))
    }

    /// Runs `helm` against the control plane.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        run(
            Command::new(&self.helm)
                .env("KUBECONFIG", &self.kubeconfig)
                .args(args),
            None,
        )
        .with_context(|| format!("helm {}", args.join(" ")))
    }

    /// A kubeconfig (written to `path`) that authenticates as ServiceAccount
    /// `namespace/name` with a token from the TokenRequest API, valid for `ttl`.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        ttl: Duration,
        path: &Path,
    ) -> Result<PathBuf> {
        let duration = format!("{}s", ttl.as_secs());
        let token = self.kubectl(&[
            "create",
            "token",
            name,
            "-n",
            namespace,
            "--duration",
            &duration,
        ])?;
        let server = self.kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])?;
        let ca = self.kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority}",
        ])?;
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {name}, namespace: {namespace}}}\ncurrent-context: e2e\n",
            token = token.trim()
        );
        std::fs::write(path, yaml)?;
        Ok(path.to_owned())
    }
}

impl ControlPlane {
    /// Installs the operator chart as release `release` into `namespace` unless it is
    /// installed already.
    pub fn ensure_chart(&self, namespace: &str, release: &str) -> Result<()> {
        if self.helm(&["status", release, "-n", namespace]).is_ok() {
            return Ok(());
        }
        let chart = repo_root().join("charts/faceid-operator");
        self.helm(&[
            "install",
            release,
            chart.to_str().context("chart path is not UTF-8")?,
            "-n",
            namespace,
            "--create-namespace",
        ])?;
        Ok(())
    }

    /// The operator container's arguments and plain environment from the Deployment of
    /// chart release `release`, as the API server stores it: field references resolved
    /// as the kubelet would (the pod name `faceid-operator-e2e-0`), the metrics address
    /// left out for [`OperatorProcess::start`] to choose.
    pub async fn chart_operator_command(
        &self,
        namespace: &str,
        release: &str,
    ) -> Result<(Vec<String>, BTreeMap<String, String>)> {
        use k8s_openapi::api::apps::v1::Deployment;
        let client = self.admin_client().await?;
        let deployment = kube::Api::<Deployment>::namespaced(client, namespace)
            .get(release)
            .await
            .context("the chart's operator Deployment")?;
        let container = deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().next())
            .context("operator Deployment has no container")?;
        let args: Vec<String> = container
            .args
            .unwrap_or_default()
            .into_iter()
            .skip_while(|a| a == "run")
            .filter(|a| !a.starts_with("--metrics-addr"))
            .collect();
        let mut env = BTreeMap::new();
        for var in container.env.unwrap_or_default() {
            let value = match (&var.value, &var.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => {
                    match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                        Some("metadata.name") => "faceid-operator-e2e-0".to_owned(),
                        Some("metadata.namespace") => namespace.to_owned(),
                        other => {
                            bail!(
                                "operator env {} from {other:?}: not resolvable here",
                                var.name
                            )
                        }
                    }
                }
                (None, None) => String::new(),
            };
            env.insert(var.name, value);
        }
        Ok((args, env))
    }
}

/// Deletes namespace `name` if it exists and waits until it is gone. The FaceIdTenants
/// in it lose their finalizers first: a namespace left by an earlier run has no operator
/// to run their cleanup.
pub async fn delete_namespace(client: &kube::Client, name: &str) -> Result<()> {
    use faceid_operator::crd::FaceIdTenant;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_none() {
        return Ok(());
    }
    let tenants: kube::Api<FaceIdTenant> = kube::Api::namespaced(client.clone(), name);
    for t in tenants.list(&ListParams::default()).await?.items {
        let tenant_name = kube::ResourceExt::name_any(&t);
        tenants
            .patch(
                &tenant_name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
            )
            .await?;
    }
    namespaces.delete(name, &DeleteParams::default()).await.ok();
    eventually(
        &format!("namespace {name} deleted"),
        Duration::from_secs(120),
        || async {
            Ok(match namespaces.get_opt(name).await? {
                None => Poll::Done(()),
                Some(ns) => Poll::Pending(format!("namespace {name}: {:?}", ns.status)),
            })
        },
    )
    .await
}

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn run(cmd: &mut Command, input: Option<&str>) -> Result<String> {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `faceid-operator` binary that `cargo test --workspace` built beside the tests.
pub fn operator_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target directory")?;
    let bin = profile_dir.join("faceid-operator");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (`cargo build -p faceid-operator`; `cargo test --workspace` does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A `faceid-operator run` process. It is killed when dropped, and a watchdog kills it
/// when the test process ends without dropping it (a static shared by tests).
#[derive(Debug)]
pub struct OperatorProcess {
    child: crate::Guarded,
    /// The operator's own process id (for SIGSTOP/SIGCONT).
    pub pid: u32,
    /// Base URL of its `/metrics`, `/healthz`, `/readyz` server.
    pub http_url: String,
    log: PathBuf,
}

impl OperatorProcess {
    /// Starts `faceid-operator run ARGS` with `KUBECONFIG=kubeconfig` and `env`, its
    /// HTTP server on a free loopback port, and waits until `/readyz` answers 200.
    pub async fn start(
        kubeconfig: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<OperatorProcess> {
        Self::start_binary(&operator_binary()?, kubeconfig, args, env, name).await
    }

    /// [`OperatorProcess::start`] with a given operator binary.
    pub async fn start_binary(
        binary: &Path,
        kubeconfig: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<OperatorProcess> {
        let port = crate::free_port()?;
        let log = std::env::temp_dir().join(format!(
            "faceid-e2e-operator-{name}-{}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = crate::spawn_guarded(binary, |cmd| {
            cmd.arg("run")
                .arg(format!("--metrics-addr=127.0.0.1:{port}"))
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env("RUST_LOG", "info")
                .envs(env)
                .stdout(out)
                .stderr(err)
                .stdin(Stdio::null());
        })
        .context("starting faceid-operator")?;
        let mut operator = OperatorProcess {
            pid: child.id(),
            child,
            http_url: format!("http://127.0.0.1:{port}"),
            log,
        };
        operator.wait_ready(Duration::from_secs(60)).await?;
        Ok(operator)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "faceid-operator exited with {status} before it was ready:\n{}",
                    self.log_tail(40)
                );
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.http_url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "faceid-operator not ready after {timeout:?}:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `signal` (e.g. "STOP", "CONT", "TERM") to the operator process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        self.child.signal(signal)
    }

    /// Whether the operator process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The last `n` lines the operator logged.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Everything the operator logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls `probe` every `interval` until it returns `Ok(Some(value))`, or fails after
/// `timeout` with `what` and the last thing the probe reported (`Ok(None)` keeps
/// polling; the probe's description of what it saw comes through `seen`).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Poll<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Poll::Done(v)) => return Ok(v),
            Ok(Poll::Pending(seen)) => seen,
            Err(e) => format!("error: {e:#}"),
        };
        if Instant::now() > deadline {
            bail!("{what}: not reached within {timeout:?}; the cluster showed: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One observation of [`eventually`]: done with a value, or pending with what was seen.
#[derive(Debug)]
pub enum Poll<T> {
    /// The awaited state, with what the caller needs of it.
    Done(T),
    /// Not yet: what the cluster showed instead.
    Pending(String),
}
