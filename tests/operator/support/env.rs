//! Resolves a container's environment the way the kubelet does, from what the API
//! server stores: `envFrom` Secrets and ConfigMaps first, then `env` in order (a
//! later entry wins), `secretKeyRef`/`configMapKeyRef` read from the API, and the
//! downward-API `fieldRef`s `metadata.name` / `metadata.namespace` of the pod.
//!
//! Only what the tests need is supported; anything else panics instead of being
//! silently skipped (including `$(VAR)` expansion, which the operator never emits).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::{Api, Client};

async fn secret_value(client: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("read Secret")?;
    let bytes = secret.data?.remove(key)?;
    Some(String::from_utf8(bytes.0).expect("Secret value is UTF-8"))
}

async fn config_map_value(client: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("read ConfigMap")?
        .data?
        .remove(key)
}

/// The environment `container` would start with in pod `pod_name` of namespace `ns`.
///
/// # Panics
/// On a missing non-optional Secret/ConfigMap key (the kubelet would refuse to start
/// the container) and on any unsupported source.
pub async fn resolve_env(
    client: &Client,
    ns: &str,
    pod_name: &str,
    container: &Container,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.secret_ref {
            let secret = Api::<Secret>::namespaced(client.clone(), ns)
                .get(&r.name)
                .await
                .expect("envFrom Secret exists");
            for (k, v) in secret.data.unwrap_or_default() {
                env.insert(
                    format!("{prefix}{k}"),
                    String::from_utf8(v.0).expect("UTF-8"),
                );
            }
        }
        if let Some(r) = &source.config_map_ref {
            let map = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get(&r.name)
                .await
                .expect("envFrom ConfigMap exists");
            for (k, v) in map.data.unwrap_or_default() {
                env.insert(format!("{prefix}{k}"), v);
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            assert!(
                !value.contains("$("),
                "{}: $(VAR) expansion is not supported here",
                var.name
            );
            Some(value.clone())
        } else if let Some(from) = &var.value_from {
            if let Some(r) = &from.secret_key_ref {
                let v = secret_value(client, ns, &r.name, &r.key).await;
                assert!(
                    v.is_some() || r.optional == Some(true),
                    "{}: Secret {}/{} key {} missing: the kubelet would not start the container",
                    var.name,
                    ns,
                    r.name,
                    r.key
                );
                v
            } else if let Some(r) = &from.config_map_key_ref {
                let v = config_map_value(client, ns, &r.name, &r.key).await;
                assert!(
                    v.is_some() || r.optional == Some(true),
                    "{}: ConfigMap key missing",
                    var.name
                );
                v
            } else if let Some(f) = &from.field_ref {
                match f.field_path.as_str() {
                    "metadata.name" => Some(pod_name.to_owned()),
                    "metadata.namespace" => Some(ns.to_owned()),
                    other => panic!("{}: fieldRef {other} is not supported here", var.name),
                }
            } else {
                panic!("{}: unsupported valueFrom {from:?}", var.name)
            }
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    env
}
