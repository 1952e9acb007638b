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
    /// Short names kubectl accepts (`cm`, `deploy`, `es`), as discovery lists them.
    pub(super) short_names: &'static [&'static str],
    /// Categories (`all`), as discovery lists them.
    pub(super) categories: &'static [&'static str],
    /// Served from a CustomResourceDefinition (deploy/crds.yaml): no strategic merge patch,
    /// no unconditional update, schema from the CRD.
    pub(super) custom: bool,
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
        short_names: &["ns"],
        categories: &[],
        custom: false,
    },
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        status: false,
        short_names: &[],
        categories: &[],
        custom: false,
    },
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        status: false,
        short_names: &["cm"],
        categories: &[],
        custom: false,
    },
    ResourceDef {
        group: "",
        versions: &["v1"],
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        status: false,
        short_names: &["ev"],
        categories: &[],
        custom: false,
    },
    ResourceDef {
        group: "apps",
        versions: &["v1"],
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        status: true,
        short_names: &["deploy"],
        categories: &["all"],
        custom: false,
    },
    ResourceDef {
        group: "apps",
        versions: &["v1"],
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        status: true,
        short_names: &["sts"],
        categories: &["all"],
        custom: false,
    },
    ResourceDef {
        group: "apps",
        versions: &["v1"],
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        status: true,
        short_names: &["ds"],
        categories: &["all"],
        custom: false,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        versions: &["v1"],
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        status: false,
        short_names: &[],
        categories: &[],
        custom: false,
    },
    ResourceDef {
        group: "events.k8s.io",
        versions: &["v1"],
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        status: false,
        short_names: &["ev"],
        categories: &[],
        custom: false,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "externalsecrets",
        singular: "externalsecret",
        kind: "ExternalSecret",
        namespaced: true,
        status: true,
        short_names: &["es"],
        categories: &["external-secrets"],
        custom: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "secretstores",
        singular: "secretstore",
        kind: "SecretStore",
        namespaced: true,
        status: true,
        short_names: &["ss"],
        categories: &["external-secrets"],
        custom: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "clustersecretstores",
        singular: "clustersecretstore",
        kind: "ClusterSecretStore",
        namespaced: false,
        status: true,
        short_names: &["css"],
        categories: &["external-secrets"],
        custom: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        plural: "clusterexternalsecrets",
        singular: "clusterexternalsecret",
        kind: "ClusterExternalSecret",
        namespaced: false,
        status: true,
        short_names: &["ces"],
        categories: &["external-secrets"],
        custom: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1alpha1"],
        plural: "pushsecrets",
        singular: "pushsecret",
        kind: "PushSecret",
        namespaced: true,
        status: true,
        short_names: &["ps"],
        categories: &["external-secrets"],
        custom: true,
    },
    ResourceDef {
        group: "external-secrets.io",
        versions: &["v1alpha1"],
        plural: "clusterpushsecrets",
        singular: "clusterpushsecret",
        kind: "ClusterPushSecret",
        namespaced: false,
        status: true,
        short_names: &["cps"],
        categories: &["external-secrets"],
        custom: true,
    },
    ResourceDef {
        group: "generators.external-secrets.io",
        versions: &["v1alpha1"],
        plural: "passwords",
        singular: "password",
        kind: "Password",
        namespaced: true,
        status: false,
        short_names: &[],
        categories: &["external-secrets", "external-secrets-generators"],
        custom: true,
    },
    ResourceDef {
        group: "generators.external-secrets.io",
        versions: &["v1alpha1"],
        plural: "uuids",
        singular: "uuid",
        kind: "UUID",
        namespaced: true,
        status: false,
        short_names: &[],
        categories: &["external-secrets", "external-secrets-generators"],
        custom: true,
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
    /// `Secret` or `Deployment.apps`, as the real server names kinds in `Invalid` messages.
    pub(super) fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
    /// `secrets` or `deployments.apps`.
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

/// How a list field merges, from the `x-kubernetes-list-type` / `patchMergeKey` markers of
/// the Kubernetes API types (k8s.io/api): server-side apply and strategic merge patch both
/// follow it. Custom resources' lists are atomic unless their schema says otherwise (the
/// ESO CRDs in deploy/ do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListType {
    /// Replaced as a whole (`x-kubernetes-list-type: atomic`, no patch strategy).
    Atomic,
    /// A set of scalars (`x-kubernetes-list-type: set`, `patchStrategy: merge`).
    Set,
    /// A map keyed by these fields (`x-kubernetes-list-type: map`); the first is the
    /// strategic merge patch's `patchMergeKey`.
    Map(&'static [&'static str]),
}

/// The list type of the field at `path` (field names only, list items skipped) of `kind`.
pub(super) fn list_type(kind: &str, path: &[&str]) -> ListType {
    use ListType::*;
    match path {
        // ObjectMeta: ownerReferences are keyed by uid, finalizers a set.
        ["metadata", "ownerReferences"] => return Map(&["uid"]),
        ["metadata", "finalizers"] => return Set,
        _ => {}
    }
    let workload = matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet");
    if workload {
        if let ["status", "conditions"] = path {
            return Map(&["type"]);
        }
        if let ["spec", "template", "spec", rest @ ..] = path {
            return pod_spec_list(rest);
        }
    }
    if kind == "Namespace"
        && let ["status", "conditions"] = path
    {
        return Map(&["type"]);
    }
    Atomic
}

/// Lists inside a PodSpec (k8s.io/api/core/v1 types.go markers).
fn pod_spec_list(path: &[&str]) -> ListType {
    use ListType::*;
    match path {
        ["containers" | "initContainers" | "ephemeralContainers"] => Map(&["name"]),
        ["volumes" | "imagePullSecrets"] => Map(&["name"]),
        ["containers" | "initContainers" | "ephemeralContainers", field] => match *field {
            "env" => Map(&["name"]),
            "ports" => Map(&["containerPort", "protocol"]),
            "volumeMounts" => Map(&["mountPath"]),
            "volumeDevices" => Map(&["devicePath"]),
            "resizePolicy" => Map(&["resourceName"]),
            _ => Atomic,
        },
        _ => Atomic,
    }
}
