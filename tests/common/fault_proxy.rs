//! A fault-injecting HTTP proxy between the exporter and moto, on loopback:
//! CloudWatch Logs as AWS really behaves when it is not having a good day.
//!
//! [`FaultProxy::start`] forwards every request to the upstream (moto) on a
//! thread of its own; [`FaultProxy::set`] arms a [`Fault`] for one
//! operation (`X-Amz-Target`, e.g. `FilterLogEvents`) or for all, and
//! [`FaultProxy::clear`] disarms it. [`FaultProxy::set_page_limit`] adds a
//! `limit` to every `FilterLogEvents` request, so that a handful of events
//! make a paging run (moto pages 10,000 events otherwise).
//! [`FaultProxy::arrivals`] lists every request as it arrived: when, its
//! operation, the region it was signed for and, for STS AssumeRole, the
//! role (for tests that count calls per second or per role).
//!
//! The faults answer as AWS does: throttling (of every request, or of
//! every n-th) is HTTP 400 with a `ThrottlingException` JSON body, an expired token is HTTP 400
//! `InvalidParameterException`, server faults are 500 `InternalFailure` /
//! 503 `ServiceUnavailableException`; empty pages still carry a
//! `nextToken` (the proxy wraps moto's tokens and unwraps them on the way
//! back); a dropped connection sends the headers and half the body, then
//! closes; a truncated answer is a 200 whose body stops half way.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

/// Prefix of the tokens the proxy puts on its own empty pages.
const EMPTY_TOKEN: &str = "fault-proxy-empty:";

/// What the proxy does to the requests a fault applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 400 `ThrottlingException`, as CloudWatch Logs sends it.
    Throttle,
    /// [`Fault::Throttle`] for every n-th request of the operation (counted
    /// from the proxy's start), the others forwarded: a service that
    /// throttles a share of the calls.
    ThrottleEvery(u64),
    /// HTTP 500 `InternalFailure` or 503 `ServiceUnavailableException`.
    Status(u16),
    /// The answer, after this long (longer than the attempt timeout).
    Slow(Duration),
    /// The status, the headers and half the body; then the connection closes.
    DropMidAnswer,
    /// HTTP 200 whose body (and `Content-Length`) stops half way.
    Truncated,
    /// The connection closes without an answer: the service is unreachable.
    Outage,
    /// `FilterLogEvents`: this many empty pages with a `nextToken` before
    /// every page of events (and before the first).
    EmptyPages(usize),
    /// HTTP 403 `UnauthorizedOperation` in EC2's XML, as EC2 answers a
    /// role without the permission.
    Ec2Denied,
    /// The upstream's answer with every `from` replaced by `to` (what moto
    /// cannot make, e.g. an interface type only AWS creates).
    Rewrite(&'static str, &'static str),
    /// The first this-many requests are answered at once, every later one
    /// only after the delay: a poll stopped part way through its pages,
    /// at a page the test chooses (e.g. to kill the exporter there).
    StallAfter(usize, Duration),
    /// `FilterLogEvents`: the next this-many requests that carry a
    /// `nextToken` get `InvalidParameterException` (expired token); the
    /// fault then disarms itself.
    ExpireTokens(usize),
}

/// One request as it reached the proxy.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When its headers arrived.
    pub at: Instant,
    /// `FilterLogEvents`, `AssumeRole`, `DescribeNetworkInterfaces`, ….
    pub operation: String,
    /// The region of its SigV4 signature (`Credential=KEY/DATE/REGION/…`).
    pub region: String,
    /// `RoleArn` of an STS form (AssumeRole).
    pub role_arn: Option<String>,
}

impl Arrival {
    /// A CloudWatch Logs call (JSON protocol, `Logs_20140328.*`), as counted
    /// against the account-region's request quota.
    pub fn is_logs(&self) -> bool {
        matches!(
            self.operation.as_str(),
            "FilterLogEvents" | "DescribeLogStreams" | "GetLogEvents" | "DescribeLogGroups"
        )
    }
}

#[derive(Default)]
struct State {
    /// The armed fault and the operation it applies to (`None`: every one).
    fault: Option<(Fault, Option<String>)>,
    page_limit: Option<u64>,
    /// Requests seen, by operation.
    requests: HashMap<String, u64>,
    /// Faults injected, by operation.
    injected: HashMap<String, u64>,
    /// Every request, in arrival order.
    arrivals: Vec<Arrival>,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream as http://IP:PORT");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| handle(req, upstream, state.clone()));
                    // Errors are the faults themselves (dropped answers).
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            address,
            state,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:PORT`: the exporter's `cloudwatch.endpoint_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Arms `fault` for `operation` (`Some("FilterLogEvents")`) or for all.
    pub fn set(&self, fault: Fault, operation: Option<&str>) {
        self.state.lock().unwrap().fault = Some((fault, operation.map(str::to_owned)));
    }

    /// Forwards everything unchanged from now on.
    pub fn clear(&self) {
        self.state.lock().unwrap().fault = None;
    }

    /// Adds `limit` to every `FilterLogEvents` request.
    pub fn set_page_limit(&self, limit: Option<u64>) {
        self.state.lock().unwrap().page_limit = limit;
    }

    /// Requests of `operation` seen so far.
    pub fn requests(&self, operation: &str) -> u64 {
        let state = self.state.lock().unwrap();
        state.requests.get(operation).copied().unwrap_or(0)
    }

    /// Every request so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state.lock().unwrap().arrivals.clone()
    }

    /// Faults injected into requests of `operation` so far.
    pub fn injected(&self, operation: &str) -> u64 {
        let state = self.state.lock().unwrap();
        state.injected.get(operation).copied().unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A body that sends one chunk, then fails: hyper then closes the
/// connection before the promised `Content-Length`.
struct Dropping(Option<Bytes>);

impl Body for Dropping {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(match self.0.take() {
            Some(part) => Ok(Frame::data(part)),
            None => Err(std::io::Error::other("fault proxy: connection dropped")),
        }))
    }
}

type ProxyBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// An AWS JSON-protocol error answer.
fn aws_error(status: u16, kind: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "__type": kind, "message": message }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "00000000-0000-0000-0000-fau1tpr0xy00")
        .body(full(body))
        .expect("error response")
}

fn json_response(value: &Value) -> Response<ProxyBody> {
    Response::builder()
        .status(200)
        .header("content-type", "application/x-amz-json-1.1")
        .body(full(value.to_string()))
        .expect("json response")
}

async fn handle(
    req: Request<Incoming>,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let at = Instant::now();
    // `AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, …`
    let region = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|scope| scope.split('/').nth(2))
        .unwrap_or("")
        .to_owned();
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_owned);
    let (parts, body) = req.into_parts();
    let mut body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    // JSON protocols name the operation in X-Amz-Target; EC2's query
    // protocol in the form's `Action`.
    let operation = target.unwrap_or_else(|| {
        String::from_utf8_lossy(&body)
            .split('&')
            .find_map(|pair| pair.strip_prefix("Action="))
            .unwrap_or("")
            .to_owned()
    });
    let is_filter = operation == "FilterLogEvents";
    let role_arn = form_urlencoded::parse(&body)
        .find(|(key, _)| key == "RoleArn")
        .map(|(_, arn)| arn.into_owned());

    let (fault, page_limit) = {
        let mut s = state.lock().unwrap();
        let nth = {
            let seen = s.requests.entry(operation.clone()).or_default();
            *seen += 1;
            *seen
        };
        s.arrivals.push(Arrival {
            at,
            operation: operation.clone(),
            region,
            role_arn,
        });
        let applies = |op: &Option<String>| op.as_deref().is_none_or(|op| op == operation);
        let fault = match &s.fault {
            Some((Fault::ThrottleEvery(n), op)) if applies(op) => {
                (*n > 0 && nth % n == 0).then_some(Fault::Throttle)
            }
            Some((fault, op)) if applies(op) => Some(fault.clone()),
            _ => None,
        };
        (fault, s.page_limit)
    };
    let count = |state: &Arc<Mutex<State>>| {
        *state
            .lock()
            .unwrap()
            .injected
            .entry(operation.clone())
            .or_default() += 1;
    };

    // The request as JSON, for the paging faults and the page limit.
    let mut request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut empty_served = None;
    if is_filter {
        if let Some(limit) = page_limit {
            request["limit"] = limit.into();
        }
        let token = request["nextToken"].as_str().map(str::to_owned);
        match (&fault, token) {
            (Some(Fault::ExpireTokens(_)), Some(token)) if !token.starts_with(EMPTY_TOKEN) => {
                {
                    let mut s = state.lock().unwrap();
                    if let Some((Fault::ExpireTokens(left), _)) = &mut s.fault {
                        *left -= 1;
                        if *left == 0 {
                            s.fault = None;
                        }
                    }
                }
                count(&state);
                return Ok(aws_error(
                    400,
                    "InvalidParameterException",
                    "The specified nextToken has expired.",
                ));
            }
            (Some(Fault::EmptyPages(n)), token) => {
                let (served, inner) =
                    match token.as_deref().and_then(|t| t.strip_prefix(EMPTY_TOKEN)) {
                        Some(rest) => {
                            let (served, inner) = rest.split_once(':').expect("our token");
                            (
                                served.parse::<usize>().expect("our token"),
                                inner.to_owned(),
                            )
                        }
                        None => (0, token.unwrap_or_default()),
                    };
                if served < *n {
                    count(&state);
                    let next = format!("{EMPTY_TOKEN}{}:{inner}", served + 1);
                    return Ok(json_response(&serde_json::json!({
                        "events": [],
                        "searchedLogStreams": [],
                        "nextToken": next,
                    })));
                }
                if inner.is_empty() {
                    request.as_object_mut().map(|o| o.remove("nextToken"));
                } else {
                    request["nextToken"] = inner.into();
                }
                empty_served = Some(());
            }
            _ => {}
        }
        if request.is_object() {
            body = Bytes::from(request.to_string());
        }
    }

    match &fault {
        Some(Fault::Throttle) => {
            count(&state);
            return Ok(aws_error(400, "ThrottlingException", "Rate exceeded"));
        }
        Some(Fault::Status(500)) => {
            count(&state);
            return Ok(aws_error(500, "InternalFailure", "Internal failure"));
        }
        Some(Fault::Status(status)) => {
            count(&state);
            return Ok(aws_error(
                *status,
                "ServiceUnavailableException",
                "Service unavailable",
            ));
        }
        Some(Fault::Outage) => {
            count(&state);
            return Err(std::io::Error::other("fault proxy: outage"));
        }
        Some(Fault::Ec2Denied) => {
            count(&state);
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
                <Code>UnauthorizedOperation</Code>\
                <Message>You are not authorized to perform this operation.</Message>\
                </Error></Errors><RequestID>fau1tpr0xy</RequestID></Response>";
            return Ok(Response::builder()
                .status(403)
                .header("content-type", "text/xml;charset=UTF-8")
                .body(full(body.to_owned()))
                .expect("error response"));
        }
        Some(Fault::Slow(delay)) => {
            count(&state);
            tokio::time::sleep(*delay).await;
        }
        Some(Fault::StallAfter(_, delay)) => {
            let stall = {
                let mut s = state.lock().unwrap();
                match &mut s.fault {
                    Some((Fault::StallAfter(left, _), _)) if *left > 0 => {
                        *left -= 1;
                        false
                    }
                    _ => true,
                }
            };
            if stall {
                count(&state);
                tokio::time::sleep(*delay).await;
            }
        }
        _ => {}
    }

    let (status, headers, answer) = forward(upstream, parts, body).await?;
    let mut answer = answer;
    if let Some(Fault::Rewrite(from, to)) = &fault {
        count(&state);
        answer = Bytes::from(String::from_utf8_lossy(&answer).replace(from, to));
    }
    if empty_served.is_some() && status == StatusCode::OK {
        // moto's token, wrapped, so that its next page is empty again.
        let mut value: Value = serde_json::from_slice(&answer).map_err(std::io::Error::other)?;
        if let Some(token) = value["nextToken"].as_str().map(str::to_owned) {
            value["nextToken"] = format!("{EMPTY_TOKEN}0:{token}").into();
        }
        answer = Bytes::from(value.to_string());
    }
    let mut builder = Response::builder().status(status);
    for (name, value) in headers.iter() {
        if name != CONTENT_LENGTH && name != "transfer-encoding" {
            builder = builder.header(name, value);
        }
    }
    let response = match &fault {
        Some(Fault::DropMidAnswer) => {
            count(&state);
            let half = answer.slice(..answer.len() / 2);
            builder
                .header(CONTENT_LENGTH, HeaderValue::from(answer.len()))
                .body(Dropping(Some(half)).boxed())
        }
        Some(Fault::Truncated) => {
            count(&state);
            let half = answer.slice(..answer.len() / 2);
            builder
                .header(CONTENT_LENGTH, HeaderValue::from(half.len()))
                .body(full(half))
        }
        _ => builder
            .header(CONTENT_LENGTH, HeaderValue::from(answer.len()))
            .body(full(answer)),
    };
    Ok(response.expect("proxied response"))
}

/// Sends the request upstream on a fresh connection; the whole answer.
async fn forward(
    upstream: SocketAddr,
    mut parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), std::io::Error> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    parts.headers.remove("transfer-encoding");
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let request = Request::from_parts(parts, Full::new(body));
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((parts.status, parts.headers, bytes))
}
