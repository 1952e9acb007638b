//! ESO's own template functions: PEM filtering, certificate chains and SANs, PKCS#12
//! (p12-keystore), JWK to PEM, and YAML.
//!
//! X.509 parsing uses x509-parser; PKCS#12 reading and writing p12-keystore. JWKs are JSON
//! (serde) whose key parts are written as PKCS#8 / SPKI DER here: a handful of DER
//! structures, where a crate would pull in a whole RSA/EC stack to serialize the same bytes.
//! Errors say what was wrong with the input (not PEM, wrong password, unsupported key type),
//! never what it held.

use base64::Engine as _;
use x509_parser::prelude::*;

use super::super::value::Value;
use super::{Param::*, Table, bytes, text};

pub(super) fn register(t: &mut Table) {
    t.add("filterPEM", &[Str, Str], |_, a| {
        Ok(Value::str(filter_pem(&text(&a[0]), bytes(&a[1]))?))
    });
    t.add("filterCertChain", &[Str, Str], |_, a| {
        Ok(Value::str(filter_cert_chain(&text(&a[0]), bytes(&a[1]))?))
    });
    t.add("certSANs", &[Str], |_, a| {
        Ok(Value::list(
            cert_sans(bytes(&a[0]))?.into_iter().map(Value::str).collect(),
        ))
    });
    t.add("pkcs12key", &[Str], |_, a| {
        Ok(Value::str(pkcs12_key(bytes(&a[0]), "")?))
    });
    t.add("pkcs12keyPass", &[Str, Str], |_, a| {
        Ok(Value::str(pkcs12_key(bytes(&a[1]), &text(&a[0]))?))
    });
    t.add("pkcs12cert", &[Str], |_, a| {
        Ok(Value::str(pkcs12_cert(bytes(&a[0]), "")?))
    });
    t.add("pkcs12certPass", &[Str, Str], |_, a| {
        Ok(Value::str(pkcs12_cert(bytes(&a[1]), &text(&a[0]))?))
    });
    t.add("pemToPkcs12", &[Str, Str], |_, a| {
        Ok(Value::str(pem_to_pkcs12(bytes(&a[0]), bytes(&a[1]), "", false)?))
    });
    t.add("pemToPkcs12Pass", &[Str, Str, Str], |_, a| {
        Ok(Value::str(pem_to_pkcs12(
            bytes(&a[0]),
            bytes(&a[1]),
            &text(&a[2]),
            false,
        )?))
    });
    t.add("fullPemToPkcs12", &[Str, Str], |_, a| {
        Ok(Value::str(pem_to_pkcs12(bytes(&a[0]), bytes(&a[1]), "", true)?))
    });
    t.add("fullPemToPkcs12Pass", &[Str, Str, Str], |_, a| {
        Ok(Value::str(pem_to_pkcs12(
            bytes(&a[0]),
            bytes(&a[1]),
            &text(&a[2]),
            true,
        )?))
    });
    t.add("jwkPublicKeyPem", &[Str], |_, a| {
        Ok(Value::str(jwk_pem(bytes(&a[0]), false)?))
    });
    t.add("jwkPrivateKeyPem", &[Str], |_, a| {
        Ok(Value::str(jwk_pem(bytes(&a[0]), true)?))
    });
    t.add("toYaml", &[Any], |c, a| {
        Ok(Value::str(super::yaml::to_yaml(c.ctx, &a[0])))
    });
    t.add("fromYaml", &[Str], |_, a| Ok(super::yaml::from_yaml(bytes(&a[0]))));
}

// ---------------------------------------------------------------- PEM

/// One PEM block: its type and DER bytes.
pub(crate) struct Block {
    pub kind: String,
    pub der: Vec<u8>,
}

/// Go's `pem.Decode`: the next block in `data` and what follows it, or `None` when there is
/// no (valid) block left.
pub(crate) fn pem_decode(mut data: &[u8]) -> Option<(Block, &[u8])> {
    loop {
        let start = if data.starts_with(b"-----BEGIN ") {
            0
        } else {
            find(data, b"\n-----BEGIN ")? + 1
        };
        let after = &data[start + 11..];
        let eol = after.iter().position(|c| *c == b'\n').unwrap_or(after.len());
        let line = trim_right(&after[..eol]);
        let Some(kind) = line.strip_suffix(b"-----") else {
            data = &after[eol.min(after.len())..];
            continue;
        };
        let kind = String::from_utf8_lossy(kind).into_owned();
        let body_start = (eol + 1).min(after.len());
        let body = &after[body_start..];
        let end_marker = format!("\n-----END {kind}-----");
        let (b64, rest) = if body.starts_with(&end_marker.as_bytes()[1..]) {
            (&body[..0], &body[end_marker.len() - 1..])
        } else {
            match find(body, end_marker.as_bytes()) {
                Some(i) => (&body[..i], &body[i + end_marker.len()..]),
                None => {
                    data = body;
                    continue;
                }
            }
        };
        // The END line must end with only whitespace.
        let eol = rest
            .iter()
            .position(|c| *c == b'\n')
            .map(|i| i + 1)
            .unwrap_or(rest.len());
        if !trim_right(&rest[..eol]).is_empty() {
            data = body;
            continue;
        }
        let rest = &rest[eol..];
        if b64.contains(&b':') {
            // PEM headers are not supported; Go would keep them. Skip like a bad block.
            data = body;
            continue;
        }
        let clean: Vec<u8> = b64.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
        match base64::engine::general_purpose::STANDARD.decode(&clean) {
            Ok(der) => return Some((Block { kind, der }, rest)),
            Err(_) => {
                data = body;
                continue;
            }
        }
    }
}

fn trim_right(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &s[..s.len() - n]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Go's `pem.Encode`: 64-column base64 lines.
pub(crate) fn pem_encode(kind: &str, der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {kind}-----\n").into_bytes();
    for chunk in b64.as_bytes().chunks(64) {
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {kind}-----\n").as_bytes());
    out
}

/// Everything from the first `-----BEGIN` (ESO drops text before it).
fn trim_junk(input: &[u8]) -> &[u8] {
    match find(input, b"-----BEGIN") {
        Some(i) => &input[i..],
        None => input,
    }
}

fn filter_pem(kind: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut data = trim_junk(input);
    let mut out = Vec::new();
    loop {
        match pem_decode(data) {
            Some((block, rest)) => {
                data = rest;
                if block.kind.eq_ignore_ascii_case(kind) {
                    out.extend(pem_encode(&block.kind, &block.der));
                }
            }
            None => {
                if out.is_empty() && !data.is_empty() {
                    return Err("error filtering pem: found junk".into());
                }
                return Ok(out);
            }
        }
    }
}

fn all_blocks(input: &[u8]) -> Vec<Block> {
    let mut data = input;
    let mut out = Vec::new();
    while let Some((b, rest)) = pem_decode(data) {
        out.push(b);
        data = rest;
    }
    out
}

// ---------------------------------------------------------------- X.509

/// What chain ordering needs of a certificate.
struct CertInfo {
    der: Vec<u8>,
    ski: Option<Vec<u8>>,
    aki: Option<Vec<u8>>,
}

fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| "a certificate does not parse as X.509".to_string())?;
    let mut ski = None;
    let mut aki = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => aki = a.key_identifier.as_ref().map(|k| k.0.to_vec()),
            _ => {}
        }
    }
    Ok(CertInfo {
        der: der.to_vec(),
        ski,
        aki,
    })
}

/// Orders certificates leaf → intermediates → root by key identifiers, as ESO's
/// `fetchX509CertChains` does (no signature checks: this only formats).
fn order_chain(certs: Vec<CertInfo>) -> Result<Vec<CertInfo>, String> {
    let n = certs.len();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            // Go compares the byte slices: two absent identifiers are equal (nil == nil).
            let a = certs[i].aki.as_deref().unwrap_or_default();
            let s = certs[j].ski.as_deref().unwrap_or_default();
            if a == s {
                is_parent[j] = true;
                parent[i] = Some(j);
                break;
            }
        }
    }
    let mut leaf = None;
    for (i, parent_of_some) in is_parent.iter().enumerate() {
        if !parent_of_some {
            if leaf.is_some() {
                return Err("found multiple leaf or disjunct certificates".into());
            }
            leaf = Some(i);
        }
    }
    let mut cur = leaf.ok_or("no leaf certificate found")?;
    let mut order = vec![];
    loop {
        order.push(cur);
        if order.len() > n {
            return Err("constructing chain resulted in cycle".into());
        }
        match parent[cur] {
            Some(p) => cur = p,
            None => break,
        }
    }
    let mut slots: Vec<Option<CertInfo>> = certs.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

fn is_root(c: &CertInfo) -> bool {
    c.aki.is_none() || c.aki == c.ski
}

fn parse_chain(input: &[u8]) -> Result<Vec<CertInfo>, String> {
    all_blocks(input).iter().map(|b| cert_info(&b.der)).collect()
}

fn filter_cert_chain(kind: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    let ordered = order_chain(parse_chain(input)?)?;
    let Some(first) = ordered.first() else {
        return Err("no leaf certificate found".into());
    };
    match kind {
        "leaf" if first.aki.is_some() && first.aki != first.ski => {
            return Ok(pem_encode("CERTIFICATE", &first.der));
        }
        "intermediate" => {
            let mut out = Vec::new();
            for c in ordered.iter().skip(1) {
                if is_root(c) {
                    break;
                }
                out.extend(pem_encode("CERTIFICATE", &c.der));
            }
            return Ok(out);
        }
        "root" => {
            let last = &ordered[ordered.len() - 1];
            if is_root(last) {
                return Ok(pem_encode("CERTIFICATE", &last.der));
            }
        }
        _ => {}
    }
    Ok(Vec::new())
}

/// DNS names, IP addresses, emails and URIs, in that order (Go's certificate fields).
fn cert_sans(input: &[u8]) -> Result<Vec<String>, String> {
    let (block, _) = pem_decode(trim_junk(input)).ok_or("failed to decode PEM block")?;
    let (_, cert) = X509Certificate::from_der(&block.der).map_err(|_| "failed to parse certificate".to_string())?;
    let (mut dns, mut ips, mut emails, mut uris) = (vec![], vec![], vec![], vec![]);
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::RFC822Name(e) => emails.push(e.to_string()),
                GeneralName::URI(u) => uris.push(u.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(b);
                        let ip = std::net::Ipv6Addr::from(a);
                        // Go prints IPv4-mapped addresses as IPv4.
                        ips.push(match ip.to_ipv4_mapped() {
                            Some(v4) => v4.to_string(),
                            None => ip.to_string(),
                        });
                    }
                    _ => ips.push("?".into()),
                },
                _ => {}
            }
        }
    }
    Ok(dns.into_iter().chain(ips).chain(emails).chain(uris).collect())
}

// ---------------------------------------------------------------- PKCS#12

fn open_pkcs12(input: &[u8], pass: &str) -> Result<p12_keystore::Pkcs12Archive, String> {
    p12_keystore::Pkcs12Archive::from_pkcs12(input, pass)
        .map_err(|_| "unable to decode pkcs12 (not a PKCS#12 archive, or a wrong password)".to_string())
}

/// `pkcs12key`: the archive's private key as PKCS#8 PEM.
fn pkcs12_key(input: &[u8], pass: &str) -> Result<Vec<u8>, String> {
    let archive = open_pkcs12(input, pass)?;
    let mut keys = archive.keys.iter();
    let key = keys
        .next()
        .ok_or("unable to decode pkcs12: no private key in the archive")?;
    if keys.next().is_some() {
        return Err("unable to decode pkcs12: expected exactly one key bag".into());
    }
    Ok(pem_encode("PRIVATE KEY", key.key.as_der()))
}

/// `pkcs12cert`: the leaf (the certificate of the key, else the first) then the others,
/// ordered leaf → root when a single chain can be built.
fn pkcs12_cert(input: &[u8], pass: &str) -> Result<Vec<u8>, String> {
    let archive = open_pkcs12(input, pass)?;
    let key_id = archive.keys.first().and_then(|k| k.local_key_id.clone());
    let mut certs: Vec<&[u8]> = archive.certs.iter().map(|c| c.cert.as_der()).collect();
    if let Some(id) = key_id
        && let Some(i) = archive
            .certs
            .iter()
            .position(|c| c.local_key_id.as_deref() == Some(id.0.as_slice()))
    {
        let leaf = certs.remove(i);
        certs.insert(0, leaf);
    }
    if certs.is_empty() {
        return Err("unable to decode pkcs12 certificate: no certificate in the archive".into());
    }
    let infos: Result<Vec<CertInfo>, String> = certs.iter().map(|d| cert_info(d)).collect();
    let ordered = infos.and_then(order_chain);
    let mut out = Vec::new();
    match ordered {
        Ok(chain) => {
            for c in chain {
                out.extend(pem_encode("CERTIFICATE", &c.der));
            }
        }
        Err(_) => {
            for d in certs {
                out.extend(pem_encode("CERTIFICATE", d));
            }
        }
    }
    Ok(out)
}

/// `pemToPkcs12` / `fullPemToPkcs12`: a base64 PKCS#12 (AES-256, HMAC-SHA256, as go-pkcs12's
/// Modern encoder) of the key and the first (or every) certificate.
fn pem_to_pkcs12(cert: &[u8], key: &[u8], pass: &str, full: bool) -> Result<String, String> {
    let certs = all_blocks(cert);
    let first = certs.first().ok_or("the certificate is not PEM")?;
    let mut chain = vec![
        p12_keystore::Certificate::from_der(&first.der)
            .map_err(|_| "the certificate does not parse as X.509".to_string())?,
    ];
    if full {
        for b in &certs[1..] {
            chain.push(
                p12_keystore::Certificate::from_der(&b.der)
                    .map_err(|_| "a CA certificate does not parse as X.509".to_string())?,
            );
        }
    }
    let (kb, _) = pem_decode(key).ok_or("the key is not PEM")?;
    let pkcs8 = match kb.kind.as_str() {
        "PRIVATE KEY" => kb.der,
        "RSA PRIVATE KEY" => pkcs8_wrap(&seq(&[oid(OID_RSA), der(0x05, &[])]), &kb.der),
        "EC PRIVATE KEY" => ec_sec1_to_pkcs8(&kb.der)?,
        _ => return Err("unable to parse private key type".into()),
    };
    let pk = p12_keystore::PrivateKey::from_der(&pkcs8).map_err(|_| "unable to parse private key type".to_string())?;
    let local_id = {
        use sha1::Digest as _;
        sha1::Sha1::digest(first.der.as_slice()).to_vec()
    };
    let mut ks = p12_keystore::KeyStore::new();
    ks.add_entry(
        "",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(local_id, pk, chain)),
    );
    let pfx = ks
        .writer(pass)
        .encryption_iterations(2048)
        .mac_iterations(2048)
        .write()
        .map_err(|_| "could not write the PKCS#12 archive".to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(pfx))
}

/// A SEC1 `EC PRIVATE KEY` as PKCS#8 (the curve moves into the algorithm identifier).
fn ec_sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, String> {
    // ECPrivateKey ::= SEQUENCE { version, privateKey OCTET STRING, [0] parameters, [1] publicKey }
    let bad = || "unable to parse private key type".to_string();
    let (tag, body, _) = der_read(sec1).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let mut rest = body;
    let mut curve = None;
    let mut kept = Vec::new();
    while !rest.is_empty() {
        let (t, content, next) = der_read(rest).ok_or_else(bad)?;
        let whole = &rest[..rest.len() - next.len()];
        if t == 0xa0 {
            curve = Some(content.to_vec());
        } else {
            kept.extend_from_slice(whole);
        }
        rest = next;
    }
    let curve = curve.ok_or_else(bad)?;
    let alg = seq(&[oid(OID_EC), curve]);
    Ok(pkcs8_wrap(&alg, &der(0x30, &kept)))
}

// ---------------------------------------------------------------- DER

const OID_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const OID_EC: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_P384: &[u64] = &[1, 3, 132, 0, 34];
const OID_P521: &[u64] = &[1, 3, 132, 0, 35];
const OID_ED25519: &[u64] = &[1, 3, 101, 112];

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

/// An unsigned big-endian integer as a DER INTEGER.
fn uint(b: &[u8]) -> Vec<u8> {
    let skip = b.iter().take_while(|x| **x == 0).count();
    let mut v = b[skip..].to_vec();
    if v.is_empty() || v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    der(0x02, &v)
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut tmp = vec![(a & 0x7f) as u8];
        let mut v = a >> 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        body.extend(tmp);
    }
    der(0x06, &body)
}

fn bit_string(b: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(b);
    der(0x03, &v)
}

fn pkcs8_wrap(alg: &[u8], key: &[u8]) -> Vec<u8> {
    seq(&[der(0x02, &[0]), alg.to_vec(), der(0x04, key)])
}

/// Reads one DER element: (tag, content, rest).
fn der_read(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let l0 = *b.get(1)? as usize;
    let (len, hdr) = if l0 < 0x80 {
        (l0, 2)
    } else {
        let n = l0 & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((tag, &b[hdr..end], &b[end..]))
}

// ---------------------------------------------------------------- JWK

#[derive(serde::Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    p: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    dp: Option<String>,
    #[serde(default)]
    dq: Option<String>,
    #[serde(default)]
    qi: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl Drop for Jwk {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for s in [
            &mut self.d,
            &mut self.p,
            &mut self.q,
            &mut self.dp,
            &mut self.dq,
            &mut self.qi,
        ]
        .into_iter()
        .flatten()
        {
            s.zeroize();
        }
    }
}

fn b64url(field: &str, v: &Option<String>) -> Result<Vec<u8>, String> {
    let s = v.as_deref().ok_or_else(|| format!("the JWK has no `{field}`"))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("the JWK's `{field}` is not base64url"))
}

/// `jwkPublicKeyPem` (SPKI `PUBLIC KEY`) or `jwkPrivateKeyPem` (PKCS#8 `PRIVATE KEY`).
fn jwk_pem(input: &[u8], private: bool) -> Result<Vec<u8>, String> {
    let jwk: Jwk = serde_json::from_slice(input).map_err(|_| "the value is not a JSON JWK".to_string())?;
    let (kind, der_bytes) = match jwk.kty.as_str() {
        "RSA" => {
            let (n, e) = (b64url("n", &jwk.n)?, b64url("e", &jwk.e)?);
            let alg = seq(&[oid(OID_RSA), der(0x05, &[])]);
            if private {
                let parts = ["d", "p", "q", "dp", "dq", "qi"];
                let vals = [&jwk.d, &jwk.p, &jwk.q, &jwk.dp, &jwk.dq, &jwk.qi];
                let mut ints = vec![der(0x02, &[0]), uint(&n), uint(&e)];
                for (f, v) in parts.iter().zip(vals) {
                    ints.push(uint(&zeroize::Zeroizing::new(b64url(f, v)?)));
                }
                let key = zeroize::Zeroizing::new(seq(&ints));
                ("PRIVATE KEY", pkcs8_wrap(&alg, &key))
            } else {
                ("PUBLIC KEY", seq(&[alg, bit_string(&seq(&[uint(&n), uint(&e)]))]))
            }
        }
        "EC" => {
            let (curve, size) = match jwk.crv.as_deref() {
                Some("P-256") => (OID_P256, 32),
                Some("P-384") => (OID_P384, 48),
                Some("P-521") => (OID_P521, 66),
                _ => return Err("unsupported JWK curve (P-256, P-384, P-521)".into()),
            };
            let pad = |b: Vec<u8>| -> Result<Vec<u8>, String> {
                let skip = b.iter().take_while(|x| **x == 0).count();
                let b = &b[skip..];
                if b.len() > size {
                    return Err("the JWK's coordinates do not fit its curve".into());
                }
                let mut v = vec![0; size - b.len()];
                v.extend_from_slice(b);
                Ok(v)
            };
            let mut point = vec![4];
            point.extend(pad(b64url("x", &jwk.x)?)?);
            point.extend(pad(b64url("y", &jwk.y)?)?);
            let alg = seq(&[oid(OID_EC), oid(curve)]);
            if private {
                let d = zeroize::Zeroizing::new(pad(b64url("d", &jwk.d)?)?);
                let ec =
                    zeroize::Zeroizing::new(seq(&[der(0x02, &[1]), der(0x04, &d), der(0xa1, &bit_string(&point))]));
                ("PRIVATE KEY", pkcs8_wrap(&alg, &ec))
            } else {
                ("PUBLIC KEY", seq(&[alg, bit_string(&point)]))
            }
        }
        "OKP" if jwk.crv.as_deref() == Some("Ed25519") => {
            let alg = seq(&[oid(OID_ED25519)]);
            if private {
                let d = zeroize::Zeroizing::new(b64url("d", &jwk.d)?);
                if d.len() != 32 {
                    return Err("the JWK's Ed25519 key is not 32 bytes".into());
                }
                ("PRIVATE KEY", pkcs8_wrap(&alg, &der(0x04, &d)))
            } else {
                let x = b64url("x", &jwk.x)?;
                ("PUBLIC KEY", seq(&[alg, bit_string(&x)]))
            }
        }
        _ => return Err("unsupported JWK key type (RSA, EC, OKP Ed25519)".into()),
    };
    let der_bytes = zeroize::Zeroizing::new(der_bytes);
    Ok(pem_encode(kind, &der_bytes))
}
