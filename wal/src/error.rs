use std::path::PathBuf;

/// Everything that can go wrong in the log. One enum for the crate; callers
/// branch on the variant, never on the message.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A record failed its checksum (or broke the LSN sequence), or a
    /// segment is missing, anywhere but the torn tail of the newest segment
    /// (see the crate docs for the one rule). Opening stops here; the
    /// operator decides, e.g. with [`crate::Wal::salvage`]. [`crate::Reader`]
    /// and [`crate::verify`] report it in exactly the same cases.
    #[error(
        "corrupt record in segment {segment} at byte {offset}: {reason} \
         (run `seckill-replay salvage` to keep everything before it)"
    )]
    Corruption {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The segment header is not ours, or of a format version we cannot read.
    #[error("bad segment header in {segment}: {reason}")]
    BadSegment { segment: PathBuf, reason: String },
    /// No room on disk: preparing a segment, or writing a commit, hit
    /// ENOSPC. Nothing already written is affected; the bytes of the
    /// failed commit are kept and written by the next one.
    #[error("disk full writing the WAL in {dir}")]
    DiskFull { dir: PathBuf },
    /// A flush (`fdatasync` / `msync`) failed earlier. What reached the
    /// disk is unknown, so the log takes no more writes until it is
    /// reopened: recovery then reads what the disk really holds.
    #[error("a flush of the WAL in {dir} failed; it takes no writes until reopened (restart)")]
    FlushFailed { dir: PathBuf },
    /// A record larger than a segment can hold.
    #[error("record of {len} bytes does not fit a segment of {segment_bytes} bytes")]
    RecordTooLarge { len: usize, segment_bytes: u64 },
    /// The checkpoint file failed its checksum.
    #[error("checkpoint file {path} is corrupt")]
    BadCheckpoint { path: PathBuf },
    /// Another process (or another `Wal` in this one) holds the directory's
    /// `LOCK`: the log has one writer. Retryable once that writer is gone.
    #[error("the WAL in {dir} is locked by another writer (is the daemon running?)")]
    Locked { dir: PathBuf },
    /// An invalid option.
    #[error("invalid WAL option: {0}")]
    Config(String),
    #[error("WAL I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl WalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        // ENOSPC (28) and EDQUOT (122) both mean "no room": the daemon turns
        // this into 503 for new work.
        if matches!(source.raw_os_error(), Some(28) | Some(122))
            || source.kind() == std::io::ErrorKind::StorageFull
        {
            let dir = path.parent().map(PathBuf::from).unwrap_or(path);
            return WalError::DiskFull { dir };
        }
        WalError::Io { path, source }
    }

    /// True when the failure is "no room on disk" — new work should be shed.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, WalError::DiskFull { .. })
    }
}

pub type Result<T> = std::result::Result<T, WalError>;
