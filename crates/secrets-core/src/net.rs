//! Endpoint rules shared by the network providers.

use crate::error::{Error, Result};

/// Whether `host` (no port) is a loopback name or address.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks an endpoint URL a provider will send credentials or receive values over: `https`
/// anywhere; plain `http` only to a loopback host (an emulator on this machine). There is
/// no switch to skip TLS verification for other hosts. `what` names the setting in errors.
pub fn check_endpoint(url: &str, what: &str) -> Result<()> {
    match endpoint_problem(url) {
        Some(problem) => Err(Error::invalid(format!("{what}: {problem}"))),
        None => Ok(()),
    }
}

/// What is wrong with an endpoint URL, if anything, in words for a field's error (no
/// prefix): not a URL, plain http to a host that is not loopback, another scheme.
pub fn endpoint_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(format!("`{url}` is not a URL (https://host[:port])"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or(authority)
    } else {
        authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority)
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => None,
        "http" if is_loopback_host(host) => None,
        "http" => Some(format!(
            "plain http to `{host}` is refused: http is allowed only for loopback endpoints (emulators on this machine); use https"
        )),
        other => Some(format!("unsupported scheme `{other}` (https, or http to loopback)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_to_loopback() {
        for ok in [
            "https://secretsmanager.eu-central-1.amazonaws.com",
            "http://127.0.0.1:5000",
            "http://localhost:8080/v3",
            "http://[::1]:9000",
            "https://api.doppler.com",
        ] {
            assert!(check_endpoint(ok, "endpoint").is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.5:5000",
            "http://moto:5000",
            "ftp://127.0.0.1",
            "127.0.0.1:5000",
            "http://127.0.0.1.evil.com",
        ] {
            assert!(check_endpoint(bad, "endpoint").is_err(), "{bad}");
        }
    }
}
