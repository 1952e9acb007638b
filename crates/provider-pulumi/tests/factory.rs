//! The `pulumi` plug-in through a registry: ESO's `spec.provider.pulumi` validated offline,
//! every problem named by file, document and field.

use std::sync::Arc;

use secretsync_core::manifest::load_str;
use secretsync_core::registry::Registry;
use secretsync_pulumi::PulumiFactory;

fn problems(provider: &str) -> Vec<String> {
    let text = format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: esc}}\nspec:\n  provider:\n    pulumi:\n{provider}"
    );
    let m = load_str(&text, "store.yaml").into_result().unwrap();
    let mut r = Registry::with_builtin();
    r.register(Arc::new(PulumiFactory));
    r.validate(&m.stores[0]).iter().map(ToString::to_string).collect()
}

#[test]
fn eso_settings_are_validated_offline_with_every_problem_named() {
    let ok = "      organization: aphiria\n      project: aphiria.com\n      environment: Preview\n      auth: {accessToken: {secretRef: {name: t, key: token, namespace: es}}}\n";
    assert!(problems(ok).is_empty(), "{:?}", problems(ok));
    let deprecated = "      organization: aphiria\n      project: aphiria.com\n      environment: Preview\n      accessToken: {secretRef: {name: t, key: token}}\n";
    assert!(problems(deprecated).is_empty());

    assert_eq!(
        problems("      organization: aphiria\n      project: p\n      environment: e\n      acessToken: {}\n"),
        [
            "store.yaml: document 1 (ClusterSecretStore esc): spec.provider.pulumi.acessToken: unknown field `acessToken`, expected one of `organization`, `project`, `environment`, `apiUrl`, `auth`, `accessToken`"
        ]
    );
    let got = problems(
        "      organization: aphiria\n      project: p\n      environment: e\n      apiUrl: http://esc.example.com/api/esc\n      auth: {oidcConfig: {organization: aphiria}}\n",
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].contains("spec.provider.pulumi.apiUrl") && got[0].contains("plain http"),
        "{got:?}"
    );
    assert_eq!(
        got[1],
        "store.yaml: document 1 (ClusterSecretStore esc): spec.provider.pulumi.auth.oidcConfig: not supported yet: spec.provider.pulumi.auth.oidcConfig (OIDC authentication; use auth.accessToken.secretRef, or PULUMI_ACCESS_TOKEN out of a cluster)"
    );
    let missing = problems("      project: p\n      environment: e\n");
    assert!(
        missing.iter().any(|e| e.contains("spec.provider.pulumi.organization")),
        "{missing:?}"
    );
}
