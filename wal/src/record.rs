//! Record encoding on plain bytes: no files here, so the decoder can be
//! fuzzed and property-tested in isolation.
//!
//! ```text
//! 0        4        8    9        17                17+len
//! | len u32| crc u32|kind| lsn u64 | payload (len bytes) |
//! ```
//! All integers little endian. `crc` is CRC-32 (crc32fast) over
//! `kind | lsn | payload`. An all-zero header marks the end of the written
//! part of a segment (segments are zero-filled before use and kind 0 is
//! never written).

/// Bytes before the payload.
pub const RECORD_HEADER_LEN: usize = 17;
const _: () = assert!(RECORD_HEADER_LEN == 4 + 4 + 1 + 8);

/// Largest payload accepted (a sanity bound for decoding garbage lengths).
pub const PAYLOAD_LEN_MAX: usize = 1 << 20;

/// Log sequence number: starts at 1, +1 per record, never reused.
pub type Lsn = u64;

/// Record kinds. Kind 0 is reserved for "nothing written here".
///
/// Kind 3 is reserved too: it was `Published` (an order acknowledged by the
/// order sink), which nothing ever wrote — Kafka acknowledgements are not
/// journaled, replay publishes every win again instead. Like any code not
/// listed here, a record of kind 3 does not decode ([`Scan::Invalid`]), so
/// the code must not be reused for something else without a format bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A request and what was decided for it.
    Decision = 1,
    /// The later decision of a request journaled as pending.
    Resolved = 2,
    /// Free for the application.
    Other = 4,
}

/// The retired `Published` kind: never written, never decoded.
const KIND_RESERVED_PUBLISHED: u8 = 3;
const _: () = assert!(
    KIND_RESERVED_PUBLISHED != Kind::Decision as u8
        && KIND_RESERVED_PUBLISHED != Kind::Resolved as u8
        && KIND_RESERVED_PUBLISHED != Kind::Other as u8
);

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Decision),
            2 => Some(Kind::Resolved),
            4 => Some(Kind::Other),
            // 0: nothing written; 3: the retired `Published`; the rest: unknown.
            _ => None,
        }
    }
}

/// A decoded record borrowing its payload from the scanned bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub lsn: Lsn,
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Bytes the record occupies on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.payload.len()
    }
}

/// What a scan finds at an offset: corruption is a value, and the caller's
/// recovery policy decides whether it is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A record whose checksum holds.
    Valid(Record<'a>),
    /// Zeros: nothing was ever written here.
    End,
    /// Something is written but it is not a valid record. `extent` is how
    /// many bytes the damaged record claims, clamped to the buffer, so a
    /// caller can look past it: its header and payload when the length is
    /// plausible (at most [`PAYLOAD_LEN_MAX`]), only its header when the
    /// length itself is garbage. Whether that is a torn tail or corruption
    /// is not decided here but by the scanner (`scan.rs`).
    Invalid { reason: String, extent: usize },
}

pub fn checksum(kind: u8, lsn: Lsn, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&lsn.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Writes one record into `out` (which must be at least
/// `RECORD_HEADER_LEN + payload.len()` long). Returns the bytes written.
pub fn encode_into(out: &mut [u8], kind: Kind, lsn: Lsn, payload: &[u8]) -> usize {
    let len = RECORD_HEADER_LEN + payload.len();
    let crc = checksum(kind as u8, lsn, payload);
    out[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out[8] = kind as u8;
    out[9..17].copy_from_slice(&lsn.to_le_bytes());
    out[17..len].copy_from_slice(payload);
    len
}

/// Appends one encoded record to a vector (no zero-fill first: the hot
/// path of the log's default write mode).
pub fn encode(out: &mut Vec<u8>, kind: Kind, lsn: Lsn, payload: &[u8]) {
    let crc = checksum(kind as u8, lsn, payload);
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The LSN field of the record header at the start of `buf`, unchecked
/// (`None` when `buf` is shorter than a header). Lets a scan look for a
/// record cheaply before paying for its checksum.
pub(crate) fn lsn_field(buf: &[u8]) -> Option<Lsn> {
    (buf.len() >= RECORD_HEADER_LEN).then(|| u64_at(buf, 9))
}

/// Decodes the record at the start of `buf`. Never panics, whatever the bytes.
pub fn decode(buf: &[u8]) -> Scan<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        if buf.iter().all(|b| *b == 0) {
            return Scan::End;
        }
        return Scan::Invalid {
            reason: "truncated header".into(),
            extent: buf.len(),
        };
    }
    let header = &buf[..RECORD_HEADER_LEN];
    if header.iter().all(|b| *b == 0) {
        return Scan::End;
    }
    let len = u32_at(buf, 0) as usize;
    let crc = u32_at(buf, 4);
    let kind_byte = buf[8];
    let lsn = u64_at(buf, 9);
    if len > PAYLOAD_LEN_MAX {
        // A garbage length claims nothing past the header.
        return Scan::Invalid {
            reason: format!("record length {len} exceeds the maximum {PAYLOAD_LEN_MAX}"),
            extent: RECORD_HEADER_LEN,
        };
    }
    if RECORD_HEADER_LEN + len > buf.len() {
        // A plausible length running past the end: the record claims the
        // rest of the buffer (a file cut short through its last record).
        return Scan::Invalid {
            reason: format!("record length {len} runs past the end of the segment"),
            extent: buf.len(),
        };
    }
    let extent = RECORD_HEADER_LEN + len;
    let payload = &buf[RECORD_HEADER_LEN..extent];
    let actual = checksum(kind_byte, lsn, payload);
    if actual != crc {
        return Scan::Invalid {
            reason: format!("checksum mismatch: stored {crc:#010x}, computed {actual:#010x}"),
            extent,
        };
    }
    match Kind::from_u8(kind_byte) {
        Some(kind) => Scan::Valid(Record { kind, lsn, payload }),
        None => Scan::Invalid {
            reason: format!("unknown record kind {kind_byte}"),
            extent,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, Kind::Decision, 42, b"hello seckill");
        match decode(&buf) {
            Scan::Valid(r) => {
                assert_eq!(r.lsn, 42);
                assert_eq!(r.kind, Kind::Decision);
                assert_eq!(r.payload, b"hello seckill");
            }
            other => panic!("expected a valid record, got {other:?}"),
        }
        for bit in 0..buf.len() * 8 {
            let mut flipped = buf.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&flipped), Scan::Valid(r) if r.payload == b"hello seckill" && r.lsn == 42),
                "bit {bit} flip went unnoticed"
            );
            assert!(!matches!(decode(&flipped), Scan::Valid(_)), "bit {bit}");
        }
    }

    #[test]
    fn a_record_of_the_reserved_kind_3_does_not_decode() {
        let mut buf = Vec::new();
        encode(&mut buf, Kind::Decision, 7, b"published?");
        buf[8] = KIND_RESERVED_PUBLISHED;
        let crc = checksum(KIND_RESERVED_PUBLISHED, 7, b"published?");
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Kind::from_u8(KIND_RESERVED_PUBLISHED), None);
        match decode(&buf) {
            Scan::Invalid { reason, extent } => {
                assert!(reason.contains("unknown record kind 3"), "{reason}");
                assert_eq!(extent, buf.len());
            }
            other => panic!("kind 3 decoded: {other:?}"),
        }
    }

    #[test]
    fn a_garbage_length_claims_the_header_and_a_plausible_one_the_rest() {
        let mut buf = Vec::new();
        encode(&mut buf, Kind::Decision, 1, &[9u8; 40]);
        let mut garbage = buf.clone();
        garbage[0..4].copy_from_slice(&(PAYLOAD_LEN_MAX as u32 + 1).to_le_bytes());
        assert!(matches!(
            decode(&garbage),
            Scan::Invalid {
                extent: RECORD_HEADER_LEN,
                ..
            }
        ));
        let short = &buf[..30];
        assert!(matches!(decode(short), Scan::Invalid { extent: 30, .. }));
    }

    #[test]
    fn zeros_are_the_end_and_short_garbage_is_invalid() {
        assert_eq!(decode(&[0u8; 64]), Scan::End);
        assert_eq!(decode(&[]), Scan::End);
        assert!(matches!(decode(&[1, 2, 3]), Scan::Invalid { .. }));
    }
}
