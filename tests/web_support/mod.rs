//! What the web tests share: certificates made on the spot with `rcgen`
//! (no key is committed), the exporter's HTTP server started in-process on
//! a free loopback port, and a raw HTTP/1.1 client with or without TLS
//! that reports exactly what came back (or that the connection was refused
//! or closed).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use vpc_flow_exporter::api::{RingSizes, SessionLog};
use vpc_flow_exporter::metrics::Metrics;
use vpc_flow_exporter::server::{self, ServerState};
use vpc_flow_exporter::web::{Limits, WatchedConfig};

/// A certificate authority made for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A PEM certificate and its PEM private key.
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `localhost` and 127.0.0.1, signed by this CA.
    pub fn server(&self, common_name: &str) -> Pair {
        self.leaf(
            common_name,
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        )
    }

    /// A client certificate signed by this CA.
    pub fn client(&self, common_name: &str) -> Pair {
        self.leaf(common_name, vec![format!("{common_name}.example.com")])
    }

    fn leaf(&self, common_name: &str, names: Vec<String>) -> Pair {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// The exporter's HTTP server, in this process; stops when dropped.
pub struct Server {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(web_config: Option<&Path>, limits: Limits) -> Server {
        let web = match web_config {
            Some(path) => WatchedConfig::load(path).unwrap(),
            None => WatchedConfig::open(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(ServerState {
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(true),
            interfaces: Vec::new(),
            source: "test".to_owned(),
            sessions: Arc::new(SessionLog::new(RingSizes {
                per_verdict: 10,
                accepted: 10,
            })),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, state, web, limits, async move {
            let _ = stopped.await;
        }));
        Server {
            address,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops accepting and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What an HTTP exchange ended with.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header lines, lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a client talks TLS: the CA it trusts, its own certificate, versions.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<rustls::ClientConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsClient {
    pub fn new(
        trusted_ca: &str,
        identity: Option<&Pair>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(trusted_ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some(pair) => {
                let chain = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        TlsClient {
            config: Arc::new(config),
        }
    }

    pub fn any_version(trusted_ca: &str, identity: Option<&Pair>) -> TlsClient {
        TlsClient::new(trusted_ca, identity, rustls::ALL_VERSIONS)
    }
}

/// `GET path` with optional basic credentials, on a new connection.
pub fn get(path: &str, credentials: Option<(&str, &str)>) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some((user, password)) = credentials {
        use base64::Engine;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Sends `request` on a new connection (TLS when `tls` is given) and reads
/// the answer to the end. An error: refused, handshake failed, or closed
/// without an answer.
pub async fn exchange(
    address: SocketAddr,
    tls: Option<&TlsClient>,
    request: &str,
) -> Result<Answer, String> {
    let fut = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match tls {
            None => talk(stream, request).await,
            Some(client) => {
                let connector = tokio_rustls::TlsConnector::from(client.config.clone());
                let name = ServerName::try_from("localhost").unwrap();
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                talk(stream, request).await
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| "no answer in 30s".to_owned())?
}

/// Writes the request while reading the answer: a server may answer (431)
/// and close before a long request is all written, and that answer counts.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    request: &str,
) -> Result<Answer, String> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async { writer.write_all(request.as_bytes()).await };
    let read = async {
        let mut bytes = Vec::new();
        let result = reader.read_to_end(&mut bytes).await;
        (bytes, result)
    };
    let (written, (bytes, read)) = tokio::join!(write, read);
    if bytes.is_empty() {
        if let Err(error) = written {
            return Err(format!("write: {error}"));
        }
        if let Err(error) = read {
            return Err(format!("read: {error}"));
        }
    }
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("closed without an answer ({} bytes)", bytes.len()))?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// The certificate the server presents to a new TLS connection (DER).
pub async fn served_certificate(
    address: SocketAddr,
    client: &TlsClient,
) -> Result<Vec<u8>, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(client.config.clone());
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
    Ok(chain.first().map(|c| c.to_vec()).unwrap_or_default())
}

/// The DER of the first certificate of a PEM text.
pub fn der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Whether the server closes `stream` (EOF or reset) within `within`.
pub async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}
