//! What protects the HTTP endpoints: the Prometheus exporter-toolkit web
//! configuration (`--web.config.file`: TLS, client certificates, basic
//! authentication, response headers), re-read when it changes, and the
//! connection limits that hold with and without TLS.
//!
//! `config` reads and validates the file into a [`WebConfig`]; `tls` turns
//! its `tls_server_config` into a rustls server configuration; `auth`
//! checks `Authorization` headers against bcrypt hashes; `reload` notices
//! changed files and keeps the last good configuration; `limits` times
//! connections out. `crate::server` puts them in front of the routes.

pub mod auth;
pub mod config;
pub mod limits;
pub mod reload;
pub mod tls;

pub use config::{WebConfig, WebConfigError, load};
pub use limits::Limits;
pub use reload::WatchedConfig;
