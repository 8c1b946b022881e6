//! The S3 source's checkpoint (`[state]`): what was counted (the dedup
//! memory, [`Seen`]) and the core's open sessions, written before what they
//! counted is published and before the message is deleted. After `kill -9`
//! a redelivered message is then a duplicate, and a session whose request
//! was in one object and whose reply comes in the next is paired, neither
//! lost nor counted twice.
//!
//! Two files, both [`StateFile`]s fingerprinted with the queue: the
//! checkpoint proper (`s3-<queue>.json`: the core and the entries noted
//! since the last full copy), written at every commit, and the full copy
//! of the entries (`s3-<queue>-counted.json`), rewritten only when the
//! entries since it have grown ([`Seen::needs_full_copy`]), so a commit
//! costs kilobytes even with a million objects remembered. A crash between
//! the two writes leaves a checkpoint whose entries the new full copy
//! already holds: restoring both is then still exact.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::flow::{Pipeline, PipelineCheckpoint, PipelineCheckpointView};
use crate::metrics::{CheckpointOutcome, Metrics};
use crate::source::s3::Seen;
use crate::source::s3::seen::{self, Mark};
use crate::state::{self, Loaded, StateFile};

/// Version of the files' meaning: a file of another version is ignored
/// (counted `incompatible`).
const CHECKPOINT_VERSION: u32 = 1;

#[derive(Deserialize)]
struct SourceCheckpoint {
    pipeline: PipelineCheckpoint,
    /// [`seen::encode`]d entries noted since the full copy.
    counted_since: String,
}

/// [`SourceCheckpoint`] as it is written: the sessions from the live table.
#[derive(Serialize)]
struct SourceCheckpointOut<'a> {
    pipeline: PipelineCheckpointView<'a>,
    counted_since: String,
}

#[derive(Serialize, Deserialize)]
struct FullCopy {
    /// [`seen::encode`]d, every entry.
    counted: String,
}

/// Where the S3 source's state goes, and how far the full copy goes.
pub struct Checkpoints {
    file: StateFile,
    full_copy_file: StateFile,
    /// What the full copy on disk holds: everything inserted before it.
    full_copy: Mark,
}

impl Checkpoints {
    /// The files of the source reading `queue_url`, in `directory`.
    pub fn new(directory: &Path, queue_url: &str) -> Checkpoints {
        let name = &state::fingerprint(&[queue_url])[..16];
        let fingerprint = state::fingerprint(&["s3", queue_url]);
        Checkpoints {
            file: StateFile::new(
                directory,
                &format!("s3-{name}.json"),
                CHECKPOINT_VERSION,
                fingerprint.clone(),
            ),
            full_copy_file: StateFile::new(
                directory,
                &format!("s3-{name}-counted.json"),
                CHECKPOINT_VERSION,
                fingerprint,
            ),
            full_copy: Mark::default(),
        }
    }

    /// Reads both files into `pipeline` and `seen`. Whatever is wrong with
    /// a file is logged and counted, and what it held is started afresh.
    pub fn restore(&mut self, pipeline: &mut Pipeline, seen: &mut Seen, metrics: &Metrics) {
        if let Some(full_copy) = load::<FullCopy>(&self.full_copy_file, metrics, true) {
            match seen::decode(&full_copy.counted) {
                Some(entries) => seen.restore(entries),
                None => corrupt(&self.full_copy_file, metrics, "entries do not decode"),
            }
        }
        // The checkpoint's entries are those after the full copy: what the
        // next commit must write again until a new full copy holds them.
        self.full_copy = seen.mark();
        let Some(checkpoint) = load::<SourceCheckpoint>(&self.file, metrics, false) else {
            return;
        };
        let path = self.file.path().display();
        let Some(entries) = seen::decode(&checkpoint.counted_since) else {
            corrupt(&self.file, metrics, "entries do not decode");
            return;
        };
        seen.restore(entries);
        match pipeline.restore(checkpoint.pipeline) {
            Ok(()) => {
                metrics.state_checkpoint(CheckpointOutcome::Restored);
                tracing::info!(%path, remembered = seen.len(), "Resuming from the checkpoint");
            }
            Err(error) => {
                metrics.state_checkpoint(CheckpointOutcome::Incompatible);
                tracing::warn!(%path, %error,
                    "Checkpoint's sessions ignored (the core cannot resume them): pending sessions start afresh; counted objects are still remembered");
            }
        }
    }

    /// Writes the checkpoint (and a new full copy when due); false when it
    /// could not be written, which is logged and counted.
    pub fn store(&mut self, pipeline: &Pipeline, seen: &Seen, metrics: &Metrics, now: u64) -> bool {
        if seen.needs_full_copy(self.full_copy) {
            let mark = seen.mark();
            let full_copy = FullCopy {
                counted: seen::encode(seen.entries()),
            };
            match self.full_copy_file.store(&full_copy, now) {
                Ok(()) => self.full_copy = mark,
                // The checkpoint still carries every entry since the old copy.
                Err(error) => {
                    metrics.state_checkpoint(CheckpointOutcome::WriteFailed);
                    tracing::warn!(path = %self.full_copy_file.path().display(), %error,
                        "Full copy of the counted objects not written; trying again at the next commit");
                }
            }
        }
        let checkpoint = SourceCheckpointOut {
            pipeline: pipeline.checkpoint_view(),
            counted_since: seen::encode(seen.entries_since(self.full_copy)),
        };
        match self.file.store(&checkpoint, now) {
            Ok(()) => {
                metrics.state_checkpoint(CheckpointOutcome::Written);
                true
            }
            Err(error) => {
                metrics.state_checkpoint(CheckpointOutcome::WriteFailed);
                tracing::warn!(path = %self.file.path().display(), %error,
                    "Checkpoint not written: after a crash now, objects counted since the last one would be counted again");
                false
            }
        }
    }
}

/// One file's state; `None` (logged and counted when bad) if there is none.
fn load<T: serde::de::DeserializeOwned>(
    file: &StateFile,
    metrics: &Metrics,
    full_copy: bool,
) -> Option<T> {
    let path = file.path().display();
    match file.load::<T>() {
        Loaded::Missing => {
            if !full_copy {
                tracing::info!(%path, "No checkpoint yet: nothing counted is remembered");
            }
            None
        }
        Loaded::Restored { state, .. } => Some(state),
        Loaded::Corrupt(why) => {
            corrupt(file, metrics, &why);
            None
        }
        Loaded::Incompatible(why) => {
            metrics.state_checkpoint(CheckpointOutcome::Incompatible);
            tracing::warn!(%path, reason = %why, "Checkpoint ignored (incompatible): starting afresh");
            None
        }
    }
}

fn corrupt(file: &StateFile, metrics: &Metrics, why: &str) {
    metrics.state_checkpoint(CheckpointOutcome::Corrupt);
    tracing::warn!(path = %file.path().display(), reason = %why,
        "Checkpoint ignored (corrupt): starting afresh");
}
