//! Re-reads the web configuration when it or a file it names changes, so
//! certificates rotate without a restart: every new connection takes the
//! configuration current when it is accepted. A change that does not load
//! is logged and the last good configuration stays in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use super::config::{self, WebConfig, WebConfigError};

/// How often the files are looked at (a `stat` each; nothing is read
/// unless one changed).
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a file looked like: modified time and length, `None` if missing.
type Stamp = (PathBuf, Option<(SystemTime, u64)>);

/// The web configuration in force, and the file it came from.
#[derive(Debug)]
pub struct WatchedConfig {
    path: Option<PathBuf>,
    current: RwLock<Arc<WebConfig>>,
    stamps: Mutex<Vec<Stamp>>,
}

fn stamp(paths: &[PathBuf]) -> Vec<Stamp> {
    paths
        .iter()
        .map(|path| {
            let seen = std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (path.clone(), seen)
        })
        .collect()
}

impl WatchedConfig {
    /// No `--web.config.file`: plain HTTP, no authentication, nothing to watch.
    pub fn open() -> Arc<Self> {
        Arc::new(WatchedConfig {
            path: None,
            current: RwLock::new(Arc::new(WebConfig::open())),
            stamps: Mutex::new(Vec::new()),
        })
    }

    /// Loads `path` (an error if it does not load) and watches it.
    pub fn load(path: &Path) -> Result<Arc<Self>, WebConfigError> {
        let loaded = config::load(path)?;
        let stamps = stamp(&loaded.files);
        Ok(Arc::new(WatchedConfig {
            path: Some(path.to_owned()),
            current: RwLock::new(Arc::new(loaded)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<WebConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads if a watched file changed; blocking (file system). Returns
    /// whether a new configuration is in force.
    pub fn refresh(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        let paths: Vec<PathBuf> = stamps.iter().map(|(p, _)| p.clone()).collect();
        let now = stamp(&paths);
        if now == *stamps {
            return false;
        }
        *stamps = now;
        match config::load(path) {
            Ok(loaded) => {
                *stamps = stamp(&loaded.files);
                tracing::info!(file = %path.display(), tls = loaded.tls.is_some(), "Web configuration reloaded");
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
                true
            }
            Err(error) => {
                tracing::error!(%error, "Web configuration not reloaded; the last good one stays in force");
                false
            }
        }
    }

    /// Looks for changes every [`RELOAD_CHECK_INTERVAL`] until dropped.
    pub async fn watch(self: Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        let mut ticks = tokio::time::interval(RELOAD_CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let watched = self.clone();
            if tokio::task::spawn_blocking(move || watched.refresh())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
