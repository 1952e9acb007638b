//! ESO's own template functions against known answers computed independently with openssl
//! and Python's `cryptography` from the fixed keys and certificates in
//! `tests/fixtures/template-crypto` (`gen.sh` made them once).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use secretsync_core::SecretValue;
use secretsync_core::template::{Template, TemplateContext};
use secretsync_core::testkit::{CANARY, assert_no_canary};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/template-crypto")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn render(src: &str, data: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let ctx: TemplateContext = data
        .iter()
        .map(|(k, v)| (k.to_string(), SecretValue::new(v.clone())))
        .collect();
    Template::parse(src)?.render(&ctx).map(|v| v.expose().to_vec())
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).expect("UTF-8")
}

#[test]
fn pkcs12_key_and_chain_match_openssl() {
    let key = text(read("expected-pkcs12key.pem"));
    let chain = text(read("expected-pkcs12cert.pem"));
    let b64 = base64::engine::general_purpose::STANDARD;
    // As ESO users write it: the archive base64 in the store, decoded in the template.
    let data = [
        ("nopass", b64.encode(read("leaf-nopass.p12")).into_bytes()),
        ("pass", read("leaf-pass.p12")),
        ("legacy", read("leaf-legacy.p12")),
    ];
    assert_eq!(text(render("{{ .nopass | b64dec | pkcs12key }}", &data).unwrap()), key);
    assert_eq!(
        text(render("{{ .nopass | b64dec | pkcs12cert }}", &data).unwrap()),
        chain
    );
    assert_eq!(
        text(render(r#"{{ .pass | pkcs12keyPass "s3cret" }}"#, &data).unwrap()),
        key
    );
    assert_eq!(
        text(render(r#"{{ .pass | pkcs12certPass "s3cret" }}"#, &data).unwrap()),
        chain
    );
    assert_eq!(
        text(render(r#"{{ .legacy | pkcs12keyPass "legacy" }}"#, &data).unwrap()),
        key
    );
    // A wrong password is an error that names neither the password nor the data.
    let e = render(&format!(r#"{{{{ .pass | pkcs12keyPass "{CANARY}" }}}}"#), &data).unwrap_err();
    assert!(e.contains("pkcs12keyPass"), "{e}");
    assert_no_canary(&e, "the error");
}

#[test]
fn pem_to_pkcs12_round_trips_through_openssl() {
    let data = [
        ("crt", read("leaf.crt")),
        ("key", read("leaf.key")),
        (
            "chain",
            [read("leaf.crt"), read("inter.crt"), read("root.crt")].concat(),
        ),
    ];
    for (tpl, pass, certs) in [
        ("{{ pemToPkcs12 .crt .key }}", "", 1),
        (r#"{{ pemToPkcs12Pass .crt .key "pw" }}"#, "pw", 1),
        ("{{ fullPemToPkcs12 .chain .key }}", "", 3),
        (r#"{{ fullPemToPkcs12Pass .chain .key "pw" }}"#, "pw", 3),
    ] {
        let b64 = render(tpl, &data).unwrap();
        let der = base64::engine::general_purpose::STANDARD.decode(&b64).expect("base64");
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), der).unwrap();
        let out = Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(tmp.path())
            .args(["-passin", &format!("pass:{pass}"), "-nodes"])
            .output()
            .expect("openssl is needed to check PKCS#12 output");
        assert!(
            out.status.success(),
            "{tpl}: openssl reads it: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = String::from_utf8_lossy(&out.stdout);
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), certs, "{tpl}");
        assert!(pem.contains("BEGIN PRIVATE KEY"), "{tpl}");
        // The key openssl reads back is ours.
        let key_back = render(
            "{{ .p | filterPEM \"PRIVATE KEY\" }}",
            &[("p", pem.as_bytes().to_vec())],
        )
        .unwrap();
        assert_eq!(text(key_back), text(read("expected-pkcs12key.pem")), "{tpl}");
    }
}

#[test]
fn jwk_to_pem_matches_python_cryptography() {
    for (jwk, func, want) in [
        ("rsa-public.jwk", "jwkPublicKeyPem", "expected-rsa-public.pem"),
        ("rsa-private.jwk", "jwkPrivateKeyPem", "expected-rsa-private.pem"),
        ("ec-public.jwk", "jwkPublicKeyPem", "expected-ec-public.pem"),
        ("ec-private.jwk", "jwkPrivateKeyPem", "expected-ec-private.pem"),
    ] {
        let got = render(&format!("{{{{ .jwk | {func} }}}}"), &[("jwk", read(jwk))]).unwrap();
        assert_eq!(text(got), text(read(want)), "{func} of {jwk}");
    }
    let e = render("{{ .jwk | jwkPrivateKeyPem }}", &[("jwk", read("rsa-public.jwk"))]).unwrap_err();
    assert!(e.contains("jwkPrivateKeyPem") && e.contains("`d`"), "{e}");
    let e = render("{{ .jwk | jwkPublicKeyPem }}", &[("jwk", CANARY.as_bytes().to_vec())]).unwrap_err();
    assert_no_canary(&e, "the error");
}

#[test]
fn cert_chains_and_sans() {
    let data = [
        ("chain", read("chain-unordered.pem")),
        ("leaf", read("leaf.crt")),
        ("bundle", read("bundle.pem")),
    ];
    assert_eq!(
        text(render(r#"{{ .chain | filterCertChain "leaf" }}"#, &data).unwrap()),
        text(read("leaf.crt"))
    );
    assert_eq!(
        text(render(r#"{{ .chain | filterCertChain "intermediate" }}"#, &data).unwrap()),
        text(read("inter.crt"))
    );
    assert_eq!(
        text(render(r#"{{ .chain | filterCertChain "root" }}"#, &data).unwrap()),
        text(read("root.crt"))
    );
    assert_eq!(
        text(render(r#"{{ .leaf | certSANs | join "," }}"#, &data).unwrap()),
        "app.example.com,www.example.com,10.0.0.1,2001:db8::1,ops@example.com,spiffe://example.com/app"
    );
    assert_eq!(
        text(render(r#"{{ .bundle | filterPEM "CERTIFICATE" }}"#, &data).unwrap()),
        text(read("leaf.crt"))
    );
    let e = render("{{ .x | certSANs }}", &[("x", CANARY.as_bytes().to_vec())]).unwrap_err();
    assert_no_canary(&e, "the error");
}

#[test]
fn bcrypt_and_htpasswd_verify() {
    let out = text(
        render(
            "{{ htpasswd .user .pass }}",
            &[("user", b"alice".to_vec()), ("pass", b"pw1".to_vec())],
        )
        .unwrap(),
    );
    let (user, hash) = out.split_once(':').unwrap();
    assert_eq!(user, "alice");
    assert!(hash.starts_with("$2a$10$"), "Go's bcrypt prefix and default cost");
    assert!(bcrypt::verify("pw1", hash).unwrap());
    assert!(!bcrypt::verify("pw2", hash).unwrap());
    let h = text(render("{{ bcrypt .p }}", &[("p", b"x".to_vec())]).unwrap());
    assert!(bcrypt::verify("x", &h).unwrap());
}
