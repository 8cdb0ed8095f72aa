//! The record decoder on arbitrary bytes (a fuzz run bounded in cases,
//! part of the suite): a value, never a panic.

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]

    /// The record decoder on any bytes: a value (valid, or invalid with its
    /// extent), never a panic, and a valid record never claims more bytes
    /// than it was given.
    #[test]
    fn the_record_decoder_takes_any_bytes(bytes in proptest::collection::vec(0u8.., 0..256)) {
        if let seckill_wal::record::Scan::Valid(r) = seckill_wal::record::decode(&bytes) {
            proptest::prop_assert!(
                seckill_wal::record::RECORD_HEADER_LEN + r.payload.len() <= bytes.len()
            );
        }
    }
}
