//! Commands in the Redis protocol (RESP): written without intermediate
//! allocations (the deduct stage's hot path), and split back into
//! commands and arguments (a pipeline routed over a cluster).

use std::ops::Range;

pub fn array(buf: &mut Vec<u8>, n: usize) {
    buf.push(b'*');
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// One bulk string made of the concatenated parts.
pub fn bulk(buf: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    buf.push(b'$');
    buf.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    buf.extend_from_slice(b"\r\n");
    for p in parts {
        buf.extend_from_slice(p);
    }
    buf.extend_from_slice(b"\r\n");
}

pub fn bulk_u64(buf: &mut Vec<u8>, v: u64) {
    bulk(buf, &[itoa::Buffer::new().format(v).as_bytes()]);
}

/// One command of a packed buffer: where it lies, and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub whole: Range<usize>,
    pub args: Vec<Range<usize>>,
}

/// Splits a buffer of commands, each an array of bulk strings (what the
/// `redis` crate writes), into commands; `None` for anything else.
pub fn split(buf: &[u8]) -> Option<Vec<Packed>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let (n, next) = header(buf, at, b'*')?;
        at = next;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let (len, next) = header(buf, at, b'$')?;
            let end = next.checked_add(len)?;
            if buf.get(end..end.checked_add(2)?)? != b"\r\n" {
                return None;
            }
            args.push(next..end);
            at = end + 2;
        }
        out.push(Packed {
            whole: start..at,
            args,
        });
    }
    Some(out)
}

/// `<kind><decimal>\r\n` at `at`: the number and where the line ends.
fn header(buf: &[u8], at: usize, kind: u8) -> Option<(usize, usize)> {
    if *buf.get(at)? != kind {
        return None;
    }
    let rest = buf.get(at + 1..)?;
    let eol = rest.windows(2).position(|w| w == b"\r\n")?;
    let n: usize = std::str::from_utf8(&rest[..eol]).ok()?.parse().ok()?;
    Some((n, at + 1 + eol + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_splits_into_its_commands() {
        let mut pipe = redis::pipe();
        pipe.hset("k{a}", "f", "v")
            .ignore()
            .get("other")
            .cmd("PING");
        let packed = pipe.get_packed_pipeline();
        let cmds = split(&packed).expect("split");
        assert_eq!(cmds.len(), 3);
        let arg = |c: &Packed, i: usize| &packed[c.args[i].clone()];
        assert_eq!(arg(&cmds[0], 0), b"HSET");
        assert_eq!(arg(&cmds[0], 1), b"k{a}");
        assert_eq!(arg(&cmds[1], 1), b"other");
        assert_eq!(cmds[2].args.len(), 1);
        assert_eq!(cmds[2].whole.end, packed.len());
    }

    #[test]
    fn anything_else_is_refused_without_a_panic() {
        for bad in [
            &b"*1\r\n$4\r\nPIN"[..],
            b"+OK\r\n",
            b"*1\r\n$99\r\nPING\r\n",
            b"*x\r\n",
            b"*1\r\n$4\r\nPINGxx",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
        assert_eq!(split(b""), Some(vec![]));
    }
}
