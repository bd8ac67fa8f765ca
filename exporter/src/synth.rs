//! Synthetic stats files, `-shm` headers and database headers, for tests and the benchmark only:
//! compiled under `cfg(test)` or the `test-support` feature, never into the shipped sidecar.
//! Built from the layout definitions of `walwatch::layout`, so they follow the real format.

use std::mem::{offset_of, size_of};
use walwatch::layout::*;
use walwatch::wal_index::HEADER_BYTES;

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// A valid stats file for `db_path` whose counters all hold values derived from `seed`
/// (0 = all zero), with one recent checkpoint when `seed > 0`.
pub fn stats_file(db_path: &[u8], seed: u64) -> Vec<u8> {
    let mut b = vec![0u8; REGION_SIZE];
    b[..8].copy_from_slice(&MAGIC);
    put_u32(&mut b, offset_of!(Header, version), VERSION);
    put_u32(&mut b, offset_of!(Header, size), REGION_SIZE as u32);
    put_u64(
        &mut b,
        offset_of!(Header, created_unix_ns),
        1_700_000_000_000_000_000,
    );
    put_u32(
        &mut b,
        offset_of!(Header, db_path_len),
        db_path.len() as u32,
    );
    b[offset_of!(Header, db_path)..][..db_path.len()].copy_from_slice(db_path);
    if seed == 0 {
        return b;
    }
    // Every u64 counter from the I/O block through the checkpoint counters.
    let io = offset_of!(Region, io);
    let counters_end = offset_of!(Region, recent);
    for (i, off) in (io..offset_of!(IoCounters, page_size) + io)
        .step_by(8)
        .enumerate()
    {
        put_u64(&mut b, off, seed * (i as u64 + 1));
    }
    put_u32(&mut b, io + offset_of!(IoCounters, page_size), 4096);
    for (i, off) in (offset_of!(Region, locks)..counters_end)
        .step_by(8)
        .enumerate()
    {
        put_u64(&mut b, off, seed + i as u64 % 7);
    }
    let rec = offset_of!(Region, recent);
    put_u64(&mut b, rec + offset_of!(CheckpointRecord, seq), seed);
    put_u64(
        &mut b,
        rec + offset_of!(CheckpointRecord, started_unix_ns),
        1_700_000_000_000_000_000,
    );
    put_u64(
        &mut b,
        rec + offset_of!(CheckpointRecord, duration_ns),
        2_000_000,
    );
    put_u32(&mut b, rec + offset_of!(CheckpointRecord, pid), 1);
    put_u32(&mut b, rec + offset_of!(CheckpointRecord, mode), 3);
    // TRUNCATE stopped by a reader at mark 5 of 10 frames: returned (1, 10, 5), partial.
    put_u32(&mut b, rec + offset_of!(CheckpointRecord, outcome), 2);
    put_u32(&mut b, rec + offset_of!(CheckpointRecord, mode_source), 1);
    put_u32(&mut b, rec + offset_of!(CheckpointRecord, busy), 1);
    put_u32(&mut b, rec + offset_of!(CheckpointRecord, log), 10);
    put_u32(&mut b, rec + offset_of!(CheckpointRecord, checkpointed), 5);
    put_u32(
        &mut b,
        rec + offset_of!(CheckpointRecord, waited_slot),
        NO_SLOT,
    );
    put_u32(
        &mut b,
        rec + offset_of!(CheckpointRecord, blocked_slot),
        (SLOT_READ0 + 1) as u32,
    );
    put_u32(
        &mut b,
        rec + offset_of!(CheckpointRecord, blocked_read_mark),
        5,
    );
    put_u32(&mut b, rec + offset_of!(CheckpointRecord, wal_frames), 10);
    put_u32(
        &mut b,
        rec + offset_of!(CheckpointRecord, backfilled_frames),
        5,
    );
    put_u32(&mut b, rec + offset_of!(CheckpointRecord, frames_moved), 5);
    b
}

/// Sets reader-table entry `entry` (0..READERS): `pid` holds READ`read_index` since `since_unix_ns`.
pub fn set_reader(
    b: &mut [u8],
    entry: usize,
    pid: u32,
    read_index: usize,
    read_mark: u32,
    since_unix_ns: u64,
) {
    let at = offset_of!(Region, readers) + entry * size_of::<ReaderEntry>();
    put_u32(b, at + offset_of!(ReaderEntry, pid), pid);
    put_u32(
        b,
        at + offset_of!(ReaderEntry, read_slot),
        read_index as u32 + 1,
    );
    put_u32(b, at + offset_of!(ReaderEntry, read_mark), read_mark);
    put_u64(
        b,
        at + offset_of!(ReaderEntry, since_unix_ns),
        since_unix_ns,
    );
}

/// Changes the layout version of a stats file.
pub fn set_version(b: &mut [u8], version: u32) {
    put_u32(b, offset_of!(Header, version), version);
}

/// The first bytes of a `-shm` file: an initialized wal-index header.
pub fn wal_index(mx_frame: u32, n_backfill: u32, read_marks: [u32; 5]) -> Vec<u8> {
    let mut b = vec![0u8; 32 * 1024];
    b[12] = 1; // isInit
    b[14..16].copy_from_slice(&4096u16.to_ne_bytes());
    put_u32(&mut b, 16, mx_frame);
    put_u32(&mut b, 20, 2);
    let (first, second) = b.split_at_mut(48);
    second[..48].copy_from_slice(first);
    put_u32(&mut b, 96, n_backfill);
    for (i, m) in read_marks.iter().enumerate() {
        put_u32(&mut b, 100 + 4 * i, *m);
    }
    put_u32(&mut b, 128, n_backfill);
    debug_assert!(b.len() >= HEADER_BYTES);
    b
}

/// A two-page database file whose header says WAL mode (`wal`) or rollback mode.
pub fn database(wal: bool) -> Vec<u8> {
    let mut b = vec![0u8; 8192];
    b[..16].copy_from_slice(b"SQLite format 3\0");
    b[16..18].copy_from_slice(&4096u16.to_be_bytes());
    let v = if wal { 2 } else { 1 };
    b[18] = v;
    b[19] = v;
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use walwatch::snapshot::Snapshot;
    use walwatch::wal_index::WalIndex;

    #[test]
    fn synthetic_files_parse() {
        let mut bytes = stats_file(b"/tmp/x.db", 3);
        set_reader(&mut bytes, 0, 42, 1, 7, 9);
        let snap = Snapshot::parse(&bytes).unwrap();
        assert_eq!(snap.db_path, b"/tmp/x.db");
        assert_eq!(snap.wal_bytes, 3);
        assert_eq!(snap.page_size, 4096);
        assert_eq!(snap.recent.len(), 1);
        assert_eq!(snap.readers[0].pid, 42);
        let idx = WalIndex::parse(&wal_index(
            10,
            4,
            [0, 4, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff],
        ))
        .unwrap();
        assert_eq!((idx.mx_frame, idx.n_backfill, idx.page_size), (10, 4, 4096));
        set_version(&mut bytes, VERSION + 1);
        assert!(Snapshot::parse(&bytes).is_err());
    }
}
