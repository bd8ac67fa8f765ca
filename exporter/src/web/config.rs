//! `--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit YAML format
//! (<https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md>), so
//! a file written for node_exporter works here unchanged, within what is supported:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/walwatch/tls.crt      # PEM: the certificate, then its chain
//!   key_file: /etc/walwatch/tls.key       # PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
//!   client_ca_file: /etc/walwatch/clients-ca.crt
//!   min_version: TLS12                    # TLS12 (default) or TLS13
//!   max_version: TLS13
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...                # bcrypt hash (htpasswd -nbBC 10 USER PASS)
//! ```
//!
//! Keys of the format that walwatch does not implement (`cipher_suites`, `curve_preferences`,
//! `client_allowed_sans`, inline `cert`/`key`, `http2: true`, …) are refused by name at startup,
//! never ignored: a setting that silently does nothing is worse than none. The file is read once,
//! at startup (exporter-toolkit re-reads it per connection): restart walwatch to apply a change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    pub tls_server_config: Option<TlsServerConfig>,
    pub http_server_config: Option<HttpServerConfig>,
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    /// exporter-toolkit's request rate limit: not implemented (refused by name).
    pub rate_limit: Option<serde_norway::Value>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Accepted and ignored, as Go has done since 1.17 (rustls picks the suite itself).
    pub prefer_server_cipher_suites: Option<bool>,
    // Keys of the format that walwatch refuses by name (see `unsupported`).
    pub cert: Option<serde_norway::Value>,
    pub key: Option<serde_norway::Value>,
    pub client_ca: Option<serde_norway::Value>,
    pub cipher_suites: Option<serde_norway::Value>,
    pub curve_preferences: Option<serde_norway::Value>,
    pub client_allowed_sans: Option<serde_norway::Value>,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    pub http2: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The response headers `http_server_config.headers` may set (exporter-toolkit's list).
pub const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// Who must show a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

/// A TLS version rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS part, checked (files are read by [`super::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

/// The whole file, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// user → bcrypt hash, each hash parsed once to prove it is one.
    pub users: BTreeMap<String, String>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

/// Reads and checks a web config file. Errors name the file, the key and what to do.
pub fn read(path: &Path) -> Result<WebConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read web config file {} (--web.config.file): {e}; check the path and its permissions",
            path.display()
        )
    })?;
    parse(path, &text)
}

/// Parses and checks a web config file's text; relative paths in it are relative to its folder,
/// as in exporter-toolkit.
pub fn parse(path: &Path, text: &str) -> Result<WebConfig, String> {
    let bad = |what: String| format!("invalid web config file {}: {what}", path.display());
    let file: WebConfigFile = if text.trim().is_empty() {
        WebConfigFile::default()
    } else {
        serde_norway::from_str(text).map_err(|e| {
            bad(format!(
                "{e} (the format is exporter-toolkit's: tls_server_config, http_server_config, basic_auth_users)"
            ))
        })?
    };
    let unsupported = |key: &str, why: &str| {
        bad(format!(
            "key `{key}` is not supported by walwatch: {why}; remove it"
        ))
    };
    if file.rate_limit.is_some() {
        return Err(unsupported(
            "rate_limit",
            "there is no request rate limit (the connection limit is --web.max-connections)",
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let tls = match file.tls_server_config {
        None => None,
        Some(t) => Some(tls_settings(t, base, &bad, &unsupported)?),
    };

    let mut headers = Vec::new();
    if let Some(h) = file.http_server_config {
        if h.http2 == Some(true) {
            return Err(unsupported(
                "http_server_config.http2",
                "walwatch serves HTTP/1.1 only (Prometheus scrapes over HTTP/1.1)",
            ));
        }
        for (name, value) in h.headers {
            let Some(known) = ALLOWED_HEADERS
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&name))
            else {
                return Err(bad(format!(
                    "key `http_server_config.headers.{name}`: this header cannot be set; allowed: {}",
                    ALLOWED_HEADERS.join(", ")
                )));
            };
            if hyper::header::HeaderValue::from_str(&value).is_err() {
                return Err(bad(format!(
                    "key `http_server_config.headers.{name}`: the value is not a valid header value (control characters?)"
                )));
            }
            headers.push(((*known).to_owned(), value));
        }
    }

    for (user, hash) in &file.basic_auth_users {
        if user.contains(':') {
            return Err(bad(format!(
                "key `basic_auth_users.{user}`: a user name cannot contain `:` (HTTP basic auth separates user and password with it)"
            )));
        }
        if let Err(e) = hash.parse::<bcrypt::HashParts>() {
            return Err(bad(format!(
                "key `basic_auth_users.{user}`: not a bcrypt hash ({e}); make one with `htpasswd -nbBC 10 USER PASSWORD` (the part after `:`)"
            )));
        }
    }
    Ok(WebConfig {
        tls,
        users: file.basic_auth_users,
        headers,
    })
}

fn tls_settings(
    t: TlsServerConfig,
    base: &Path,
    bad: &dyn Fn(String) -> String,
    unsupported: &dyn Fn(&str, &str) -> String,
) -> Result<TlsSettings, String> {
    let refused = [
        (
            t.cert.is_some(),
            "tls_server_config.cert",
            "inline certificates are not read; put the PEM in a file and name it with cert_file",
        ),
        (
            t.key.is_some(),
            "tls_server_config.key",
            "inline keys are not read; put the PEM in a file and name it with key_file",
        ),
        (
            t.client_ca.is_some(),
            "tls_server_config.client_ca",
            "inline CAs are not read; put the PEM in a file and name it with client_ca_file",
        ),
        (
            t.cipher_suites.is_some(),
            "tls_server_config.cipher_suites",
            "rustls offers only modern AEAD suites and chooses among them itself",
        ),
        (
            t.curve_preferences.is_some(),
            "tls_server_config.curve_preferences",
            "rustls chooses the key-exchange group itself (X25519, P-256, P-384)",
        ),
        (
            t.client_allowed_sans.is_some(),
            "tls_server_config.client_allowed_sans",
            "client certificates are checked against client_ca_file only",
        ),
    ];
    if let Some((_, key, why)) = refused.iter().find(|(given, _, _)| *given) {
        return Err(unsupported(key, why));
    }
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let cert_file = t.cert_file.map(resolve).ok_or_else(|| {
        bad(
            "key `tls_server_config.cert_file` is missing: name the server certificate's PEM file"
                .into(),
        )
    })?;
    let key_file = t.key_file.map(resolve).ok_or_else(|| {
        bad("key `tls_server_config.key_file` is missing: name the server key's PEM file".into())
    })?;
    let client_ca_file = t.client_ca_file.map(resolve);
    let client_auth = match t.client_auth_type.as_deref() {
        None | Some("") if client_ca_file.is_some() => ClientAuth::RequireAndVerify,
        None | Some("") | Some("NoClientCert") => ClientAuth::None,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerify,
        Some(v @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            return Err(unsupported(
                "tls_server_config.client_auth_type",
                &format!("`{v}` accepts client certificates without verifying them; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"),
            ))
        }
        Some(v) => {
            return Err(bad(format!(
                "key `tls_server_config.client_auth_type`: `{v}` is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            )))
        }
    };
    if client_auth != ClientAuth::None && client_ca_file.is_none() {
        return Err(bad(
            "key `tls_server_config.client_ca_file` is missing: client certificates are verified against it".into(),
        ));
    }
    let version = |key: &str, v: Option<String>, default: TlsVersion| match v.as_deref() {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some("TLS10" | "TLS11") => Err(unsupported(
            &format!("tls_server_config.{key}"),
            "TLS 1.0 and 1.1 are obsolete and rustls does not speak them; use TLS12 or TLS13",
        )),
        Some(other) => Err(bad(format!(
            "key `tls_server_config.{key}`: `{other}` is not one of TLS12, TLS13"
        ))),
    };
    let min_version = version("min_version", t.min_version, TlsVersion::Tls12)?;
    let max_version = version("max_version", t.max_version, TlsVersion::Tls13)?;
    if min_version > max_version {
        return Err(bad(
            "keys `tls_server_config.min_version` and `max_version`: the minimum is above the maximum".into(),
        ));
    }
    Ok(TlsSettings {
        cert_file,
        key_file,
        client_auth,
        client_ca_file,
        min_version,
        max_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> WebConfig {
        parse(Path::new("/etc/w/web.yml"), text).unwrap()
    }
    fn parse_err(text: &str) -> String {
        parse(Path::new("/etc/w/web.yml"), text).unwrap_err()
    }

    const HASH: &str = "$2y$04$S9JbKlSsm3Nc1r5m3pvK7.3IQxTIkQGrDc1ZfDf1IhfsZ2GVdyTrS";

    #[test]
    fn a_node_exporter_file_parses() {
        let c = parse_ok(&format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: /k/tls.key\n  min_version: TLS13\n  prefer_server_cipher_suites: true\n\
             http_server_config:\n  headers:\n    x-frame-options: deny\n\
             basic_auth_users:\n  prometheus: '{HASH}'\n"
        ));
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("/etc/w/tls.crt"));
        assert_eq!(tls.key_file, PathBuf::from("/k/tls.key"));
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(tls.client_auth, ClientAuth::None);
        assert_eq!(c.headers, vec![("X-Frame-Options".into(), "deny".into())]);
        assert!(c.users.contains_key("prometheus"));
        assert_eq!(parse_ok(""), WebConfig::default());
    }

    #[test]
    fn a_client_ca_alone_requires_client_certificates() {
        let c =
            parse_ok("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca\n");
        assert_eq!(c.tls.unwrap().client_auth, ClientAuth::RequireAndVerify);
        let e = parse_err("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n");
        assert!(e.contains("client_ca_file"), "{e}");
    }

    #[test]
    fn unsupported_and_unknown_keys_are_named() {
        for (text, key) in [
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n", "min_version"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n", "client_auth_type"),
            ("http_server_config:\n  http2: true\n", "http2"),
            ("http_server_config:\n  headers:\n    Content-Type: x\n", "headers.Content-Type"),
            ("tls_server_config:\n  cert_fil: a\n", "cert_fil"),
            ("basic_auth_user:\n  a: b\n", "basic_auth_user"),
            ("tls_server_config:\n  key_file: b\n", "cert_file"),
        ] {
            let e = parse_err(text);
            assert!(e.contains(key) && e.contains("/etc/w/web.yml"), "{key}: {e}");
        }
    }

    #[test]
    fn hashes_must_be_bcrypt() {
        let e = parse_err("basic_auth_users:\n  alice: plaintext\n");
        assert!(
            e.contains("basic_auth_users.alice") && e.contains("bcrypt"),
            "{e}"
        );
        let e = parse_err(&format!("basic_auth_users:\n  'a:b': '{HASH}'\n"));
        assert!(e.contains("`:`"), "{e}");
    }

    #[test]
    fn bad_yaml_is_reported_with_the_file() {
        let e = parse_err("tls_server_config: [\n");
        assert!(e.contains("invalid web config file /etc/w/web.yml"), "{e}");
    }
}
