//! State that outlives the process: one JSON file per piece of state (a
//! CloudWatch log group's poller and core; the S3 source's dedup memory),
//! written atomically and read back only when it is certainly ours.
//!
//! A file is an envelope: `version` (of the state's meaning, given by its
//! owner), `fingerprint` (of the configuration the state belongs to, e.g.
//! log group and format: a state from other settings must not be resumed),
//! `written_at` (Unix seconds) and `state`. Writing goes to a temporary
//! file in the same directory, which is fsynced, renamed over the old file,
//! and the directory fsynced: after a crash at any moment the file is the
//! old state or the new one, never a mix. Reading tells a missing file, a
//! corrupt one, and an incompatible one (other version or fingerprint)
//! apart; the caller counts and logs which, and starts afresh — a bad state
//! file is never a reason not to start.

use std::fs::{self, File};
use std::hash::Hasher;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use siphasher::sip128::{Hasher128, SipHasher13};

/// Names the file's kind, so that a stray JSON file is not taken for state.
const MAGIC: &str = "vpc-flow-exporter state";

/// One state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    version: u32,
    fingerprint: String,
}

/// What [`StateFile::load`] found.
#[derive(Debug)]
pub enum Loaded<T> {
    /// No file: nothing was checkpointed yet.
    Missing,
    Restored {
        state: T,
        /// Unix seconds when it was written.
        written_at: u64,
    },
    /// Unreadable, not JSON, or not a state file.
    Corrupt(String),
    /// Another format version or another configuration.
    Incompatible(String),
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    magic: &'static str,
    version: u32,
    fingerprint: &'a str,
    written_at: u64,
    state: &'a T,
}

/// The envelope without its state, read first so that an incompatible file
/// is told from a corrupt one.
#[derive(Deserialize)]
struct Header {
    magic: String,
    version: u32,
    fingerprint: String,
}

#[derive(Deserialize)]
struct EnvelopeIn<T> {
    written_at: u64,
    state: T,
}

impl StateFile {
    /// The file `name` (e.g. `cloudwatch-<hash>.json`) in `directory`.
    pub fn new(directory: &Path, name: &str, version: u32, fingerprint: String) -> StateFile {
        StateFile {
            path: directory.join(name),
            version,
            fingerprint,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state, if the file is there, intact and ours.
    pub fn load<T: DeserializeOwned>(&self) -> Loaded<T> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
            Err(err) => return Loaded::Corrupt(format!("cannot read: {err}")),
        };
        let header: Header = match serde_json::from_slice(&bytes) {
            Ok(header) => header,
            Err(err) => return Loaded::Corrupt(format!("not a state file: {err}")),
        };
        if header.magic != MAGIC {
            return Loaded::Corrupt(format!("not a state file (magic {:?})", header.magic));
        }
        if header.version != self.version {
            return Loaded::Incompatible(format!(
                "format version {}, this exporter writes {}",
                header.version, self.version
            ));
        }
        if header.fingerprint != self.fingerprint {
            return Loaded::Incompatible(
                "written for another configuration (log groups, formats or shard differ)".into(),
            );
        }
        match serde_json::from_slice::<EnvelopeIn<T>>(&bytes) {
            Ok(envelope) => Loaded::Restored {
                state: envelope.state,
                written_at: envelope.written_at,
            },
            Err(err) => Loaded::Corrupt(format!("state does not parse: {err}")),
        }
    }

    /// Writes `state` atomically (see the module documentation).
    pub fn store<T: Serialize>(&self, state: &T, written_at: u64) -> io::Result<()> {
        let directory = self.path.parent().unwrap_or(Path::new("."));
        let envelope = EnvelopeOut {
            magic: MAGIC,
            version: self.version,
            fingerprint: &self.fingerprint,
            written_at,
            state,
        };
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = directory.join(format!(".{file_name}.tmp"));
        {
            // Streamed: a checkpoint of a million sessions is never a
            // buffer of its own in memory.
            let mut file = io::BufWriter::with_capacity(1 << 16, File::create(&temporary)?);
            serde_json::to_writer(&mut file, &envelope).map_err(io::Error::other)?;
            file.into_inner().map_err(io::Error::from)?.sync_all()?;
        }
        fs::rename(&temporary, &self.path)?;
        // The rename itself is durable only once the directory is.
        File::open(directory)?.sync_all()
    }
}

/// A short stable hash of `parts` (hex), for file names and fingerprints:
/// SipHash-1-3 with fixed keys, the same in every build.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = SipHasher13::new();
    for part in parts {
        hasher.write(&(part.len() as u64).to_le_bytes());
        hasher.write(part.as_bytes());
    }
    format!("{:032x}", hasher.finish128().as_u128())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Example {
        covered_to: i64,
        seen: Vec<u128>,
    }

    fn example() -> Example {
        Example {
            covered_to: 1_700_000_000_000,
            seen: vec![u128::MAX, 7],
        }
    }

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), "a.json", 1, fingerprint(&["g", "auto"]));
        assert!(matches!(file.load::<Example>(), Loaded::Missing));
        file.store(&example(), 42).unwrap();
        match file.load::<Example>() {
            Loaded::Restored { state, written_at } => {
                assert_eq!(state, example());
                assert_eq!(written_at, 42);
            }
            other => panic!("{other:?}"),
        }
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json"], "no temporary file left");
    }

    #[test]
    fn corrupt_and_incompatible_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), "a.json", 2, fingerprint(&["g"]));
        fs::write(file.path(), b"{\"magic\": \"vpc-flow-exp").unwrap();
        assert!(matches!(file.load::<Example>(), Loaded::Corrupt(_)));
        fs::write(file.path(), b"{\"hello\": 1}").unwrap();
        assert!(matches!(file.load::<Example>(), Loaded::Corrupt(_)));

        StateFile::new(dir.path(), "a.json", 1, fingerprint(&["g"]))
            .store(&example(), 1)
            .unwrap();
        let Loaded::Incompatible(why) = file.load::<Example>() else {
            panic!("older version")
        };
        assert!(why.contains("version 1"), "{why}");
        StateFile::new(dir.path(), "a.json", 2, fingerprint(&["other group"]))
            .store(&example(), 1)
            .unwrap();
        assert!(matches!(file.load::<Example>(), Loaded::Incompatible(_)));

        // Ours, but the state inside has another shape.
        StateFile::new(dir.path(), "a.json", 2, fingerprint(&["g"]))
            .store(&"a string", 1)
            .unwrap();
        assert!(matches!(file.load::<Example>(), Loaded::Corrupt(_)));
    }

    #[test]
    fn a_failed_write_leaves_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), "a.json", 1, fingerprint(&["g"]));
        file.store(&example(), 1).unwrap();
        let missing = StateFile::new(&dir.path().join("gone"), "a.json", 1, fingerprint(&["g"]));
        assert!(missing.store(&example(), 2).is_err());
        assert!(matches!(
            file.load::<Example>(),
            Loaded::Restored { written_at: 1, .. }
        ));
    }

    #[test]
    fn fingerprints_are_stable_and_separate_their_parts() {
        assert_eq!(fingerprint(&["ab", "c"]), fingerprint(&["ab", "c"]));
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        // Fixed here so that a change of algorithm (which would orphan every
        // state file) cannot pass unnoticed.
        assert_eq!(
            fingerprint(&["/vpc/flow-logs"]),
            "edeac1adc8db270734d027f9e8b18a7a"
        );
    }
}
