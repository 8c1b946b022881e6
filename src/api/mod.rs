//! The drill-down HTTP API and the landing page that reads it:
//! `GET /api/v1/sessions` (the most recently decided sessions),
//! `GET /api/v1/interfaces` (per interface its name and the verdict counts
//! of the last hour) and `GET /` (a small live page over both).
//!
//! `server.rs` routes here; the handlers take what they read and return a
//! whole response, so they are tested without a socket.

pub mod sessions;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub use sessions::{DecidedSession, ProofSource, Recorded, RingSizes, SessionLog, SessionQuery};

use crate::flow::VerdictCounts;

/// The landing page: HTML, CSS and JS in one file, nothing fetched from elsewhere.
const LANDING_PAGE: &str = include_str!("landing.html");

/// What the API reads besides the sessions.
pub struct ApiView<'a> {
    pub sessions: &'a SessionLog,
    /// Interfaces and their names, as far as they are known.
    pub interfaces: &'a [(String, Option<String>)],
    /// One line describing the source.
    pub source: &'a str,
}

impl crate::server::ServerState {
    pub fn api_view(&self) -> ApiView<'_> {
        ApiView {
            sessions: &self.sessions,
            interfaces: &self.interfaces,
            source: &self.source,
        }
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `GET /api/v1/sessions?interface=&verdict=&address=&port=&limit=`.
pub fn sessions(view: &ApiView<'_>, query: Option<&str>) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct Body<'a> {
        sessions: Vec<&'a DecidedSession>,
    }
    match SessionQuery::parse(query) {
        Ok(query) => {
            let found = view.sessions.query(&query);
            json(&Body {
                sessions: found.iter().map(|session| &**session).collect(),
            })
        }
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

/// `GET /api/v1/interfaces`: every interface known by configuration or
/// seen in the last hour, with its name and verdict counts of the last hour.
pub fn interfaces(view: &ApiView<'_>, query: Option<&str>) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct Interface<'a> {
        interface_id: &'a str,
        name: Option<&'a str>,
        last_hour: VerdictCounts,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        source: &'a str,
        now: u64,
        interfaces: Vec<Interface<'a>>,
    }
    if let Some(query) = query.filter(|query| !query.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("this endpoint takes no parameters, got {query:?}"),
        );
    }
    let now = now_seconds();
    let counted = view.sessions.last_hour(now);
    let learned = view.sessions.names();
    let name_of = |id: &str| {
        view.interfaces
            .iter()
            .find(|(known, _)| known == id)
            .and_then(|(_, name)| name.as_deref())
            .or_else(|| learned.get(id).map(String::as_str))
    };
    let mut interfaces: Vec<Interface<'_>> = counted
        .iter()
        .map(|(id, counts)| Interface {
            interface_id: id,
            name: name_of(id),
            last_hour: *counts,
        })
        .collect();
    for (id, _) in view.interfaces {
        if !counted.iter().any(|(counted, _)| counted == id) {
            interfaces.push(Interface {
                interface_id: id,
                name: name_of(id),
                last_hour: VerdictCounts::default(),
            });
        }
    }
    interfaces.sort_by(|a, b| a.interface_id.cmp(b.interface_id));
    json(&Body {
        source: view.source,
        now,
        interfaces,
    })
}

/// `GET /`: the page, with the source named for readers without JavaScript.
pub fn landing_page(view: &ApiView<'_>) -> Response<Full<Bytes>> {
    let page = LANDING_PAGE.replace("__SOURCE__", &escape(view.source));
    let mut response = Response::new(Full::new(Bytes::from(page)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn json(body: &impl Serialize) -> Response<Full<Bytes>> {
    let text = serde_json::to_vec(body).expect("API bodies always serialize");
    let mut response = Response::new(Full::new(Bytes::from(text)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a str,
    }
    let mut response = json(&Body { error: message });
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests;
