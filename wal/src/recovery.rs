//! Opening the log: lock the directory, walk every segment read-only with
//! the one scanner (see `scan.rs`) under a policy, and only then change
//! anything — cut a torn tail, or (salvage) set aside what follows a
//! corruption — and resume appending after the last valid record.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::checkpoint;
use crate::error::{Result, WalError};
use crate::reader::{self, TornTail, Walk};
use crate::record::{Lsn, RECORD_HEADER_LEN};
use crate::scan::Policy;
use crate::segment::{self, SEGMENT_HEADER_LEN};
use crate::writer::{Active, Options, Wal, SPARE_NAME};

/// What recovery found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// LSN of the last valid record (0 when the log is empty).
    pub last_lsn: Lsn,
    pub torn_tail: Option<TornTail>,
    pub checkpoint: Option<Lsn>,
}

/// What `salvage` kept and set aside.
#[derive(Debug, Clone, Default)]
pub struct SalvageReport {
    /// Where the corruption was (None: nothing needed salvaging).
    pub corruption: Option<(PathBuf, u64, String)>,
    pub records_kept: u64,
    pub last_lsn_kept: Lsn,
    /// Segments after the corruption, moved to `quarantine/`.
    pub quarantined: Vec<PathBuf>,
}

const LOCK_NAME: &str = "LOCK";
const QUARANTINE_DIR: &str = "quarantine";
/// Present after a salvage set records aside, until the application has
/// reconciled (see [`Wal::salvaged`]).
pub const SALVAGED_MARKER: &str = "SALVAGED";

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering it first: every
    /// checksum is verified, a torn tail of the newest segment is cut, and
    /// corruption anywhere else is a [`WalError::Corruption`] (exactly when
    /// [`crate::verify`] says so). A directory locked by another writer is
    /// [`WalError::Locked`].
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<(Wal, RecoveryReport)> {
        Self::open_with(dir.as_ref(), opts, Policy::Strict).map(|(w, r, _)| (w, r))
    }

    /// Like [`Wal::open`], but when corruption is found, keeps everything
    /// before it, moves later segments to `quarantine/`, and reports it.
    pub fn salvage(dir: impl AsRef<Path>, opts: Options) -> Result<(Wal, SalvageReport)> {
        Self::open_with(dir.as_ref(), opts, Policy::Salvage).map(|(w, _, s)| (w, s))
    }

    fn open_with(
        dir: &Path,
        opts: Options,
        policy: Policy,
    ) -> Result<(Wal, RecoveryReport, SalvageReport)> {
        let min = (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 64) as u64;
        if opts.segment_bytes < min || opts.segment_bytes > (1 << 32) {
            return Err(WalError::Config(format!(
                "segment_bytes must be between {min} and 4 GiB"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| WalError::io(dir, e))?;
        let lock = lock(dir)?;
        let _ = std::fs::remove_file(dir.join(SPARE_NAME));
        let checkpoint = checkpoint::read(dir)?;

        // Decide from the bytes as found, before changing any of them.
        let walk = reader::walk(dir, policy)?;
        let Walk {
            kept: mut segments,
            set_aside,
            records,
            last_lsn,
            next_lsn,
            end,
            cut,
            torn_tail,
            corruption,
        } = walk;

        let mut salvage = SalvageReport {
            records_kept: records,
            last_lsn_kept: last_lsn,
            ..SalvageReport::default()
        };
        if let Some((segment, offset, reason)) = corruption {
            // Tell the next start that records were set aside, so it can
            // reconcile with what the stock authority holds.
            let marker = dir.join(SALVAGED_MARKER);
            std::fs::write(&marker, format!("{}\n{offset}\n", segment.display()))
                .map_err(|e| WalError::io(&marker, e))?;
            let quarantine = dir.join(QUARANTINE_DIR);
            std::fs::create_dir_all(&quarantine).map_err(|e| WalError::io(&quarantine, e))?;
            for later in set_aside {
                let to = quarantine.join(later.file_name().unwrap_or_default());
                std::fs::rename(&later, &to).map_err(|e| WalError::io(&later, e))?;
                salvage.quarantined.push(to);
            }
            segment::sync_dir(dir)?;
            salvage.corruption = Some((segment, offset, reason));
        }
        let report = RecoveryReport {
            segments: segments.len(),
            records,
            last_lsn,
            torn_tail,
            checkpoint,
        };

        let (active, next_lsn) = match (segments.last(), next_lsn) {
            (Some((_, path)), Some(next_lsn)) => {
                (resume(path, opts.segment_bytes, end, cut)?, next_lsn)
            }
            _ => {
                let first_lsn = checkpoint.unwrap_or(1).max(1);
                let path = dir.join(segment::segment_name(first_lsn));
                let file = segment::create_zeroed(&path, opts.segment_bytes)?;
                let active = Active::start(dir, path, file, first_lsn)?;
                segments.push((first_lsn, active.path().to_path_buf()));
                (active, first_lsn)
            }
        };
        let wal = Wal::recovered(dir, opts, active, next_lsn, segments, lock, checkpoint)?;
        Ok((wal, report, salvage))
    }

    /// Whether a salvage set records aside and the application has not yet
    /// called [`Wal::clear_salvaged`].
    pub fn salvaged(&self) -> bool {
        self.dir().join(SALVAGED_MARKER).exists()
    }

    pub fn clear_salvaged(dir: &Path) -> Result<()> {
        let marker = dir.join(SALVAGED_MARKER);
        match std::fs::remove_file(&marker) {
            Ok(()) => segment::sync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(WalError::io(&marker, e)),
        }
    }
}

/// Takes the directory's exclusive lock: one writer per log.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_NAME);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(WalError::io(&path, e)),
    }
}

/// Makes the newest kept segment appendable: full size, `cut` zeroed (a
/// torn tail, or everything after a salvaged corruption) so a later scan
/// cannot resurrect it, appending resuming at `end`.
fn resume(
    path: &Path,
    segment_bytes: u64,
    end: usize,
    cut: Option<std::ops::Range<usize>>,
) -> Result<Active> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    // A newest segment cut short (a crash while it was being filled with
    // zeros, or a truncated tail) is made whole again with written zeros.
    segment::extend_zeroed(&mut file, path, segment_bytes)?;
    let mut map = segment::map(&file, path)?;
    if let Some(cut) = cut {
        let to = cut.end.min(map.len());
        if cut.start < to {
            map[cut.start..to].fill(0);
            map.flush_range(cut.start, to - cut.start)
                .map_err(|e| WalError::io(path, e))?;
        }
    }
    Ok(Active::resume(path.to_path_buf(), file, map, end))
}
