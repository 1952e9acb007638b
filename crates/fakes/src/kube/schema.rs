//! What the fake serves: the resource table, and the constants the API server uses.

/// Largest total size of a Secret's or ConfigMap's data, as the real API server enforces.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// A request header naming the client that sent it, recorded in [`RequestRecord::client`](super::RequestRecord::client)
/// (tests with several clients, e.g. controller replicas, tell their requests apart).
pub const CLIENT_HEADER: &str = "x-fake-client";

/// The label the API server puts on every Namespace, set to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Debug)]
pub(super) struct ResourceDef {
    pub(super) group: &'static str,
    pub(super) versions: &'static [&'static str],
    pub(super) plural: &'static str,
    pub(super) singular: &'static str,
    pub(super) kind: &'static str,
    pub(super) namespaced: bool,
    pub(super) status: bool,
}

pub(super) const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        status: true,
    },
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "apps",
        versions: &["v1"],
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "apps",
        versions: &["v1"],
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "apps",
        versions: &["v1"],
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        versions: &["v1"],
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "events.k8s.io",
        versions: &["v1"],
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        status: false,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "externalsecrets",
        singular: "externalsecret",
        kind: "ExternalSecret",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "secretstores",
        singular: "secretstore",
        kind: "SecretStore",
        namespaced: true,
        status: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "clustersecretstores",
        singular: "clustersecretstore",
        kind: "ClusterSecretStore",
        namespaced: false,
        status: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "clusterexternalsecrets",
        singular: "clusterexternalsecret",
        kind: "ClusterExternalSecret",
        namespaced: false,
        status: true,
    },
];

impl ResourceDef {
    pub(super) fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }
    /// `secrets` or `deployments.apps`, as the real server names resources in messages.
    pub(super) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

pub(super) fn find_resource(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.plural == plural && r.versions.contains(&version))
}
