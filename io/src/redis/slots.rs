//! Where a key lives on a Redis Cluster: its hash slot (CRC16-XMODEM of
//! its hash tag, modulo 16384), the slot map as `CLUSTER SLOTS` answers
//! it, and the address a `MOVED` / `ASK` redirection names. Pure: bytes
//! and values in, values out.

use redis::{ErrorKind, RedisError, Value};

/// Hash slots of a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The hash slot of a key: of the content of its hash tag (the first
/// `{…}` with something inside) if it has one, else of the whole key.
pub fn slot_of(key: &[u8]) -> u16 {
    CRC16.checksum(hash_tag(key).unwrap_or(key)) % SLOT_COUNT
}

/// The hash slot of every key tagged `{part₀part₁…}`, without building
/// the key.
pub fn slot_of_tag(parts: &[&[u8]]) -> u16 {
    let mut d = CRC16.digest();
    for p in parts {
        d.update(p);
    }
    d.finalize() % SLOT_COUNT
}

fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let rest = &key[open + 1..];
    let close = rest.iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &rest[..close])
}

/// A range of slots and the master serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
    pub host: String,
    pub port: u16,
}

/// The ranges of a `CLUSTER SLOTS` answer asked of `asked` (a master that
/// announces no address is reached where it was asked).
pub fn parse_slots(v: &Value, asked: &str) -> Result<Vec<SlotRange>, RedisError> {
    let bad = |what: &str| {
        RedisError::from((
            ErrorKind::Parse,
            "bad CLUSTER SLOTS answer",
            what.to_string(),
        ))
    };
    let Value::Array(ranges) = v else {
        return Err(bad("not an array"));
    };
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let Value::Array(f) = r else {
            return Err(bad("a range is not an array"));
        };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
            (f.first(), f.get(1), f.get(2))
        else {
            return Err(bad("a range without first, last and master"));
        };
        let host = match master.first() {
            Some(Value::BulkString(b)) if !b.is_empty() && b.as_slice() != b"?" => {
                String::from_utf8_lossy(b).into_owned()
            }
            _ => asked.to_string(),
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return Err(bad("a master without a port"));
        };
        let slot = |n: i64| {
            u16::try_from(n)
                .ok()
                .filter(|s| *s < SLOT_COUNT)
                .ok_or_else(|| bad("a slot out of range"))
        };
        out.push(SlotRange {
            first: slot(*first)?,
            last: slot(*last)?,
            host,
            port: u16::try_from(*port).map_err(|_| bad("a port out of range"))?,
        });
    }
    if out.is_empty() {
        return Err(bad("no slot is assigned (is the cluster created?)"));
    }
    Ok(out)
}

/// `host:port` split (the port after the last colon).
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    Some((h, p.parse().ok()?))
}

/// The slot and address of a `MOVED` / `ASK` answer's details
/// (`3999 127.0.0.1:6381`).
pub fn redirect(details: Option<&str>) -> Option<(u16, String, u16)> {
    let (slot, addr) = details?.trim().split_once(' ')?;
    let slot: u16 = slot.parse().ok()?;
    let (host, port) = split_host_port(addr)?;
    (slot < SLOT_COUNT).then(|| (slot, host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_specification() {
        // The specification's check value of CRC16-XMODEM.
        assert_eq!(CRC16.checksum(b"123456789"), 0x31C3);
        // Values redis-cli's CLUSTER KEYSLOT gives.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
        assert_eq!(
            slot_of(b"seckill:{s1:i1}:stock"),
            slot_of_tag(&[b"s1", b":", b"i1"])
        );
    }

    #[test]
    fn redirections_are_parsed() {
        assert_eq!(
            redirect(Some("3999 127.0.0.1:6381")),
            Some((3999, "127.0.0.1".into(), 6381))
        );
        assert_eq!(redirect(Some("99999 127.0.0.1:6381")), None);
        assert_eq!(redirect(Some("garbage")), None);
        assert_eq!(redirect(None), None);
    }

    #[test]
    fn a_slot_map_is_read_and_nonsense_refused() {
        let master = |host: &[u8], port| {
            Value::Array(vec![Value::BulkString(host.to_vec()), Value::Int(port)])
        };
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                master(b"10.0.0.1", 7000),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), master(b"", 7001)]),
        ]);
        let r = parse_slots(&v, "10.0.0.9").expect("a map");
        assert_eq!(r[0].host, "10.0.0.1");
        assert_eq!((r[1].first, r[1].last, r[1].port), (5461, 16383, 7001));
        assert_eq!(
            r[1].host, "10.0.0.9",
            "no address announced: where it was asked"
        );
        for bad in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(99_999),
                master(b"h", 1),
            ])]),
            Value::Array(vec![Value::Array(vec![Value::Int(0)])]),
        ] {
            assert!(parse_slots(&bad, "h").is_err(), "{bad:?}");
        }
    }
}
