//! Segment files: fixed size, zero-filled before use, a small header, then
//! records. Only this module and the checkpoint touch the file system.
//!
//! ```text
//! 0       8        12       16          24        28        32
//! | magic | version| reserved| first_lsn | hdr crc | reserved |
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::error::{Result, WalError};
use crate::record::Lsn;

pub const SEGMENT_MAGIC: [u8; 8] = *b"SKWALSEG";
/// Bump when the segment or record layout changes.
pub const FORMAT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: usize = 32;
const _: () = assert!(SEGMENT_HEADER_LEN >= 8 + 4 + 4 + 8 + 4);

/// Zero-fill chunk: large enough to be fast, small enough to stay off the heap's radar.
const ZERO_CHUNK: usize = 1 << 20;

pub fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.seg")
}

/// Parses `00000000000000000001.seg` back to its first LSN.
pub fn parse_segment_name(name: &str) -> Option<Lsn> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub fn encode_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32fast::hash(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header and returns its first LSN.
pub fn decode_header(path: &Path, buf: &[u8]) -> Result<Lsn> {
    let bad = |reason: &str| WalError::BadSegment {
        segment: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if buf.len() < SEGMENT_HEADER_LEN {
        return Err(bad("shorter than the segment header"));
    }
    if buf[0..8] != SEGMENT_MAGIC {
        return Err(bad("wrong magic"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[24..28]);
    if u32::from_le_bytes(crc) != crc32fast::hash(&buf[0..24]) {
        return Err(bad("header checksum mismatch"));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&buf[8..12]);
    let version = u32::from_le_bytes(v);
    if version != FORMAT_VERSION {
        return Err(bad(&format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&buf[16..24]);
    Ok(u64::from_le_bytes(l))
}

/// Creates `path` holding `bytes` real zeros (written, not a sparse hole: a
/// store into a hole of a mapping on a full disk is SIGBUS, not an error),
/// synced to disk.
pub fn create_zeroed(path: &Path, bytes: u64) -> Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(ZERO_CHUNK as u64) as usize;
        if let Err(e) = file.write_all(&zeros[..n]) {
            let err = WalError::io(path, e);
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(err);
        }
        left -= n as u64;
    }
    file.sync_all().map_err(|e| WalError::io(path, e))?;
    Ok(file)
}

/// Extends a short file (a crash during preallocation, or a truncated tail)
/// with written zeros up to `bytes`.
pub fn extend_zeroed(file: &mut File, path: &Path, bytes: u64) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let len = file.metadata().map_err(|e| WalError::io(path, e))?.len();
    if len >= bytes {
        return Ok(());
    }
    file.seek(SeekFrom::Start(len))
        .map_err(|e| WalError::io(path, e))?;
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut left = bytes - len;
    while left > 0 {
        let n = left.min(ZERO_CHUNK as u64) as usize;
        file.write_all(&zeros[..n])
            .map_err(|e| WalError::io(path, e))?;
        left -= n as u64;
    }
    file.sync_all().map_err(|e| WalError::io(path, e))
}

pub fn map(file: &File, path: &Path) -> Result<MmapMut> {
    // SAFETY: the segment files belong to this log: one writer (this
    // process, guarded by the directory lock) and no one truncates them
    // while mapped. The file is fully allocated with written zeros, so
    // stores into the mapping never hit a hole.
    unsafe { MmapMut::map_mut(file) }.map_err(|e| WalError::io(path, e))
}

/// Maps a segment read-only, as found: no extension, no write. What
/// recovery, [`crate::Reader`] and [`crate::verify`] scan.
pub fn map_read(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| WalError::io(path, e))?;
    // SAFETY: a read-only view of a segment of this log. The writer only
    // stores into zeros past the last record and never truncates a segment;
    // a record caught half-written reads as a torn tail (see `scan`).
    unsafe { Mmap::map(&file) }.map_err(|e| WalError::io(path, e))
}

/// fsync a directory so a rename or a new file in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

/// Segment files of `dir`, sorted by first LSN.
pub fn list(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| WalError::io(dir, e))? {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        let name = entry.file_name();
        if let Some(lsn) = name.to_str().and_then(parse_segment_name) {
            out.push((lsn, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let h = encode_header(77);
        assert_eq!(decode_header(Path::new("x"), &h).ok(), Some(77));
        let mut bad = h;
        bad[17] ^= 1;
        assert!(decode_header(Path::new("x"), &bad).is_err());
        assert_eq!(parse_segment_name(&segment_name(5)), Some(5));
        assert_eq!(parse_segment_name("5.seg"), None);
    }
}
