//! Where the replicas are and how to ask them: metrics base URLs given on the command
//! line (systemd hosts), or a `BotFleet`'s pods reached through the API server's pod
//! proxy (works from outside the cluster, with the caller's kubeconfig).

use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use url::Url;

use crate::operator::BotFleet;
use crate::operator::build::{METRICS_PORT, selector_string};

/// Largest body read from a replica: a worker's `/metrics` is about 20 KB.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A replica could not be listed or asked.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no Kubernetes client: {0}")]
    KubeConfig(#[source] kube::Error),
    #[error("BotFleet {namespace}/{name} not found")]
    FleetNotFound { namespace: String, name: String },
    #[error("reading BotFleet {namespace}/{name}: {source}")]
    Fleet {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the pods of BotFleet {namespace}/{name}: {source}")]
    Pods {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{url} is not a usable base URL (http or https with a host)")]
    BadUrl { url: String },
}

/// How one replica is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// A metrics base URL; paths are appended to it.
    Http(Url),
    /// A pod's port through `GET /api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH`.
    PodProxy {
        namespace: String,
        pod: String,
        port: i32,
    },
}

/// One replica to verify.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// The URL, or the pod name.
    pub name: String,
    pub endpoint: Endpoint,
    /// Set when the replica is known to be unable to answer (a pod not Running and
    /// Ready), with the reason.
    pub unavailable: Option<String>,
}

/// Checks and normalises `--replica` values.
///
/// # Errors
/// [`SourceError::BadUrl`] for anything but an http(s) URL with a host.
pub fn replicas_from_urls(urls: &[String]) -> Result<Vec<Replica>, SourceError> {
    urls.iter()
        .map(|raw| {
            let url = Url::parse(raw).map_err(|_| SourceError::BadUrl { url: raw.clone() })?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(SourceError::BadUrl { url: raw.clone() });
            }
            Ok(Replica {
                name: raw.trim_end_matches('/').to_owned(),
                endpoint: Endpoint::Http(url),
                unavailable: None,
            })
        })
        .collect()
}

/// The pods of `BotFleet` `name` in `namespace` (the client's default namespace when
/// `None`), each reached on its `metrics` container port.
///
/// # Errors
/// The fleet does not exist, or the API server refused a read.
pub async fn replicas_of_fleet(
    client: &kube::Client,
    name: &str,
    namespace: Option<&str>,
) -> Result<Vec<Replica>, SourceError> {
    let namespace = namespace.unwrap_or(client.default_namespace()).to_owned();
    let fleets: Api<BotFleet> = Api::namespaced(client.clone(), &namespace);
    match fleets.get_opt(name).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(SourceError::FleetNotFound {
                namespace,
                name: name.to_owned(),
            });
        }
        Err(source) => {
            return Err(SourceError::Fleet {
                namespace,
                name: name.to_owned(),
                source,
            });
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector_string(name)))
        .await
        .map_err(|source| SourceError::Pods {
            namespace: namespace.clone(),
            name: name.to_owned(),
            source,
        })?;
    let mut replicas: Vec<Replica> = list
        .items
        .iter()
        .map(|pod| pod_replica(pod, &namespace))
        .collect();
    replicas.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(replicas)
}

/// A pod as a replica: its `metrics` port (the operator's [`METRICS_PORT`] when the
/// pod names none), and why it cannot answer when it is not Running and Ready.
pub fn pod_replica(pod: &Pod, namespace: &str) -> Replica {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let port = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("metrics"))
        .map_or(METRICS_PORT, |p| p.container_port);
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let unavailable = if pod.metadata.deletion_timestamp.is_some() {
        Some("pod is terminating".to_owned())
    } else if phase != "Running" {
        Some(format!("pod is {phase}, not Running"))
    } else if !ready {
        Some("pod is Running but not Ready".to_owned())
    } else {
        None
    };
    Replica {
        endpoint: Endpoint::PodProxy {
            namespace: namespace.to_owned(),
            pod: name.clone(),
            port,
        },
        name,
        unavailable,
    }
}

/// Asks replicas over plain HTTP or through the API server.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    kube: Option<kube::Client>,
    timeout: Duration,
}

impl Fetcher {
    /// A fetcher whose every request gives up after `timeout`; `kube` is needed for
    /// [`Endpoint::PodProxy`] replicas.
    pub fn new(kube: Option<kube::Client>, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            kube,
            timeout,
        }
    }

    /// `GET path` on the replica: the HTTP status and the body (UTF-8, lossy), or why
    /// no answer came.
    pub async fn get(&self, endpoint: &Endpoint, path: &str) -> Result<(u16, String), String> {
        match endpoint {
            Endpoint::Http(base) => {
                let url = format!("{}{path}", base.as_str().trim_end_matches('/'));
                let resp = self.http.get(&url).send().await.map_err(describe_reqwest)?;
                let status = resp.status().as_u16();
                let body = resp.bytes().await.map_err(describe_reqwest)?;
                Ok((status, lossy(&body)))
            }
            Endpoint::PodProxy {
                namespace,
                pod,
                port,
            } => {
                let Some(client) = &self.kube else {
                    return Err("no Kubernetes client".to_owned());
                };
                let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}");
                let request = http::Request::get(uri)
                    .body(kube::client::Body::from(Vec::new()))
                    .map_err(|e| e.to_string())?;
                let answer = async {
                    let resp = client.send(request).await.map_err(|e| e.to_string())?;
                    let status = resp.status().as_u16();
                    let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY_BYTES)
                        .collect()
                        .await
                        .map_err(|e| format!("reading the answer: {e}"))?
                        .to_bytes();
                    Ok::<_, String>((status, lossy(&body)))
                };
                tokio::time::timeout(self.timeout, answer)
                    .await
                    .map_err(|_| format!("no answer within {} s", self.timeout.as_secs()))?
            }
        }
    }
}

fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(MAX_BODY_BYTES)]).into_owned()
}

/// reqwest's Display names the URL and the kind; its source says why (refused, timed out).
fn describe_reqwest(err: reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus};

    fn pod(phase: &str, ready: bool, ports: Vec<ContainerPort>) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("bots-worker-abc".to_owned()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "worker".to_owned(),
                    ports: Some(ports),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.to_owned()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: if ready { "True" } else { "False" }.to_owned(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn port(name: &str, number: i32) -> ContainerPort {
        ContainerPort {
            name: Some(name.to_owned()),
            container_port: number,
            ..Default::default()
        }
    }

    #[test]
    fn a_ready_pod_is_reached_on_its_metrics_port() {
        let r = pod_replica(
            &pod(
                "Running",
                true,
                vec![port("http", 8080), port("metrics", 9191)],
            ),
            "bots",
        );
        assert_eq!(r.unavailable, None);
        assert_eq!(
            r.endpoint,
            Endpoint::PodProxy {
                namespace: "bots".to_owned(),
                pod: "bots-worker-abc".to_owned(),
                port: 9191
            }
        );
        let r = pod_replica(&pod("Running", true, vec![]), "bots");
        assert!(matches!(
            r.endpoint,
            Endpoint::PodProxy {
                port: METRICS_PORT,
                ..
            }
        ));
    }

    #[test]
    fn pending_or_unready_pods_are_named_unavailable() {
        let r = pod_replica(&pod("Pending", false, vec![]), "bots");
        assert_eq!(
            r.unavailable.as_deref(),
            Some("pod is Pending, not Running")
        );
        let r = pod_replica(&pod("Running", false, vec![]), "bots");
        assert_eq!(
            r.unavailable.as_deref(),
            Some("pod is Running but not Ready")
        );
    }

    #[test]
    fn replica_urls_must_be_http() {
        assert!(replicas_from_urls(&["http://10.0.0.5:9090/".to_owned()]).is_ok());
        for bad in ["10.0.0.5:9090", "ftp://x/", "not a url"] {
            assert!(
                matches!(
                    replicas_from_urls(&[bad.to_owned()]),
                    Err(SourceError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
