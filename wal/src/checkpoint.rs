//! The checkpoint: "everything below LSN n is applied", persisted atomically
//! (temp file, fsync, rename, fsync dir) with its own checksum.
//!
//! ```text
//! 0        8         16       20
//! | magic  | lsn u64 | crc u32|
//! ```

use std::io::Write;
use std::path::Path;

use crate::error::{Result, WalError};
use crate::record::Lsn;
use crate::segment::sync_dir;

const MAGIC: [u8; 8] = *b"SKWALCKP";
const LEN: usize = 20;
const _: () = assert!(LEN == 8 + 8 + 4);
pub const CHECKPOINT_NAME: &str = "checkpoint";

pub fn write(dir: &Path, lsn: Lsn) -> Result<()> {
    let mut buf = [0u8; LEN];
    buf[0..8].copy_from_slice(&MAGIC);
    buf[8..16].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32fast::hash(&buf[0..16]);
    buf[16..20].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("checkpoint.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| WalError::io(&tmp, e))?;
    f.write_all(&buf).map_err(|e| WalError::io(&tmp, e))?;
    f.sync_all().map_err(|e| WalError::io(&tmp, e))?;
    let dst = dir.join(CHECKPOINT_NAME);
    std::fs::rename(&tmp, &dst).map_err(|e| WalError::io(&dst, e))?;
    sync_dir(dir)
}

/// `Ok(None)` when no checkpoint was ever written.
pub fn read(dir: &Path) -> Result<Option<Lsn>> {
    let path = dir.join(CHECKPOINT_NAME);
    let buf = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io(&path, e)),
    };
    if buf.len() != LEN || buf[0..8] != MAGIC {
        return Err(WalError::BadCheckpoint { path });
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[16..20]);
    if u32::from_le_bytes(crc) != crc32fast::hash(&buf[0..16]) {
        return Err(WalError::BadCheckpoint { path });
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&buf[8..16]);
    Ok(Some(u64::from_le_bytes(l)))
}
