//! The web configuration files of tests/web-configs/, table-tested as
//! exporter-toolkit's testdata/: every good file loads, every bad file fails
//! with exactly its message. The certificates they name are made here; the
//! files are read from a temporary copy of the folder, so paths are
//! relative to the file, not to the working directory. `--check-config`
//! reports the same messages.

mod web_support;

use std::path::Path;

use vpc_flow_exporter::web;
use web_support::{Ca, write};

const GOOD: [&str; 9] = [
    "empty.good.yml",
    "tls_noAuth.good.yml",
    "tls_requireAndVerifyClientCert.good.yml",
    "tls_verifyClientCertIfGiven.good.yml",
    "tls_someCiphers.good.yml",
    "tls_someCurves.good.yml",
    "users.good.yml",
    "headers.good.yml",
    "probes_open_with_client_certs.good.yml",
];

const BAD: [(&str, &str); 32] = [
    (
        "unknown_key.bad.yml",
        "unknown key \"tls_server_config.cert_flie\" (expected one of: cert, key, client_ca, \
         cert_file, key_file, client_ca_file, client_auth_type, cipher_suites, curve_preferences, \
         min_version, max_version, prefer_server_cipher_suites, client_allowed_sans)",
    ),
    (
        "unknown_top_key.bad.yml",
        "unknown key \"basic_auth\" (expected one of: tls_server_config, http_server_config, \
         basic_auth_users, auth_excluded_paths, rate_limit)",
    ),
    (
        "unknown_http_key.bad.yml",
        "unknown key \"http_server_config.header\" (expected one of: http2, headers)",
    ),
    (
        "not_yaml.bad.yml",
        "not valid YAML: did not find expected node content at line 2 column 1, while parsing a flow node",
    ),
    (
        "tls_wrongTLSVersion.bad.yml",
        "tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13, got \"TLS111\"",
    ),
    (
        "tls_TLS10.bad.yml",
        "tls_server_config.min_version: TLS10 cannot be served: rustls implements TLS12 and TLS13 only",
    ),
    (
        "tls_minAboveMax.bad.yml",
        "tls_server_config.min_version: TLS13 is above max_version TLS12",
    ),
    (
        "tls_inventedCiphers.bad.yml",
        "tls_server_config.cipher_suites[1]: unknown cipher suite \"TLS_FOO_BAR\"",
    ),
    (
        "tls_cbcCipher.bad.yml",
        "tls_server_config.cipher_suites[0]: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not implemented \
         by rustls (CBC, RC4, 3DES and RSA key exchange suites are not); use the ECDHE GCM or \
         CHACHA20 suites",
    ),
    (
        "tls_inventedCurves.bad.yml",
        "tls_server_config.curve_preferences[0]: unknown curve \"CurveP257\"",
    ),
    (
        "tls_P521.bad.yml",
        "tls_server_config.curve_preferences[0]: CurveP521 is not implemented by rustls; use \
         X25519, CurveP256 or CurveP384",
    ),
    (
        "tls_certPath_invalid.bad.yml",
        "tls_server_config.cert_file: missing.crt: No such file or directory (os error 2)",
    ),
    (
        "tls_keyPath_empty.bad.yml",
        "tls_server_config.key_file: missing: TLS needs cert_file (or cert) and key_file (or key)",
    ),
    (
        "tls_certPath_empty.bad.yml",
        "tls_server_config.cert_file: missing: TLS needs cert_file (or cert) and key_file (or key)",
    ),
    (
        "tls_junk_key.bad.yml",
        "tls_server_config.key_file: no PEM private key found: no items found",
    ),
    (
        "tls_key_mismatch.bad.yml",
        "tls_server_config.key_file: is not the private key of the certificate in \
         tls_server_config.cert_file",
    ),
    (
        "tls_cert_and_cert_file.bad.yml",
        "tls_server_config.cert_file: give cert_file or cert, not both",
    ),
    (
        "tls_clientAuth_invalid.bad.yml",
        "tls_server_config.client_auth_type: expected one of NoClientCert, RequestClientCert, \
         RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert, got \
         \"RequireAndVerifyClientCerts\"",
    ),
    (
        "tls_requireAnyClientCert.bad.yml",
        "tls_server_config.client_auth_type: RequireAnyClientCert takes client certificates \
         without verifying them, which rustls does not offer; use RequireAndVerifyClientCert (or \
         VerifyClientCertIfGiven) with client_ca_file",
    ),
    (
        "tls_clientCAs_missing.bad.yml",
        "tls_server_config.client_ca_file: missing: client_auth_type RequireAndVerifyClientCert \
         needs the CA that signs client certificates",
    ),
    (
        "tls_clientCA_without_auth.bad.yml",
        "tls_server_config.client_ca_file: a client CA is configured without client_auth_type \
         (expected RequireAndVerifyClientCert or VerifyClientCertIfGiven)",
    ),
    (
        "tls_clientCAs_invalid.bad.yml",
        "tls_server_config.client_ca_file: no PEM certificate found",
    ),
    (
        "tls_client_allowed_sans.bad.yml",
        "tls_server_config.client_allowed_sans: not supported by vpc-flow-exporter: sign client \
         certificates with a CA of their own and give it as client_ca_file",
    ),
    (
        "tls_off_min_version.bad.yml",
        "tls_server_config.min_version: has no effect without cert_file and key_file (TLS is off)",
    ),
    (
        "users_not_bcrypt.bad.yml",
        "basic_auth_users.prometheus: not a bcrypt hash (expected one like \"$2y$10$...\", as made \
         by `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
    ),
    (
        "users_list.bad.yml",
        "basic_auth_users: expected a mapping, got a list",
    ),
    (
        "headers_extra_header.bad.yml",
        "http_server_config.headers.Server: this header cannot be configured (expected one of: \
         Content-Security-Policy, Strict-Transport-Security, X-Content-Type-Options, \
         X-Frame-Options, X-XSS-Protection)",
    ),
    (
        "headers_frame_options.bad.yml",
        "http_server_config.headers.X-Frame-Options: expected one of \"deny\", \"sameorigin\", got \
         \"allow-from\"",
    ),
    (
        "headers_content_type_options.bad.yml",
        "http_server_config.headers.X-Content-Type-Options: expected one of \"nosniff\", got \
         \"sniff\"",
    ),
    (
        "rate_limit.bad.yml",
        "rate_limit: not supported by vpc-flow-exporter (limit connections with [server] \
         max_connections)",
    ),
    (
        "auth_excluded_paths_relative.bad.yml",
        "auth_excluded_paths[0]: expected a path starting with \"/\" like \"/healthz\", got \
         \"healthz\"",
    ),
    (
        "absent.bad.yml",
        "cannot read: No such file or directory (os error 2)",
    ),
];

/// A copy of tests/web-configs/ with fresh certificates beside the files.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web-configs");
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let ca = Ca::new("test CA");
    let server = ca.server("server");
    write(dir.path(), "ca.crt", &ca.pem());
    write(dir.path(), "server.crt", &server.cert);
    write(dir.path(), "server.key", &server.key);
    write(dir.path(), "other.key", &ca.server("other").key);
    dir
}

/// The message without the folder, so it reads as in the table.
fn message(dir: &Path, error: impl std::fmt::Display) -> String {
    error
        .to_string()
        .replace(&format!("{}/", dir.display()), "")
}

#[test]
fn every_good_file_loads() {
    let dir = folder();
    for name in GOOD {
        if let Err(error) = web::load(&dir.path().join(name)) {
            panic!("{name}: {}", message(dir.path(), error));
        }
    }
}

#[test]
fn every_bad_file_fails_with_its_message() {
    let dir = folder();
    let mut wrong = Vec::new();
    for (name, expected) in BAD {
        let expected = format!("{name}: {expected}");
        match web::load(&dir.path().join(name)) {
            Ok(_) => wrong.push(format!("{name}: loaded, expected {expected:?}")),
            Err(error) => {
                let got = message(dir.path(), error);
                if got != expected {
                    wrong.push(format!(
                        "{name}:\n  got      {got:?}\n  expected {expected:?}"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_file_of_the_folder_is_in_the_table() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web-configs");
    for entry in std::fs::read_dir(source).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yml") {
            assert!(
                GOOD.contains(&name.as_str()) || BAD.iter().any(|(bad, _)| *bad == name),
                "{name} is in tests/web-configs/ but not in the table"
            );
        }
    }
}

#[test]
fn the_parsed_good_files_say_what_they_configure() {
    let dir = folder();
    let load = |name: &str| web::load(&dir.path().join(name)).unwrap();
    assert!(load("empty.good.yml").tls.is_none());
    let probes = load("probes_open_with_client_certs.good.yml");
    let tls = probes.tls.as_ref().unwrap();
    assert!(tls.client_cert_per_request);
    assert!(probes.is_excluded("/healthz") && !probes.is_excluded("/metrics"));
    assert_eq!(
        tls.files.len(),
        3,
        "cert, key and CA are watched: {:?}",
        tls.files
    );
    let strict = load("tls_requireAndVerifyClientCert.good.yml");
    assert!(!strict.tls.as_ref().unwrap().client_cert_per_request);
    assert_eq!(load("headers.good.yml").headers.len(), 5);
    assert!(!load("users.good.yml").basic_auth.is_empty());
}

#[test]
fn check_config_reports_a_bad_web_config_and_passes_a_good_one() {
    let dir = folder();
    let exporter = env!("CARGO_BIN_EXE_vpc-flow-exporter");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    let run = |web_config: &str| {
        std::process::Command::new(exporter)
            .args(["serve", "--check-config", "--config"])
            .arg(&config)
            .arg("--web.config.file")
            .arg(dir.path().join(web_config))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .output()
            .unwrap()
    };
    let good = run("tls_noAuth.good.yml");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = run("tls_TLS10.bad.yml");
    assert!(!bad.status.success());
    assert_eq!(
        message(dir.path(), String::from_utf8_lossy(&bad.stderr).trim()),
        "vpc-flow-exporter: web configuration tls_TLS10.bad.yml: tls_server_config.min_version: \
         TLS10 cannot be served: rustls implements TLS12 and TLS13 only"
    );
}

#[test]
fn the_deploy_example_loads_with_its_certificates_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/web-config.yml");
    std::fs::copy(example, dir.path().join("web.yml")).unwrap();
    let ca = Ca::new("client CA");
    let server = Ca::new("server CA").server("vpc-flow-exporter");
    write(dir.path(), "ca.crt", &ca.pem());
    write(dir.path(), "tls.crt", &server.cert);
    write(dir.path(), "tls.key", &server.key);
    let config = web::load(&dir.path().join("web.yml"))
        .unwrap_or_else(|error| panic!("{}", message(dir.path(), error)));
    assert!(config.is_excluded("/healthz") && config.is_excluded("/ready"));
    assert!(!config.is_excluded("/metrics") && !config.is_excluded("/"));
    assert!(config.tls.as_ref().unwrap().client_cert_per_request);
    assert!(!config.basic_auth.is_empty());
}
