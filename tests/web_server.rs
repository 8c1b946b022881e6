//! The exporter's HTTP server, live on a free loopback port, with the
//! web configuration and limits in front: basic authentication, client
//! certificates, TLS versions, certificates rotated on disk, response
//! headers, slow and idle clients (plain and TLS), 1,000 slow clients
//! beside a scrape, the connection limit, 431 and 405.

mod web_support;

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use vpc_flow_exporter::web::Limits;
use web_support::{
    Ca, Server, TlsClient, closed_within, der, exchange, get, served_certificate, write,
};

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-secret";

/// A folder with a CA, a server certificate and `web.yml` made of `yaml`.
struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Setup {
    fn new(yaml: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("exporter CA");
        let server = ca.server("first");
        write(dir.path(), "ca.crt", &ca.pem());
        write(dir.path(), "server.crt", &server.cert);
        write(dir.path(), "server.key", &server.key);
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        write(dir.path(), "web.yml", &yaml.replace("HASH", &hash));
        Setup { dir, ca }
    }

    fn web_yml(&self) -> std::path::PathBuf {
        self.dir.path().join("web.yml")
    }

    fn client(&self) -> TlsClient {
        TlsClient::any_version(&self.ca.pem(), None)
    }
}

fn quick(header_read_timeout: Duration, idle_timeout: Duration, max_connections: usize) -> Limits {
    Limits {
        header_read_timeout,
        idle_timeout,
        max_connections,
    }
}

const TLS_AND_USERS: &str = "\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  prometheus: HASH
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_over_tls_lets_only_the_right_password_in() {
    let setup = Setup::new(TLS_AND_USERS);
    let server = Server::start(Some(&setup.web_yml()), Limits::default()).await;
    let tls = setup.client();
    let ask = |credentials| {
        let tls = tls.clone();
        let address = server.address;
        async move {
            exchange(address, Some(&tls), &get("/metrics", credentials))
                .await
                .unwrap()
        }
    };

    let anonymous = ask(None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Basic"));
    assert_eq!(anonymous.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(ask(Some((USER, "wrong"))).await.status, 401);
    assert_eq!(ask(Some(("nobody", PASSWORD))).await.status, 401);
    let right = ask(Some((USER, PASSWORD))).await;
    assert_eq!(right.status, 200);
    assert!(right.body.contains("vpcflow_"), "{}", right.body);
    assert_eq!(right.header("x-content-type-options"), Some("nosniff"));

    // Plain HTTP to a TLS port gets no metrics.
    assert!(
        exchange(
            server.address,
            None,
            &get("/metrics", Some((USER, PASSWORD)))
        )
        .await
        .is_err_and(|e| !e.contains("200"))
    );
    server.stop().await;
}

const CLIENT_CERTS: &str = "\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_required_and_verified() {
    let setup = Setup::new(CLIENT_CERTS);
    let server = Server::start(Some(&setup.web_yml()), Limits::default()).await;
    let signed = setup.ca.client("prometheus");
    let stranger_ca = Ca::new("someone else");
    let stranger = stranger_ca.client("prometheus");

    let with =
        |identity: Option<&web_support::Pair>| TlsClient::any_version(&setup.ca.pem(), identity);
    let answer = exchange(
        server.address,
        Some(&with(Some(&signed))),
        &get("/metrics", None),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    let none = exchange(server.address, Some(&with(None)), &get("/metrics", None)).await;
    assert!(none.is_err(), "no certificate: {none:?}");
    let other = exchange(
        server.address,
        Some(&with(Some(&stranger))),
        &get("/metrics", None),
    )
    .await;
    assert!(other.is_err(), "another CA's certificate: {other:?}");
    // Probes too: nothing is open unless the config says so.
    let probe = exchange(server.address, Some(&with(None)), &get("/healthz", None)).await;
    assert!(probe.is_err(), "{probe:?}");
    server.stop().await;
}

const PROBES_OPEN: &str = "\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
basic_auth_users:
  prometheus: HASH
auth_excluded_paths:
  - /healthz
  - /ready
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_excluded_paths_answer_probes_and_nothing_else() {
    let setup = Setup::new(PROBES_OPEN);
    let server = Server::start(Some(&setup.web_yml()), Limits::default()).await;
    let signed = setup.ca.client("prometheus");
    let stranger = Ca::new("someone else").client("prometheus");
    let anonymous = setup.client();
    let with_cert = TlsClient::any_version(&setup.ca.pem(), Some(&signed));
    let with_stranger = TlsClient::any_version(&setup.ca.pem(), Some(&stranger));

    // A probe: TLS without certificate or password (kubelet's httpGet, curl -k).
    for path in ["/healthz", "/ready"] {
        let answer = exchange(server.address, Some(&anonymous), &get(path, None))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{path}");
    }
    let metrics = exchange(
        server.address,
        Some(&anonymous),
        &get("/metrics", Some((USER, PASSWORD))),
    )
    .await
    .unwrap();
    assert_eq!(metrics.status, 403, "a password without a certificate");
    let no_password = exchange(server.address, Some(&with_cert), &get("/metrics", None))
        .await
        .unwrap();
    assert_eq!(no_password.status, 401, "a certificate without a password");
    let both = exchange(
        server.address,
        Some(&with_cert),
        &get("/metrics", Some((USER, PASSWORD))),
    )
    .await
    .unwrap();
    assert_eq!(both.status, 200);
    // A certificate that is presented is still verified in the handshake.
    assert!(
        exchange(server.address, Some(&with_stranger), &get("/healthz", None))
            .await
            .is_err()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_is_honoured() {
    let setup = Setup::new(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n",
    );
    let server = Server::start(Some(&setup.web_yml()), Limits::default()).await;
    let tls12 = TlsClient::new(&setup.ca.pem(), None, &[&rustls::version::TLS12]);
    let tls13 = TlsClient::new(&setup.ca.pem(), None, &[&rustls::version::TLS13]);
    let old = exchange(server.address, Some(&tls12), &get("/healthz", None)).await;
    assert!(
        old.as_ref().is_err_and(|e| e.contains("TLS handshake")),
        "{old:?}"
    );
    let answer = exchange(server.address, Some(&tls13), &get("/healthz", None))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    server.stop().await;

    let setup = Setup::new(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS12\n",
    );
    let server = Server::start(Some(&setup.web_yml()), Limits::default()).await;
    let tls13 = TlsClient::new(&setup.ca.pem(), None, &[&rustls::version::TLS13]);
    assert!(
        exchange(server.address, Some(&tls13), &get("/healthz", None))
            .await
            .is_err()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_to_new_connections() {
    let setup = Setup::new("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let server = Server::start(Some(&setup.web_yml()), Limits::default()).await;
    let client = setup.client();
    let first = std::fs::read_to_string(setup.dir.path().join("server.crt")).unwrap();
    assert_eq!(
        served_certificate(server.address, &client).await.unwrap(),
        der(&first)
    );

    let renewed = setup.ca.server("renewed");
    // Key first, then certificate: between the two, the pair does not
    // match, and the last good configuration must stay in force.
    write(setup.dir.path(), "server.key", &renewed.key);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        served_certificate(server.address, &client).await.unwrap(),
        der(&first)
    );
    write(setup.dir.path(), "server.crt", &renewed.cert);

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let served = served_certificate(server.address, &client).await.unwrap();
        if served == der(&renewed.cert) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_while_a_scrape_succeeds() {
    let limits = quick(Duration::from_secs(1), Duration::from_secs(60), 64);
    let setup = Setup::new("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let plain = Server::start(None, limits).await;
    let tls = Server::start(Some(&setup.web_yml()), limits).await;

    // Plain: half a request line, then nothing.
    let mut slow_plain = TcpStream::connect(plain.address).await.unwrap();
    slow_plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Plain: one header byte a while, never finishing.
    let mut trickle = TcpStream::connect(plain.address).await.unwrap();
    // TLS: TCP open, never a ClientHello.
    let mut silent_tls = TcpStream::connect(tls.address).await.unwrap();
    // TLS: half a ClientHello record header.
    let mut half_hello = TcpStream::connect(tls.address).await.unwrap();
    half_hello.write_all(&[0x16, 0x03, 0x01]).await.unwrap();

    let scrape = exchange(plain.address, None, &get("/metrics", None))
        .await
        .unwrap();
    assert_eq!(scrape.status, 200);
    let scrape = exchange(tls.address, Some(&setup.client()), &get("/metrics", None))
        .await
        .unwrap();
    assert_eq!(scrape.status, 200);

    let started = Instant::now();
    let trickling = async {
        for byte in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaa" {
            if trickle.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    trickling.await;
    let within = Duration::from_secs(5);
    assert!(
        closed_within(&mut slow_plain, within).await,
        "plain, half a request"
    );
    assert!(
        closed_within(&mut trickle, within).await,
        "plain, trickling headers"
    );
    assert!(
        closed_within(&mut silent_tls, within).await,
        "TLS, no ClientHello"
    );
    assert!(
        closed_within(&mut half_hello, within).await,
        "TLS, half a ClientHello"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    plain.stop().await;
    tls.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let limits = quick(Duration::from_secs(5), Duration::from_secs(1), 64);
    let server = Server::start(None, limits).await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // The answer comes, then the kept-alive connection sits idle and is closed.
    assert!(closed_within(&mut stream, Duration::from_secs(4)).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
    server.stop().await;
}

/// Holds `count` connections that never finish a request (plain: half a
/// request line; TLS: no ClientHello) and scrapes beside them.
async fn scrape_beside_slow_clients(tls: bool) {
    let setup = Setup::new("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let server = Server::start(tls.then(|| setup.web_yml()).as_deref(), Limits::default()).await;
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        if !tls {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\n")
                .await
                .unwrap();
        }
        slow.push(stream);
    }
    let client = setup.client();
    for _ in 0..5 {
        let answer = exchange(
            server.address,
            tls.then_some(&client),
            &get("/metrics", None),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
    }
    // They were held, not dropped, while the scrapes went through.
    let mut still_open = 0;
    for stream in &mut slow {
        if !closed_within(stream, Duration::from_millis(1)).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 1000);
    drop(slow);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_works_while_1000_slow_clients_hold_connections_plain() {
    scrape_beside_slow_clients(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_works_while_1000_slow_clients_hold_connections_tls() {
    scrape_beside_slow_clients(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_scrape_waits_for_a_free_slot() {
    let limits = quick(Duration::from_secs(1), Duration::from_secs(60), 2);
    let server = Server::start(None, limits).await;
    let _first = TcpStream::connect(server.address).await.unwrap();
    let _second = TcpStream::connect(server.address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let answer = exchange(server.address, None, &get("/metrics", None))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    // It was served once the silent two had been cut by the header timeout.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_headers_get_431_and_post_gets_405_with_and_without_tls() {
    let setup = Setup::new("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let plain = Server::start(None, Limits::default()).await;
    let tls = Server::start(Some(&setup.web_yml()), Limits::default()).await;
    let client = setup.client();
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let post =
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    for (address, tls) in [(plain.address, None), (tls.address, Some(&client))] {
        // Read while written: the answer comes before the request's end.
        // A reset can still beat the answer to the reader (the server
        // closes with the rest unread), so a few tries: every answer is a
        // 431, and one at least comes.
        let mut answered = 0;
        for _ in 0..3 {
            match exchange(address, tls, &huge).await {
                Ok(answer) => {
                    assert_eq!(answer.status, 431);
                    answered += 1;
                }
                Err(error) => assert!(
                    error.contains("write") || error.contains("reset"),
                    "{error}"
                ),
            }
        }
        assert!(answered >= 1, "no 431 in three tries");
        assert_eq!(exchange(address, tls, post).await.unwrap().status, 405);
    }
    plain.stop().await;
    tls.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_web_config_everything_is_open_over_plain_http() {
    let server = Server::start(None::<&Path>, Limits::default()).await;
    let answer = exchange(server.address, None, &get("/metrics", None))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("www-authenticate"), None);
    server.stop().await;
}
