//! `tls_server_config` → a rustls server configuration, with the
//! aws-lc-rs crypto provider the AWS SDK already links (no second crypto
//! library, no OpenSSL).
//!
//! exporter-toolkit's names are Go's (`TLS12`, `RequireAndVerifyClientCert`,
//! `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, `CurveP256`); what rustls
//! implements is mapped, what it does not (TLS 1.0/1.1, CBC and RSA key
//! exchange suites, P-521, client certificates taken without verification)
//! is refused with a message that says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, cipher_suite, kx_group};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, SupportedCipherSuite, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// A key path and what is wrong with its value.
pub type KeyError = (String, String);

/// `tls_server_config` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    /// Known to exporter-toolkit, refused here.
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
}

/// TLS ready to accept connections with.
#[derive(Debug)]
pub struct Tls {
    pub server_config: Arc<rustls::ServerConfig>,
    /// A verified client certificate is required, but checked per request
    /// rather than in the handshake, so that `auth_excluded_paths` (probes)
    /// stay reachable without one. A certificate that is presented is
    /// always verified in the handshake.
    pub client_cert_per_request: bool,
    /// The certificate, key and CA files read, for noticing changes.
    pub files: Vec<PathBuf>,
}

const CLIENT_AUTH_TYPES: &str = "NoClientCert, RequestClientCert, RequireAnyClientCert, \
                                 VerifyClientCertIfGiven, RequireAndVerifyClientCert";

fn set(text: &Option<String>) -> bool {
    text.as_deref().is_some_and(|t| !t.is_empty())
}

fn set_path(path: &Option<PathBuf>) -> bool {
    path.as_deref().is_some_and(|p| !p.as_os_str().is_empty())
}

fn key(name: &str) -> String {
    format!("tls_server_config.{name}")
}

impl RawTls {
    /// exporter-toolkit's rule: any certificate, key, CA or client
    /// authentication setting turns TLS on.
    pub fn is_enabled(&self) -> bool {
        set(&self.cert)
            || set(&self.key)
            || set(&self.client_ca)
            || set_path(&self.cert_file)
            || set_path(&self.key_file)
            || set_path(&self.client_ca_file)
            || set(&self.client_auth_type)
    }

    /// Without TLS, a TLS setting would look applied and not be: refuse it.
    pub fn check_unused(&self) -> Result<(), KeyError> {
        let unused = [
            ("cipher_suites", self.cipher_suites.is_some()),
            ("curve_preferences", self.curve_preferences.is_some()),
            ("min_version", self.min_version.is_some()),
            ("max_version", self.max_version.is_some()),
            ("client_allowed_sans", self.client_allowed_sans.is_some()),
        ];
        match unused.iter().find(|(_, present)| *present) {
            Some((name, _)) => Err((
                key(name),
                "has no effect without cert_file and key_file (TLS is off)".into(),
            )),
            None => Ok(()),
        }
    }
}

/// A PEM source: a file (relative to the web config's directory) or
/// inline text.
fn pem(
    inline: &Option<String>,
    file: &Option<PathBuf>,
    inline_name: &str,
    file_name: &str,
    directory: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Option<(String, Vec<u8>)>, KeyError> {
    match (set(inline), set_path(file)) {
        (true, true) => Err((
            key(file_name),
            format!("give {file_name} or {inline_name}, not both"),
        )),
        (true, false) => Ok(Some((
            key(inline_name),
            inline.clone().unwrap_or_default().into_bytes(),
        ))),
        (false, true) => {
            let path = directory.join(file.as_deref().unwrap_or(Path::new("")));
            let bytes = std::fs::read(&path)
                .map_err(|error| (key(file_name), format!("{}: {error}", path.display())))?;
            files.push(path);
            Ok(Some((key(file_name), bytes)))
        }
        (false, false) => Ok(None),
    }
}

fn version(name: &str, text: &Option<String>, default: &'static str) -> Result<u8, KeyError> {
    let text = text.as_deref().unwrap_or(default);
    match text {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err((
            key(name),
            format!("{text} cannot be served: rustls implements TLS12 and TLS13 only"),
        )),
        other => Err((
            key(name),
            format!("expected one of TLS10, TLS11, TLS12, TLS13, got \"{other}\""),
        )),
    }
}

/// Go's names for the suites rustls implements.
fn cipher_suite_named(name: &str) -> Option<SupportedCipherSuite> {
    Some(match name {
        "TLS_AES_128_GCM_SHA256" => cipher_suite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cipher_suite::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// Suites Go knows (its `CipherSuites()` and `InsecureCipherSuites()`)
/// that rustls does not implement.
const GO_ONLY_CIPHER_SUITES: [&str; 16] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// exporter-toolkit's `cipher_suites` restrict TLS 1.2 (Go cannot restrict
/// TLS 1.3). Here TLS 1.3 suites may be listed too: when one is, TLS 1.3 is
/// restricted to those listed; when none is, every TLS 1.3 suite stays.
fn cipher_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, KeyError> {
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let place = key(&format!("cipher_suites[{index}]"));
        match cipher_suite_named(name) {
            Some(suite) if !chosen.contains(&suite) => chosen.push(suite),
            Some(_) => {}
            None if GO_ONLY_CIPHER_SUITES.contains(&name.as_str()) => {
                return Err((
                    place,
                    format!(
                        "{name} is not implemented by rustls (CBC, RC4, 3DES and RSA key \
                         exchange suites are not); use the ECDHE GCM or CHACHA20 suites"
                    ),
                ));
            }
            None => return Err((place, format!("unknown cipher suite \"{name}\""))),
        }
    }
    if !chosen.iter().any(|s| s.tls13().is_some()) {
        chosen.extend(
            aws_lc_rs::DEFAULT_CIPHER_SUITES
                .iter()
                .filter(|s| s.tls13().is_some())
                .copied(),
        );
    }
    if !chosen.iter().any(|s| s.tls13().is_none()) {
        chosen.extend(
            aws_lc_rs::DEFAULT_CIPHER_SUITES
                .iter()
                .filter(|s| s.tls13().is_none())
                .copied(),
        );
    }
    Ok(chosen)
}

fn curves(
    names: &[String],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, KeyError> {
    let mut chosen: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let place = key(&format!("curve_preferences[{index}]"));
        let group = match name.as_str() {
            "CurveP256" => kx_group::SECP256R1,
            "CurveP384" => kx_group::SECP384R1,
            "X25519" => kx_group::X25519,
            "X25519MLKEM768" => kx_group::X25519MLKEM768,
            "CurveP521" => {
                return Err((
                    place,
                    "CurveP521 is not implemented by rustls; use X25519, CurveP256 or CurveP384"
                        .into(),
                ));
            }
            other => return Err((place, format!("unknown curve \"{other}\""))),
        };
        if !chosen.iter().any(|g| g.name() == group.name()) {
            chosen.push(group);
        }
    }
    Ok(chosen)
}

/// Builds the server configuration and checks every file it names.
/// `auth_excluded` is whether the web config has `auth_excluded_paths`.
pub fn build(raw: &RawTls, directory: &Path, auth_excluded: bool) -> Result<Tls, KeyError> {
    if raw.client_allowed_sans.is_some() {
        return Err((
            key("client_allowed_sans"),
            "not supported by vpc-flow-exporter: sign client certificates with a CA of their own \
             and give it as client_ca_file"
                .into(),
        ));
    }
    let mut files = Vec::new();
    let Some((cert_key, cert_pem)) = pem(
        &raw.cert,
        &raw.cert_file,
        "cert",
        "cert_file",
        directory,
        &mut files,
    )?
    else {
        return Err((
            key("cert_file"),
            "missing: TLS needs cert_file (or cert) and key_file (or key)".into(),
        ));
    };
    let Some((key_key, key_pem)) = pem(
        &raw.key,
        &raw.key_file,
        "key",
        "key_file",
        directory,
        &mut files,
    )?
    else {
        return Err((
            key("key_file"),
            "missing: TLS needs cert_file (or cert) and key_file (or key)".into(),
        ));
    };
    let client_ca = pem(
        &raw.client_ca,
        &raw.client_ca_file,
        "client_ca",
        "client_ca_file",
        directory,
        &mut files,
    )?;

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|error| (cert_key.clone(), format!("not a PEM certificate: {error}")))?;
    if chain.is_empty() {
        return Err((cert_key, "no PEM certificate found".into()));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
        (
            key_key.clone(),
            format!("no PEM private key found: {error}"),
        )
    })?;

    let min = version("min_version", &raw.min_version, "TLS12")?;
    let max = version("max_version", &raw.max_version, "TLS13")?;
    if min > max {
        return Err((
            key("min_version"),
            format!("TLS{min} is above max_version TLS{max}"),
        ));
    }
    let versions: Vec<&'static SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(number, _)| (min..=max).contains(number))
            .map(|(_, version)| version)
            .collect();

    let mut provider: CryptoProvider = aws_lc_rs::default_provider();
    if let Some(names) = &raw.cipher_suites
        && !names.is_empty()
    {
        provider.cipher_suites = cipher_suites(names)?;
    }
    if let Some(names) = &raw.curve_preferences
        && !names.is_empty()
    {
        provider.kx_groups = curves(names)?;
    }
    let provider = Arc::new(provider);

    let client_auth = raw.client_auth_type.as_deref().unwrap_or("");
    let (verify, required) = match client_auth {
        "" | "NoClientCert" => (false, false),
        "VerifyClientCertIfGiven" => (true, false),
        "RequireAndVerifyClientCert" => (true, true),
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            return Err((
                key("client_auth_type"),
                format!(
                    "{client_auth} takes client certificates without verifying them, which \
                     rustls does not offer; use RequireAndVerifyClientCert (or \
                     VerifyClientCertIfGiven) with client_ca_file"
                ),
            ));
        }
        other => {
            return Err((
                key("client_auth_type"),
                format!("expected one of {CLIENT_AUTH_TYPES}, got \"{other}\""),
            ));
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|error| (key("cipher_suites"), format!("{error}")))?;
    let builder = match (verify, client_ca) {
        (false, None) => builder.with_no_client_auth(),
        (false, Some((ca_key, _))) => {
            return Err((
                ca_key,
                "a client CA is configured without client_auth_type (expected \
                 RequireAndVerifyClientCert or VerifyClientCertIfGiven)"
                    .into(),
            ));
        }
        (true, None) => {
            return Err((
                key("client_ca_file"),
                format!(
                    "missing: client_auth_type {client_auth} needs the CA that signs client certificates"
                ),
            ));
        }
        (true, Some((ca_key, ca_pem))) => {
            let mut roots = RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(&ca_pem) {
                let certificate = certificate
                    .map_err(|error| (ca_key.clone(), format!("not a PEM certificate: {error}")))?;
                roots
                    .add(certificate)
                    .map_err(|error| (ca_key.clone(), format!("not a CA certificate: {error}")))?;
            }
            if roots.is_empty() {
                return Err((ca_key, "no PEM certificate found".into()));
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if !required || auth_excluded {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|error| (ca_key, format!("{error}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server_config = builder
        .with_single_cert(chain, private_key)
        .map_err(|error| match error {
            rustls::Error::InconsistentKeys(_) => (
                key_key,
                format!("is not the private key of the certificate in {cert_key}"),
            ),
            other => (key_key, format!("{other}")),
        })?;
    server_config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        server_config: Arc::new(server_config),
        client_cert_per_request: required && auth_excluded,
        files,
    })
}
