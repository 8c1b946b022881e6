//! The `--web.config.file`: the Prometheus exporter-toolkit schema (the
//! same YAML file node_exporter reads), strict, validated into a
//! [`WebConfig`] that the server uses as it is.
//!
//! Every error names the file, the key path and what was expected. Keys
//! that exporter-toolkit knows but this exporter cannot honour
//! (`rate_limit`, `client_allowed_sans`, TLS 1.0/1.1, cipher suites rustls
//! does not implement, ...) are errors, never silently ignored: a security
//! setting that looks applied but is not is worse than a refusal.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::auth::BasicAuth;
use super::tls::{self, Tls};
use crate::config::{join, parse_unknown_field};

/// A web configuration ready to serve with.
#[derive(Debug)]
pub struct WebConfig {
    /// `tls_server_config`; `None` serves plain HTTP.
    pub tls: Option<Tls>,
    /// `basic_auth_users`; empty means no basic authentication.
    pub basic_auth: BasicAuth,
    /// `http_server_config.headers`, added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `auth_excluded_paths`: served without basic authentication or a
    /// client certificate (for probes, e.g. `/healthz`).
    pub auth_excluded_paths: Vec<String>,
    /// The file and every file it names, for noticing changes.
    pub files: Vec<PathBuf>,
}

impl WebConfig {
    /// The configuration without a file: plain HTTP, no authentication.
    pub fn open() -> Self {
        WebConfig {
            tls: None,
            basic_auth: BasicAuth::default(),
            headers: Vec::new(),
            auth_excluded_paths: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Whether `path` is served without credentials.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.auth_excluded_paths.iter().any(|p| p == path)
    }
}

/// A web configuration file that cannot be used; `Display` gives the whole message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Larger than [`MAX_FILE_BYTES`].
    #[error(
        "{}: larger than {MAX_FILE_BYTES} bytes: a web configuration file is a few \
         keys and users; this is not one",
        path.display()
    )]
    TooLarge { path: PathBuf },
    /// Not YAML, or not a mapping at the top.
    #[error("{}: not valid YAML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// A key that the schema does not know.
    #[error("{}: unknown key \"{key}\" (expected one of: {})", path.display(), expected.join(", "))]
    UnknownKey {
        path: PathBuf,
        /// Its full path, e.g. `tls_server_config.cert_flie`.
        key: String,
        /// The keys allowed at that place.
        expected: Vec<String>,
    },
    /// A key whose value is wrong, missing or cannot be honoured.
    #[error("{}: {key}: {message}", path.display())]
    Value {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The headers exporter-toolkit lets a file set, with the values allowed
/// (none listed: any value).
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Content-Security-Policy", &[]),
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];

/// The file as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<tls::RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    auth_excluded_paths: Option<Vec<String>>,
    /// Known to exporter-toolkit, refused here (see [`validate`]).
    #[serde(default)]
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; HTTP/1.1 is served either way.
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// The largest web configuration file read. Real ones are a few hundred
/// bytes, a few thousand with many users. The YAML parser's time grows
/// with the square of some nestings (fuzzing found 36 KB of nested flow
/// sequences taking 0.4 s, and twice that four times as long), so the
/// bound keeps a broken or hostile file from stalling a start or a reload.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// Reads and validates the web configuration file: syntax, keys, values,
/// and the certificates and keys it names. Relative paths are relative to
/// the file's directory.
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let read_error = |source| WebConfigError::Read {
        path: path.to_owned(),
        source,
    };
    // One byte past the bound tells a file that is too large, without
    // reading all of it (it may be a device that never ends).
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(MAX_FILE_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(read_error)?;
    parse(path, &text)
}

/// As [`load`], with the file's text already read (`path` names it in
/// messages and anchors relative paths).
pub fn parse(path: &Path, text: &str) -> Result<WebConfig, WebConfigError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(WebConfigError::TooLarge {
            path: path.to_owned(),
        });
    }
    let raw = parse_raw(path, text)?;
    validate(path, raw)
}

fn parse_raw(path: &Path, text: &str) -> Result<RawWebConfig, WebConfigError> {
    // An empty file (or only comments) is a valid file that changes nothing.
    let document: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|error| WebConfigError::Syntax {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
    if document.is_null() {
        return Ok(RawWebConfig::default());
    }
    if !document.is_mapping() {
        return Err(WebConfigError::Syntax {
            path: path.to_owned(),
            message:
                "expected a mapping of keys (tls_server_config, basic_auth_users, ...) at the top"
                    .into(),
        });
    }
    serde_path_to_error::deserialize(document).map_err(|error| deserialize_error(path, error))
}

fn deserialize_error(
    path: &Path,
    error: serde_path_to_error::Error<serde_yaml_ng::Error>,
) -> WebConfigError {
    let at = match error.path().to_string() {
        root if root == "." => String::new(),
        at => at,
    };
    let message = error.inner().to_string();
    if let Some((field, expected)) = parse_unknown_field(&message) {
        // The path may or may not already end with the unknown key.
        let key = if at == field || at.ends_with(&format!(".{field}")) {
            at
        } else {
            join(&at, &field)
        };
        return WebConfigError::UnknownKey {
            path: path.to_owned(),
            key,
            expected,
        };
    }
    let message = humanize(&message);
    if at.is_empty() {
        return WebConfigError::Syntax {
            path: path.to_owned(),
            message,
        };
    }
    WebConfigError::Value {
        path: path.to_owned(),
        key: at,
        message,
    }
}

/// serde's wording in the words of the rest of the exporter's messages,
/// without the YAML position (the key path says where).
fn humanize(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((unexpected, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(", expected "))
        {
            let expected = match expected {
                "a sequence" => "a list",
                "a map" => "a mapping",
                other => other,
            };
            let unexpected = match unexpected {
                "sequence" => "a list".to_owned(),
                "map" => "a mapping".to_owned(),
                other => other.replace('`', ""),
            };
            return format!("expected {expected}, got {unexpected}");
        }
    }
    message.to_owned()
}

fn validate(path: &Path, raw: RawWebConfig) -> Result<WebConfig, WebConfigError> {
    let value_error = |key: &str, message: String| WebConfigError::Value {
        path: path.to_owned(),
        key: key.to_owned(),
        message,
    };
    if raw.rate_limit.is_some() {
        return Err(value_error(
            "rate_limit",
            "not supported by vpc-flow-exporter (limit connections with [server] max_connections)"
                .into(),
        ));
    }
    let directory = path.parent().unwrap_or(Path::new("."));
    let mut files = vec![path.to_owned()];
    let tls = match raw.tls_server_config {
        Some(raw_tls) if raw_tls.is_enabled() => {
            let excluded = raw
                .auth_excluded_paths
                .as_ref()
                .is_some_and(|p| !p.is_empty());
            let built = tls::build(&raw_tls, directory, excluded)
                .map_err(|(key, message)| value_error(&key, message))?;
            files.extend(built.files.iter().cloned());
            Some(built)
        }
        Some(raw_tls) => {
            raw_tls
                .check_unused()
                .map_err(|(key, message)| value_error(&key, message))?;
            None
        }
        None => None,
    };
    let basic_auth = BasicAuth::new(raw.basic_auth_users.unwrap_or_default())
        .map_err(|(user, message)| value_error(&format!("basic_auth_users.{user}"), message))?;
    let mut headers = Vec::new();
    if let Some(http) = raw.http_server_config {
        let _ = http.http2;
        for (name, value) in http.headers.unwrap_or_default() {
            let key = format!("http_server_config.headers.{name}");
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(known, _)| *known == name)
            else {
                let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(known, _)| *known).collect();
                return Err(value_error(
                    &key,
                    format!(
                        "this header cannot be configured (expected one of: {})",
                        names.join(", ")
                    ),
                ));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                let quoted: Vec<String> = allowed.iter().map(|v| format!("\"{v}\"")).collect();
                return Err(value_error(
                    &key,
                    format!("expected one of {}, got \"{value}\"", quoted.join(", ")),
                ));
            }
            if value.is_empty() {
                // exporter-toolkit: "Unset if blank".
                continue;
            }
            let header_value = HeaderValue::from_str(&value).map_err(|_| {
                value_error(
                    &key,
                    "not a valid header value (control characters?)".into(),
                )
            })?;
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .expect("every allowed header name is valid");
            headers.push((header_name, header_value));
        }
    }
    let auth_excluded_paths = raw.auth_excluded_paths.unwrap_or_default();
    for (index, excluded) in auth_excluded_paths.iter().enumerate() {
        if !excluded.starts_with('/') {
            return Err(value_error(
                &format!("auth_excluded_paths[{index}]"),
                format!(
                    "expected a path starting with \"/\" like \"/healthz\", got \"{excluded}\""
                ),
            ));
        }
    }
    Ok(WebConfig {
        tls,
        basic_auth,
        headers,
        auth_excluded_paths,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse(Path::new("web.yml"), text).unwrap_err().to_string()
    }

    #[test]
    fn an_empty_file_serves_plain_http_without_authentication() {
        for text in ["", "# nothing\n", "---\n"] {
            let config = parse(Path::new("web.yml"), text).unwrap();
            assert!(config.tls.is_none());
            assert!(config.basic_auth.is_empty());
            assert!(config.headers.is_empty());
        }
    }

    /// Fuzzing (web_config, 2026-12-08) found nested flow sequences whose
    /// parsing time grows with the square of their size.
    #[test]
    fn a_file_larger_than_the_bound_is_refused_before_parsing() {
        let nested = "[!/!/!bba\n".repeat(MAX_FILE_BYTES / 10 + 1);
        assert_eq!(
            error(&nested),
            format!(
                "web.yml: larger than {MAX_FILE_BYTES} bytes: a web configuration file is a \
                 few keys and users; this is not one"
            )
        );
        let comment = format!("#{}\n", "x".repeat(MAX_FILE_BYTES - 2));
        assert!(
            parse(Path::new("web.yml"), &comment).is_ok(),
            "at the bound"
        );
    }

    #[test]
    fn a_file_larger_than_the_bound_is_read_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, "#".repeat(10 * MAX_FILE_BYTES)).unwrap();
        assert!(matches!(load(&path), Err(WebConfigError::TooLarge { .. })));
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        assert_eq!(
            error("tls_server_config:\n  cert_flie: a.crt\n"),
            "web.yml: unknown key \"tls_server_config.cert_flie\" (expected one of: cert, key, \
             client_ca, cert_file, key_file, client_ca_file, client_auth_type, cipher_suites, \
             curve_preferences, min_version, max_version, prefer_server_cipher_suites, \
             client_allowed_sans)"
        );
        assert_eq!(
            error("basic_auth:\n  a: b\n"),
            "web.yml: unknown key \"basic_auth\" (expected one of: tls_server_config, \
             http_server_config, basic_auth_users, auth_excluded_paths, rate_limit)"
        );
    }

    #[test]
    fn types_are_checked() {
        assert_eq!(
            error("basic_auth_users: [a]\n"),
            "web.yml: basic_auth_users: expected a mapping, got a list"
        );
        assert_eq!(
            error("- a\n"),
            "web.yml: not valid YAML: expected a mapping of keys (tls_server_config, basic_auth_users, ...) at the top"
        );
    }

    #[test]
    fn headers_are_those_of_exporter_toolkit() {
        assert_eq!(
            error("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
            "web.yml: http_server_config.headers.X-Frame-Options: expected one of \"deny\", \"sameorigin\", got \"allow\""
        );
        let config = parse(
            Path::new("web.yml"),
            "http_server_config:\n  http2: false\n  headers:\n    X-Content-Type-Options: nosniff\n    Content-Security-Policy: \"\"\n",
        )
        .unwrap();
        assert_eq!(config.headers.len(), 1);
    }
}
