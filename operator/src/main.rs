//! `gregor-operator`: watches KafkaCluster resources (and their StatefulSets, ConfigMaps,
//! Services, ServiceAccounts and pods) and KafkaTopic resources, and reconciles them, as the
//! leader of its replicas. It serves its metrics on `--metrics-addr`, and on SIGTERM it
//! finishes the reconciles under way and hands its lease back.
//!
//! `gregor-operator rack` is the `rack` init container of broker pods instead: it writes its
//! node's rack label to a file and exits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{ArgAction, Parser};
use futures::{FutureExt, StreamExt};
use gregor_operator::crd::{KafkaCluster, KafkaTopic, KafkaUser};
use gregor_operator::leader::Election;
use gregor_operator::metrics::Metrics;
use gregor_operator::reconcile::{self, Context, ReconcileError};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// The image a new KafkaCluster runs when it names none: this operator's own version.
const DEFAULT_IMAGE: &str = concat!("gregor:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Parser)]
#[command(
    name = "gregor-operator",
    version,
    about = "Kubernetes operator for Gregor clusters"
)]
struct Args {
    /// A namespace to watch (repeat for several); every namespace when none is given.
    #[arg(long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Address of the `/metrics` and `/healthz` endpoint.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// Elect a leader among the operator's replicas through a Lease.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "gregor-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own; `default` when not given).
    #[arg(long, default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (its pod name); the host name when not given.
    #[arg(long)]
    identity: Option<String>,
    /// The image a new KafkaCluster runs when it names none. A cluster records the image it
    /// first ran in status.image and keeps it, so changing this (or upgrading the operator)
    /// restarts no broker; spec.image moves a cluster to another image.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    default_image: String,
    /// Reach the brokers of KafkaCluster NS/NAME at HOST:PORT[,HOST:PORT...] instead of its
    /// bootstrap Service (out-of-cluster runs and tests). Repeatable.
    #[arg(long = "bootstrap-override", value_name = "NS/NAME=HOSTS", value_parser = parse_override)]
    bootstrap_overrides: Vec<(String, String)>,
    /// The ClusterRole (nodes get) that broker pods of clusters with spec.rack are bound to,
    /// so their `rack` init container can read their node; the Helm chart installs it.
    #[arg(long, default_value = "gregor-broker-rack")]
    rack_cluster_role: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Writes the value of a label of a node to a file (the `rack` init container of broker
    /// pods; in-cluster config or KUBECONFIG). Fails, naming both, when the node lacks it.
    Rack {
        /// The node (the pod's spec.nodeName).
        #[arg(long)]
        node: String,
        /// The label (spec.rack.topologyKey).
        #[arg(long)]
        label: String,
        /// The file to write.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// Writes `node`'s `label` to `out` (see [`Command::Rack`]).
async fn rack(node: &str, label: &str, out: &std::path::Path) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let value = gregor_operator::rack::read(&client, node, label).await?;
    gregor_operator::rack::write(out, &value)?;
    tracing::info!(%node, %label, rack = %value, path = %out.display(), "rack written");
    Ok(())
}

fn parse_override(s: &str) -> Result<(String, String), String> {
    let (cluster, hosts) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NS/NAME=HOST:PORT"))?;
    if cluster.split('/').count() != 2 || hosts.is_empty() {
        return Err(format!("{s:?}: expected NS/NAME=HOST:PORT"));
    }
    Ok((cluster.to_string(), hosts.to_string()))
}

/// The controller's context: the reconcile context (which holds the metrics) plus per-object
/// backoff.
struct Shared {
    ctx: Arc<Context>,
    /// Consecutive failures per object, for exponential backoff; cleared by a success.
    failures: Mutex<HashMap<String, u32>>,
}

fn key<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default()
    )
}

/// Runs one reconcile of `object` in a span, counting it in the metrics and clearing its
/// backoff when it succeeds.
async fn instrumented<K, F>(object: &K, shared: &Shared, work: F) -> Result<Action, ReconcileError>
where
    K: kube::Resource<DynamicType = ()>,
    F: std::future::Future<Output = Result<Action, ReconcileError>>,
{
    let started = Instant::now();
    let k = key(object);
    let kind = K::kind(&());
    let span = tracing::info_span!("reconcile", %kind, object = %k);
    let result = tracing::Instrument::instrument(work, span).await;
    let failure = result.as_ref().err().map(ReconcileError::category);
    shared
        .ctx
        .metrics
        .reconciled(&kind, started.elapsed(), failure);
    if result.is_ok() {
        shared.failures.lock().remove(&k);
    }
    result
}

async fn reconcile_cluster(
    kc: Arc<KafkaCluster>,
    shared: Arc<Shared>,
) -> Result<Action, ReconcileError> {
    let work = reconcile::cluster::reconcile(Arc::clone(&kc), Arc::clone(&shared.ctx));
    instrumented(kc.as_ref(), &shared, work).await
}

async fn reconcile_topic(
    kt: Arc<KafkaTopic>,
    shared: Arc<Shared>,
) -> Result<Action, ReconcileError> {
    let work = reconcile::topic::reconcile(Arc::clone(&kt), Arc::clone(&shared.ctx));
    instrumented(kt.as_ref(), &shared, work).await
}

async fn reconcile_user(ku: Arc<KafkaUser>, shared: Arc<Shared>) -> Result<Action, ReconcileError> {
    let work = reconcile::user::reconcile(Arc::clone(&ku), Arc::clone(&shared.ctx));
    instrumented(ku.as_ref(), &shared, work).await
}

/// Requeues a failed object after 2 s, doubling with each consecutive failure up to 5 min.
fn backoff<K: kube::Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &ReconcileError,
    shared: Arc<Shared>,
) -> Action {
    let k = key(object.as_ref());
    let n = {
        let mut failures = shared.failures.lock();
        let n = failures.entry(k.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let delay = Duration::from_secs(1u64 << n.min(8)).min(Duration::from_secs(300));
    tracing::warn!(object = %k, error = %error, failures = n, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// What a controller yields for each reconcile it ran, or could not run.
type Reconciled<K> =
    Result<(ObjectRef<K>, Action), controller::Error<ReconcileError, watcher::Error>>;

/// Calls `forget` with the namespace and name of an object a scheduled reconcile (or a
/// child's event) found deleted: such an object is not reconciled, so its metrics go here.
fn forget_deleted<K: kube::Resource>(result: &Reconciled<K>, forget: impl FnOnce(&str, &str)) {
    if let Err(controller::Error::ObjectNotFound(gone)) = result {
        forget(gone.namespace.as_deref().unwrap_or_default(), &gone.name);
    }
}

fn api<K>(client: &kube::Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch mapper: a KafkaCluster to the objects of `store` (in its namespace) whose
/// `cluster_of` names it.
fn naming_their_cluster<K>(
    store: kube::runtime::reflector::Store<K>,
    cluster_of: fn(&K) -> &String,
) -> impl Fn(KafkaCluster) -> Vec<ObjectRef<K>> + Send + Sync + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    move |kc: KafkaCluster| {
        let ns = kc.namespace();
        let name = kc.name_any();
        store
            .state()
            .into_iter()
            .filter(|o| o.namespace() == ns && *cluster_of(o) == name)
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect()
    }
}

/// Runs the KafkaTopic controller over `namespace` (every namespace when `None`) until
/// `shutdown`. A change to a KafkaCluster wakes the topics that name it.
async fn run_topics(
    client: kube::Client,
    namespace: Option<String>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        api::<KafkaTopic>(&client, &namespace),
        watcher::Config::default(),
    );
    let topics = naming_their_cluster(controller.store(), |t: &KafkaTopic| &t.spec.cluster);
    controller
        .watches(
            api::<KafkaCluster>(&client, &namespace),
            watcher::Config::default(),
            topics,
        )
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile_topic, backoff, Arc::clone(&shared))
        .for_each(|result| {
            // Its finalizer's cleanup forgets a deleted topic; this catches one deleted
            // without it.
            forget_deleted(&result, |namespace, name| {
                let metrics = &shared.ctx.metrics;
                metrics.resource_gone(&KafkaTopic::kind(&()), namespace, name);
            });
            futures::future::ready(())
        })
        .await;
}

/// Runs the KafkaUser controller over `namespace` (every namespace when `None`) until
/// `shutdown`. A change to a KafkaCluster (its CAs renewed, say) wakes the users that name it;
/// a change to a user's Secret (a password edited) wakes the user.
async fn run_users(
    client: kube::Client,
    namespace: Option<String>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let controller = Controller::new(
        api::<KafkaUser>(&client, &namespace),
        watcher::Config::default(),
    );
    let users = naming_their_cluster(controller.store(), |u: &KafkaUser| &u.spec.cluster);
    controller
        .owns(
            api::<Secret>(&client, &namespace),
            watcher::Config::default().labels("gregor.dev/kafka-user"),
        )
        .watches(
            api::<KafkaCluster>(&client, &namespace),
            watcher::Config::default(),
            users,
        )
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile_user, backoff, Arc::clone(&shared))
        .for_each(|result| {
            // Its finalizer's cleanup forgets a deleted user; this catches one deleted
            // without it.
            forget_deleted(&result, |namespace, name| {
                let metrics = &shared.ctx.metrics;
                metrics.resource_gone(&KafkaUser::kind(&()), namespace, name);
            });
            futures::future::ready(())
        })
        .await;
}

/// Runs the KafkaCluster controller over `namespace` (every namespace when `None`) until
/// `shutdown`.
async fn run_clusters(
    client: kube::Client,
    namespace: Option<String>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let owned = watcher::Config::default().labels("app.kubernetes.io/name=gregor");
    Controller::new(
        api::<KafkaCluster>(&client, &namespace),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, &namespace), owned.clone())
    .owns(api::<ConfigMap>(&client, &namespace), owned.clone())
    .owns(api::<Service>(&client, &namespace), owned.clone())
    .owns(api::<ServiceAccount>(&client, &namespace), owned.clone())
    // The certificate Secrets: a force-renew annotation (or a deleted Secret) acts at once.
    .owns(api::<Secret>(&client, &namespace), owned.clone())
    // Pods are owned by the StatefulSets, not the cluster: map them by their labels, so a
    // pod turning ready (or failing) wakes its cluster.
    .watches(api::<Pod>(&client, &namespace), owned, |pod: Pod| {
        let ns = pod.namespace();
        pod.labels()
            .get("app.kubernetes.io/instance")
            .cloned()
            .zip(ns)
            .map(|(name, ns)| ObjectRef::<KafkaCluster>::new(&name).within(&ns))
    })
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile_cluster, backoff, Arc::clone(&shared))
    .for_each(|result| {
        // A deleted cluster is not reconciled; its next scheduled reconcile (or a child's
        // deletion) finds it gone, and its metrics go with it.
        forget_deleted(&result, |namespace, name| {
            shared.ctx.metrics.cluster_gone(namespace, name);
        });
        futures::future::ready(())
    })
    .await;
}

fn identity(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "gregor-operator".into());
        format!("{host}-{}", std::process::id())
    })
}

async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let args = Args::parse();
    if let Some(Command::Rack { node, label, out }) = &args.command {
        // Its failure is reported in the pod's status (see `gregor_client::termination`).
        let result = rack(node, label, out).await;
        if let Err(e) = &result {
            gregor_client::termination::record(&format!("error: {e:#}"));
        }
        return result;
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new()?);
    let shutdown = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let listener = tokio::net::TcpListener::bind(&args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    tracing::info!(addr = %args.metrics_addr, "metrics endpoint");
    tasks.spawn(gregor_operator::metrics::serve(
        listener,
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            terminated().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
    }

    let election = args.leader_election.then(|| {
        Election::new(
            Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
            &args.lease_name,
            &identity(args.identity.clone()),
            Duration::from_secs(15),
        )
    });
    if let Some(e) = &election {
        tokio::select! {
            r = e.acquire() => r.context("leader election")?,
            _ = shutdown.cancelled() => {
                tasks.close();
                tasks.wait().await;
                return Ok(());
            }
        }
        metrics.leading.set(1);
    }

    let shared = Arc::new(Shared {
        ctx: Arc::new(Context {
            client: client.clone(),
            default_image: args.default_image.clone(),
            bootstrap_overrides: args
                .bootstrap_overrides
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            rack_cluster_role: args.rack_cluster_role.clone(),
            clock: gregor_operator::reconcile::Clock::system(),
            metrics: Arc::clone(&metrics),
        }),
        failures: Mutex::default(),
    });
    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = futures::future::join_all(scopes.into_iter().flat_map(|ns| {
        let clusters = run_clusters(
            client.clone(),
            ns.clone(),
            Arc::clone(&shared),
            shutdown.clone(),
        );
        let topics = run_topics(
            client.clone(),
            ns.clone(),
            Arc::clone(&shared),
            shutdown.clone(),
        );
        let users = run_users(client.clone(), ns, Arc::clone(&shared), shutdown.clone());
        [clusters.boxed(), topics.boxed(), users.boxed()]
    }));
    let mut lost = false;
    match &election {
        Some(e) => {
            tokio::select! {
                _ = controllers => {}
                _ = e.keep() => {
                    lost = true;
                    shutdown.cancel();
                }
            }
        }
        None => drop(controllers.await),
    }
    shutdown.cancel();
    if let (Some(e), false) = (&election, lost) {
        if let Err(err) = e.release().await {
            tracing::warn!(error = %err, "handing the lease back failed");
        }
    }
    tasks.close();
    tasks.wait().await;
    if lost {
        anyhow::bail!("lost the leader lease");
    }
    Ok(())
}
